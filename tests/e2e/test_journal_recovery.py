"""Crashes of `broker serve` while an EHR sends: every acknowledged message is there after the
restart, exactly once, and on the worklist.

A killed process keeps its commits (they were in the operating system's hands). A crash of the
machine can take the last commits from the database, not from the journal: that is simulated
by putting back a copy of the database taken before the last messages, in the same file."""
from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from sqlalchemy import func, select

from broker.service import Broker
from broker.store.journal_file import segment_files
from broker.store.models import InboundMessage, Order
from tests.conftest import make_test_settings
from tests.hl7.test_intake import orm
from tests.support.dcmtk import findscu
from tests.support.hl7client import send_and_read_ack
from tests.support.postgres import free_port, wait_for_port


def _order(n: int) -> bytes:
    return orm(f"CR{n}", "NW", placer=f"CRP{n}", accession=f"CRA{n}", pid=f"CRM{n}")


def _serve(data: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "BROKER_DATA_DIR": str(data), "BROKER_HL7_PORT": str(port),
           "BROKER_DICOM_ENABLED": "false", "BROKER_WEB_ENABLED": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "broker", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, timeout=30)
    return proc


def _send(port: int, numbers: range) -> None:
    for n in numbers:
        assert send_and_read_ack(port, _order(n)).get("MSA", 1) == "AA"


def _snapshot(database: Path, copy: Path) -> Path:
    """A consistent copy of the live database, in one file."""
    live = sqlite3.connect(database)
    try:
        live.execute("VACUUM INTO ?", (str(copy),))
    finally:
        live.close()
    return copy


def _lose_last_commits(database: Path, snapshot: Path) -> None:
    """Put the earlier copy back into the same file, and drop the WAL that held the rest."""
    with open(database, "r+b") as handle:
        handle.write(snapshot.read_bytes())
        handle.truncate()
    for leftover in (Path(f"{database}-wal"), Path(f"{database}-shm")):
        leftover.unlink(missing_ok=True)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def _restart(tmp_path: Path) -> Broker:
    settings = make_test_settings(tmp_path)
    broker = Broker(replace(settings, web=replace(settings.web, enabled=False)))
    broker.start()
    return broker


def _stored(broker: Broker) -> tuple[list, int]:
    with broker.sessions() as session:
        messages = session.execute(select(InboundMessage.control_id, InboundMessage.journal_seq,
                                          InboundMessage.status)
                                   .order_by(InboundMessage.id)).all()
        return messages, session.scalar(select(func.count()).select_from(Order))


def _machine_crash(tmp_path: Path, kept: range, lost: range) -> Path:
    """Serve, send `kept` then `lost`, kill the broker, and put back the database as it was
    before `lost`: what an OS crash can leave. Returns the data folder."""
    data, port = tmp_path / "data", free_port()
    database = data / "broker.db"
    proc = _serve(data, port)
    try:
        _send(port, kept)
        snapshot = _snapshot(database, tmp_path / "before.db")
        _send(port, lost)
    finally:
        _kill(proc)
    _lose_last_commits(database, snapshot)
    return data


def test_messages_a_machine_crash_took_from_the_database_are_stored_at_start(tmp_path, caplog):
    data = _machine_crash(tmp_path, kept=range(1, 3), lost=range(3, 6))
    caplog.set_level(logging.INFO)
    broker = _restart(tmp_path)
    try:
        messages, orders = _stored(broker)
        assert [(c, s) for c, _, s in messages] == [(f"CR{n}", "PROCESSED") for n in range(1, 6)]
        assert [seq for _, seq, _ in messages] == [1, 2, 3, 4, 5]
        assert orders == 5
        assert "3 received messages were missing from the database" in caplog.text
        broker_port = broker.listeners.hl7[1]
        assert send_and_read_ack(broker_port, _order(4)).get("MSA", 1) == "AA"  # a resend
        assert _stored(broker)[1] == 5                                          # not applied twice
    finally:
        broker.stop()
    assert segment_files(data / "broker.db-hl7-journal") == []


def test_a_killed_broker_keeps_every_message_and_replays_none(tmp_path, caplog):
    data, port = tmp_path / "data", free_port()
    proc = _serve(data, port)
    try:
        _send(port, range(1, 4))
    finally:
        _kill(proc)
    assert segment_files(data / "broker.db-hl7-journal") != []   # no clean stop: still there

    caplog.set_level(logging.INFO)
    broker = _restart(tmp_path)
    try:
        messages, orders = _stored(broker)
        assert [c for c, _, _ in messages] == ["CR1", "CR2", "CR3"] and orders == 3
        assert "missing from the database" not in caplog.text
    finally:
        broker.stop()


def test_replayed_orders_are_on_the_worklist(tmp_path):
    _machine_crash(tmp_path, kept=range(1, 2), lost=range(2, 4))
    settings = make_test_settings(tmp_path)
    broker = Broker(settings)
    broker.start()
    try:
        items = findscu(broker.listeners.dicom[1], ["AccessionNumber", "PatientID"])
        assert sorted(str(i.AccessionNumber) for i in items) == ["CRA1", "CRA2", "CRA3"]
    finally:
        broker.stop()


def test_a_second_broker_on_the_same_database_refuses_to_start(tmp_path):
    data, port = tmp_path / "data", free_port()
    proc = _serve(data, port)
    try:
        env = {**os.environ, "BROKER_DATA_DIR": str(data), "BROKER_HL7_PORT": str(free_port()),
               "BROKER_DICOM_ENABLED": "false", "BROKER_WEB_ENABLED": "false"}
        second = subprocess.run([sys.executable, "-m", "broker", "serve"], env=env,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert "another broker is using the HL7 journal" in second.stderr
        assert "Traceback" not in second.stderr
        _send(port, range(1, 2))   # the first one carries on
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert segment_files(data / "broker.db-hl7-journal") == []
