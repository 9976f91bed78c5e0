"""Sustained HL7 ingest: MLLP frame in -> durable commit -> ACK out, against a bare baseline.

The broker side is the real one, built as `broker serve` builds it (MllpServer + IntakeWriter
+ Hl7Intake on SQLite, WAL; a lone sender's frames fsynced in the intake journal before their
ACK, the writer's commits then without an fsync of their own; groups of several senders
commit with one fsync); the baseline is an MLLP echo that only INSERTs the raw bytes durably
into SQLite and answers a fixed ACK. Senders run in a separate process, one thread per
connection, each waiting for its ACK before sending the next message (as an EHR interface
engine does). Prints messages/s per round, the median and spread, and the broker/baseline ratio; and the
servers' CPU time per message (this process: the senders run in another), which moves less than
the rates do when the machine's speed varies between rounds.

    python bench/hl7_ingest.py            # 5 rounds x 2000 messages per connection count
    python bench/hl7_ingest.py --quick    # seconds: 2 rounds x 200 messages
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from broker.config import load_settings  # noqa: E402
from broker.hl7.mllp import MllpReader, frame  # noqa: E402
from broker.service import build_intake, mllp_intake  # noqa: E402
from broker.store.db import make_engine, make_session_factory  # noqa: E402
from broker.store.migrate import upgrade  # noqa: E402

TEMPLATE = (
    "MSH|^~\\&|BENCH|HOSP|BROKER|RAD|20261123081500||ORM^O01|C{n}|P|2.3.1||||||UNICODE UTF-8\r"
    "PID|1||P{pid}^^^HOSP^MR||Lindqvist^Åsa^M||19720304|F|||Storgatan 1^^Uppsala^^75310^SE\r"
    "PV1|1|O|RAD^CT1^^HOSP|||||4455^House^Gregory^^^Dr\r"
    "ORC|NW|ORD{n}^EHR|||SC||^^^202611240930^^R||20261123081500|||4455^House^Gregory^^^Dr\r"
    "OBR|1|ORD{n}^EHR||CTCHEST^CT chest with contrast^L|||20261123081500|||||||||"
    "4455^House^Gregory^^^Dr||A{n}|RP{n}|SPS{n}||||CT|||^^^202611240930^^R||||^Cough^L\r"
    "ZDS|1.2.826.0.1.3680043.10.1254.9.{n}^BROKER^Application^DICOM"
)


def message(n: int, patients: int = 500) -> bytes:
    """The n-th benchmark order: unique control id, order and accession; `patients` patients
    recur (a department's day: most orders are for patients the broker already knows)."""
    return TEMPLATE.format(n=n, pid=n % patients).encode("utf-8")


# ---- senders (separate process) -------------------------------------------------------------

def _send_many(port: int, numbers: range, patients: int) -> int:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for n in numbers:
            sock.sendall(frame(message(n, patients)))
            reply = b""
            while not reply.endswith(b"\x1c\r"):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed before the ACK")
                reply += chunk
            if b"MSA|AA|" not in reply:
                raise RuntimeError(f"not AA: {reply[:200]!r}")
    return len(numbers)


def _sender_process(jobs, out) -> None:
    """Runs send jobs until told to stop: (port, connections, per_connection, first,
    patients)."""
    while (job := jobs.get()) is not None:
        port, connections, per_connection, first, patients = job
        ranges = [range(first + c * per_connection, first + (c + 1) * per_connection)
                  for c in range(connections)]
        started = time.perf_counter()
        with ThreadPoolExecutor(connections) as pool:
            total = sum(pool.map(lambda r: _send_many(port, r, patients), ranges))
        out.put((total, time.perf_counter() - started))


class Senders:
    """One sender process for the whole run (it starts once: spawning costs a second)."""

    def __init__(self, patients: int) -> None:
        self.patients = patients  # recurring patients, all registered by the warm-up
        ctx = multiprocessing.get_context("spawn")
        self.jobs, self.out = ctx.Queue(), ctx.Queue()
        self.proc = ctx.Process(target=_sender_process, args=(self.jobs, self.out), daemon=True)
        self.proc.start()

    def rate(self, port: int, connections: int, per_connection: int, first: int) -> float:
        """Messages per second achieved by `connections` senders against `port`."""
        self.jobs.put((port, connections, per_connection, first, self.patients))
        total, elapsed = self.out.get(timeout=600)
        return total / elapsed

    def close(self) -> None:
        self.jobs.put(None)
        self.proc.join(30)


# ---- servers (this process) -----------------------------------------------------------------

class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


ECHO_ACK = frame(b"MSH|^~\\&|BROKER||BENCH|HOSP|20261123081500||ACK^O01^ACK|A1|P|2.3.1\rMSA|AA|C")


class Baseline:
    """Bare MLLP echo: durable INSERT of the raw bytes, commit, fixed ACK."""

    def __init__(self, folder: Path) -> None:
        self.db = sqlite3.connect(folder / "baseline.db", check_same_thread=False,
                                  isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, body BLOB)")
        self.executor = ThreadPoolExecutor(1)

    def store(self, raw: bytes) -> None:
        self.db.execute("BEGIN")
        self.db.execute("INSERT INTO raw (body) VALUES (?)", (raw,))
        self.db.execute("COMMIT")

    async def serve(self, reader, writer) -> None:
        mllp = MllpReader(reader, 1 << 20)
        loop = asyncio.get_running_loop()
        while (raw := await mllp.read_frame()) is not None:
            await loop.run_in_executor(self.executor, self.store, raw)
            writer.write(ECHO_ACK)
            await writer.drain()
        writer.close()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]


