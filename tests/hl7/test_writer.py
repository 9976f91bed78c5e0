"""The intake's writer thread: ACKs only after the commit, groups, a slow database elsewhere."""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from sqlalchemy import func, select, text

from broker.hl7.message import parse
from broker.hl7.writer import IntakeWriter
from broker.service import Broker
from broker.store.db import make_engine
from broker.store.models import InboundMessage, Order
from tests.conftest import make_test_settings
from tests.support.hl7messages import orm
from tests.support.hl7client import send_and_read_ack


def _order(n: int, pid: str | None = None) -> bytes:
    return orm(f"W{n}", "NW", placer=f"P{n}", accession=f"A{n}", pid=pid or f"M{n % 3}")


def test_each_message_is_committed_before_its_outcome_is_known(intake, sessions):
    writer = IntakeWriter(intake, max_group=8).start()
    results = {}

    def send(n: int) -> None:
        outcome = writer.submit(_order(n), "peer").result(30)
        with sessions() as session:  # a connection of its own sees only committed rows
            results[n] = (outcome.status, session.get(InboundMessage, outcome.message_id).status)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(24)))
    writer.stop()
    assert results == {n: ("PROCESSED", "PROCESSED") for n in range(24)}
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 24


def test_a_failing_message_keeps_its_row_and_spares_the_others(intake, sessions):
    writer = IntakeWriter(intake).start()
    raws = [_order(1), _order(1), _order(2), b"MSH|^~\\&|EHR|HOSP|BROKER|RAD|x||ZZZ^Z99|Z1|P|2.5",
            _order(3)]
    raws[1] = raws[1].replace(b"|W1|", b"|W1b|")  # the same order again: AE, duplicate key
    futures = [writer.submit(raw, "peer") for raw in raws]
    outcomes = [f.result(30) for f in futures]
    writer.stop()
    assert [o.code for o in outcomes] == ["AA", "AE", "AA", "AR", "AA"]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboundMessage)) == 5
        assert session.scalar(select(func.count()).select_from(Order)) == 3


def test_stop_stores_what_was_submitted_before(intake, sessions):
    writer = IntakeWriter(intake).start()
    futures = [writer.submit(_order(n), "peer") for n in range(10)]
    writer.stop()
    assert all(f.result(0).status == "PROCESSED" for f in futures)


def test_a_bug_in_a_handler_is_answered_ae_and_logged_with_its_stored_row(intake, sessions,
                                                                         monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr("broker.hl7.handlers.store_order", broken)
    caplog.set_level(logging.ERROR)
    outcome = IntakeWriter(intake).start().submit(_order(1), "peer").result(30)
    assert outcome.code == "AE" and "internal error" in parse(outcome.ack).get("MSA", 3)
    assert f"message #{outcome.message_id}" in caplog.text and "ZeroDivisionError" in caplog.text
    with sessions() as session:
        assert session.get(InboundMessage, outcome.message_id).status == "FAILED"


def test_a_long_write_elsewhere_delays_acks_but_loses_none_and_the_listener_stays_up(tmp_path):
    """Another process holds SQLite's write lock for two seconds (an import, a checkpoint):
    the HL7 senders get every ACK once it is released, and meanwhile the listener still
    accepts connections and answers what needs no database (an oversized frame's AR)."""
    settings = make_test_settings(tmp_path)
    settings = replace(settings, hl7=replace(settings.hl7, max_message_bytes=4096),
                       dicom=replace(settings.dicom, enabled=False),
                       web=replace(settings.web, enabled=False))
    broker = Broker(settings)
    broker.start()
    port = broker.listeners.hl7[1]
    try:
        assert send_and_read_ack(port, _order(0)).get("MSA", 1) == "AA"
        blocker = make_engine(settings.database_url)
        locked, release = threading.Event(), threading.Event()

        def hold_the_write_lock() -> None:
            with blocker.begin() as conn:   # BEGIN IMMEDIATE: SQLite's write lock
                conn.execute(text("UPDATE imaging_order SET reason = reason"))
                locked.set()
                release.wait(30)
        holder = threading.Thread(target=hold_the_write_lock)
        holder.start()
        assert locked.wait(10)
        with ThreadPoolExecutor(4) as pool:
            acks = [pool.submit(send_and_read_ack, port, _order(n, pid=f"L{n}"))
                    for n in range(1, 5)]
            too_big = orm("BIG", "NW").replace(b"Doe^Jane", b"D" * 8000)
            assert send_and_read_ack(port, too_big).get("MSA", 1) == "AR"   # answered now
            assert not any(a.done() for a in acks)                           # still waiting
            release.set()
            assert [a.result(30).get("MSA", 1) for a in acks] == ["AA"] * 4
        holder.join(10)
        blocker.dispose()
        with broker.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Order)) == 5
    finally:
        broker.stop()
