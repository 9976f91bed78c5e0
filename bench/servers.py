"""The servers bench/hl7_ingest.py measures, each a process of its own: `python -m broker serve`
configured only by BROKER_* environment variables, as a site runs it, and the bare baseline
(bench/mllp_baseline.py). Each listens on a free 127.0.0.1 port, is ready when that port
accepts a connection, and is stopped with SIGTERM.

Nothing here imports the broker: the bench must keep working while its internals change. The
one thing read back is the outcome a user can see in the database (a row per message and per
order), through SQLAlchemy's public API.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.postgres import free_port  # noqa: E402

READY_TIMEOUT = 120.0  # a first start on PostgreSQL runs every migration


class ServerProcess:
    """A server subprocess whose output goes to a log file in its folder."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], folder: Path,
                 port: int) -> None:
        self.name, self.port, self.folder = name, port, folder
        folder.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / f"{name}.log"
        with open(self.log_path, "wb") as log:
            # cwd is the server's own folder, so no ./broker.toml from elsewhere is read.
            self.process = subprocess.Popen(command, env=env, cwd=folder, stdout=log,
                                            stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n"
                                   f"{self.log_tail()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.name} did not listen on {self.port} within "
                           f"{READY_TIMEOUT:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server wrote."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> int:
        """SIGTERM, then wait for a clean exit (SIGKILL after 30 s); returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def start_broker(name: str, folder: Path, database_url: str) -> ServerProcess:
    """`python -m broker serve` with HL7 only, on a free port, storing into `database_url`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("BROKER_")}
    port = free_port()
    env.update({
        "PYTHONPATH": str(REPO),  # this checkout's broker, whichever one pip installed
        "BROKER_DATA_DIR": str(folder / "data"),
        "BROKER_DATABASE_URL": database_url,
        "BROKER_HL7_HOST": "127.0.0.1",
        "BROKER_HL7_PORT": str(port),
        "BROKER_DICOM_ENABLED": "false",
        "BROKER_WEB_ENABLED": "false",
    })
    return ServerProcess(name, [sys.executable, "-m", "broker", "serve"], env, folder, port)


def start_baseline(folder: Path) -> ServerProcess:
    """The bare durable MLLP server, storing into a fresh SQLite file in `folder`."""
    port = free_port()
    command = [sys.executable, str(Path(__file__).with_name("mllp_baseline.py")),
               "--port", str(port), "--database", str(folder / "baseline.db")]
    return ServerProcess("baseline", command, dict(os.environ), folder, port)


def sqlite_url(folder: Path) -> str:
    """A SQLite database file in `folder`, named explicitly so the bench can read it back."""
    return f"sqlite:///{(folder / 'data' / 'broker.db').as_posix()}"


def applied_once(database_url: str, control_ids: list[str], orders: list[str]) -> list[str]:
    """Problems with the rule "every message stored once, every order created once": one line
    per kind of problem, empty when it holds."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as db:
            stored = Counter(dict(db.execute(text(
                "SELECT control_id, COUNT(*) FROM inbound_message GROUP BY control_id")).all()))
            created = Counter(dict(db.execute(text(
                "SELECT placer_order_number, COUNT(*) FROM imaging_order "
                "GROUP BY placer_order_number")).all()))
    finally:
        engine.dispose()
    return (_once("message", stored, control_ids) + _once("order", created, orders))


def _once(kind: str, found: Counter, expected: list[str]) -> list[str]:
    problems = []
    missing = [key for key in expected if found[key] == 0]
    twice = [key for key in expected if found[key] > 1]
    extra = sorted(set(found) - set(expected), key=str)
    for label, keys in (("missing", missing), ("stored more than once", twice),
                        ("never sent", extra)):
        if keys:
            problems.append(f"{len(keys)} {kind}s {label}, e.g. {', '.join(map(str, keys[:5]))}")
    return problems