def start_broker(folder: Path, loop: LoopThread):
    settings = load_settings(path=None, environ={"BROKER_DATA_DIR": str(folder / "data"),
                                                 "BROKER_HL7_PORT": "0"}, default_file=None)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    settings = replace(settings, hl7=replace(settings.hl7, host="127.0.0.1"))
    # As `broker serve` builds it: with the intake journal (hl7.journal, on by default).
    writer, server = mllp_intake(settings, build_intake(settings, make_session_factory(engine)),
                                 loop.loop)
    port = loop.run(server.start())[1]
    return port, writer, server, engine


def summary(name: str, rates: list[float]) -> str:
    rates = sorted(rates)
    q = statistics.quantiles(rates, n=4) if len(rates) >= 2 else [rates[0]] * 3
    return (f"{name:<28} median {statistics.median(rates):8.0f} msg/s   IQR {q[0]:.0f}-{q[2]:.0f}"
            f"   min {rates[0]:.0f}  max {rates[-1]:.0f}  ({len(rates)} rounds)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds: proves it runs")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--messages", type=int, default=None, help="per round (all connections)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 5)
    count = args.messages or (200 if args.quick else 2000)
    import logging
    logging.disable(logging.INFO)  # per-message INFO lines would measure the terminal
    print(f"HL7 ingest: ORM^O01 v2.3.1, {count} messages per round, {rounds} rounds; "
          f"SQLite WAL; broker: journal fsync (1 conn) or group fsync, baseline: "
          f"synchronous=FULL; "
          f"python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        loop = LoopThread()
        baseline = Baseline(folder)
        base_port = loop.run(baseline.start())
        port, writer, server, engine = start_broker(folder, loop)
        # Warm-up, not counted: registers the recurring patients and fills the caches. --quick
        # has fewer patients, so that its rounds too are orders for known patients.
        warm = 500 if not args.quick else 50
        senders = Senders(patients=warm)
        senders.rate(base_port, 1, warm, 0)
        senders.rate(port, 1, warm, 0)
        first = warm
        results: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        for connections in (1, 4):
            per = count // connections
            for _ in range(rounds):
                for name, target in (("baseline", base_port), ("broker", port)):
                    commits, started = writer.commits, time.process_time()
                    results.setdefault(f"{name} {connections} conn", []).append(
                        senders.rate(target, connections, per, first))
                    cpu.setdefault(f"{name} {connections} conn", []).append(
                        (time.process_time() - started) / (per * connections) * 1e6)
                    if name == "broker":
                        results.setdefault(f"broker {connections} conn msgs/commit", []).append(
                            per * connections / max(writer.commits - commits, 1))
                first += per * connections
        for name, rates in results.items():
            if "msgs/commit" in name:
                print(f"{name:<28} median {statistics.median(rates):8.2f}")
            else:
                print(summary(name, rates))
        for name, spent in cpu.items():
            print(f"{name + ' cpu/msg':<28} median {statistics.median(spent):8.0f} us   "
                  f"min {min(spent):.0f}  max {max(spent):.0f}")
        for connections in (1, 4):
            b = statistics.median(results[f"broker {connections} conn"])
            e = statistics.median(results[f"baseline {connections} conn"])
            print(f"ratio broker/baseline, {connections} conn: {b / e:.2f}")
        senders.close()
        loop.run(server.close())
        writer.stop()
        engine.dispose()
        loop.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
