"""`broker serve` killed while EHRs send: every acknowledged message is there after the restart,
exactly once and on the worklist, and a message stored but never acknowledged is recognised
when the EHR sends it again. On SQLite and on PostgreSQL."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from sqlalchemy import func, select

from broker.hl7.message import parse
from broker.hl7.mllp import frame
from broker.service import Broker
from broker.store.db import make_engine
from broker.store.models import InboundMessage, Order
from tests.conftest import make_test_settings
from tests.support.hl7messages import orm
from tests.support.dcmtk import findscu
from tests.support.hl7client import send_and_read_ack
from tests.support.postgres import free_port, wait_for_port


def _order(n: int) -> bytes:
    return orm(f"CR{n}", "NW", placer=f"CRP{n}", accession=f"CRA{n}", pid=f"CRM{n}")


def _serve(data: Path, database_url: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "BROKER_DATA_DIR": str(data), "BROKER_DATABASE_URL": database_url,
           "BROKER_HL7_PORT": str(port), "BROKER_DICOM_ENABLED": "false",
           "BROKER_WEB_ENABLED": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "broker", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, timeout=60)
    return proc


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def _stored(database_url: str, control_id: str) -> bool:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(InboundMessage.status)
                                .where(InboundMessage.control_id == control_id)).scalar() \
                == "PROCESSED"
    finally:
        engine.dispose()


def _restarted(tmp_path: Path, database_url: str) -> Broker:
    settings = make_test_settings(tmp_path, database_url)
    broker = Broker(replace(settings, web=replace(settings.web, enabled=False)))
    broker.start()
    return broker


def _counts(broker: Broker) -> tuple[int, int]:
    with broker.sessions() as session:
        return (session.scalar(select(func.count()).select_from(InboundMessage)),
                session.scalar(select(func.count()).select_from(Order)))


def test_killed_between_store_and_ack_the_resend_is_recognised(tmp_path, database_url):
    data, port = tmp_path / "data", free_port()
    proc = _serve(data, database_url, port)
    try:
        for n in range(1, 4):
            assert send_and_read_ack(port, _order(n)).get("MSA", 1) == "AA"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sender:
            sender.sendall(frame(_order(4)))
            deadline = time.monotonic() + 30
            while not _stored(database_url, "CR4") and time.monotonic() < deadline:
                time.sleep(0.01)
            _kill(proc)        # the EHR never reads an ACK for CR4
    finally:
        if proc.poll() is None:
            _kill(proc)
    broker = _restarted(tmp_path, database_url)
    try:
        port = broker.listeners.hl7[1]
        acks = [send_and_read_ack(port, _order(n)) for n in range(1, 5)]   # the EHR resends
        assert [(a.get("MSA", 1), a.get("MSA", 2)) for a in acks] == \
            [("AA", f"CR{n}") for n in range(1, 5)]
        assert _counts(broker) == (4, 4)                                    # none applied twice
        items = findscu(broker.listeners.dicom[1], ["AccessionNumber"])
        assert sorted(str(i.AccessionNumber) for i in items) == [f"CRA{n}" for n in range(1, 5)]
    finally:
        broker.stop()


def test_killed_under_load_every_acknowledged_message_survives(tmp_path, database_url):
    data, port = tmp_path / "data", free_port()
    proc = _serve(data, database_url, port)
    acknowledged: list[str] = []
    lock = threading.Lock()

    def sender(first: int) -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                for n in range(first, first + 1000):
                    sock.sendall(frame(_order(n)))
                    reply = b""
                    while not reply.endswith(b"\x1c\r"):
                        chunk = sock.recv(65536)
                        if not chunk:
                            return
                        reply += chunk
                    ack = parse(reply.strip(b"\x0b\x1c\r"))
                    with lock:
                        acknowledged.append(ack.get("MSA", 2))
        except OSError:
            return   # the broker died under us: what it acknowledged is what counts

    threads = [threading.Thread(target=sender, args=(k * 1000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    _kill(proc)
    for thread in threads:
        thread.join(30)
    assert len(acknowledged) >= 40
    broker = _restarted(tmp_path, database_url)
    try:
        with broker.sessions() as session:
            stored = dict(session.execute(select(InboundMessage.control_id,
                                                  InboundMessage.status)).all())
            orders = set(session.scalars(select(Order.placer_order_number)))
        assert all(stored.get(c) == "PROCESSED" for c in acknowledged)
        assert {f"CRP{c[2:]}" for c in acknowledged} <= orders
    finally:
        broker.stop()
