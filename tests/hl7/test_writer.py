"""The intake writer on the event loop: group commit, ACK only after the commit, stop."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from broker.hl7 import writer as writer_module
from broker.hl7.writer import IntakeWriter
from broker.store.fastsql import commit_held
from broker.store.models import InboundMessage, Order, Patient, PatientIdentifier
from tests.hl7.test_intake import orm


def _orders(n: int, first: int = 0) -> list[bytes]:
    return [orm(f"G{i}", "NW", placer=f"P{i}", accession=f"A{i}", pid=f"M{i % 3}")
            for i in range(first, first + n)]


def _committed(sessions) -> tuple[int, int]:
    """(inbound messages, orders) as a new connection sees them: only committed rows."""
    with sessions() as session:
        return (session.scalar(select(func.count()).select_from(InboundMessage)),
                session.scalar(select(func.count()).select_from(Order)))


def test_messages_arriving_in_the_same_turn_share_one_commit(intake, sessions):
    async def scenario() -> list:
        writer = IntakeWriter(intake, 64, loop=asyncio.get_running_loop())
        outcomes = await asyncio.gather(*(writer.store(raw, "peer") for raw in _orders(6)))
        return [writer.commits, outcomes]

    commits, outcomes = asyncio.run(scenario())
    assert commits == 1
    assert [o.status for o in outcomes] == ["PROCESSED"] * 6
    assert _committed(sessions) == (6, 6)


def test_a_group_is_committed_at_max_group(intake, sessions):
    async def scenario() -> int:
        writer = IntakeWriter(intake, 4, loop=asyncio.get_running_loop())
        await asyncio.gather(*(writer.store(raw, "peer") for raw in _orders(10)))
        return writer.commits

    assert asyncio.run(scenario()) == 3  # 4 + 4 + 2
    assert _committed(sessions) == (10, 10)


def test_no_outcome_before_the_commit(intake, sessions):
    """While a group waits for its quiet turns nothing is committed, and nobody is answered."""
    async def scenario() -> list:
        writer = IntakeWriter(intake, 64, loop=asyncio.get_running_loop(), quiet_turns=50)
        task = asyncio.ensure_future(writer.store(_orders(1)[0], "peer"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        before = (task.done(), _committed(sessions))
        outcome = await task
        return [before, outcome.status, _committed(sessions)]

    before, status, after = asyncio.run(scenario())
    assert before == (False, (0, 0))
    assert (status, after) == ("PROCESSED", (1, 1))


def test_with_one_sender_the_message_commits_without_waiting_for_quiet_turns(intake, sessions):
    """A lone sender waits for each ACK, so nothing can join its group: commit at once."""
    async def scenario() -> list:
        writer = IntakeWriter(intake, 64, loop=asyncio.get_running_loop(), quiet_turns=50)
        writer.one_sender = lambda: True
        task = asyncio.ensure_future(writer.store(_orders(1)[0], "peer"))
        await asyncio.sleep(0)   # one turn: store() runs up to its wait, no quiet turns yet
        return [writer.commits, _committed(sessions), (await task).status]

    assert asyncio.run(scenario()) == [1, (1, 1), "PROCESSED"]


def test_a_message_whose_connection_went_away_is_still_committed(intake, sessions):
    async def scenario() -> None:
        writer = IntakeWriter(intake, 64, loop=asyncio.get_running_loop(), quiet_turns=50)
        task = asyncio.ensure_future(writer.store(_orders(1)[0], "peer"))
        await asyncio.sleep(0)
        task.cancel()  # the listener closing the connection while the group is open
        with pytest.raises(asyncio.CancelledError):
            await task
        await writer.flush()

    asyncio.run(scenario())
    assert _committed(sessions) == (1, 1)


def test_store_refuses_a_foreign_loop(intake):
    writer = IntakeWriter(intake).start()  # its own loop thread
    try:
        with pytest.raises(RuntimeError, match="submit"):
            asyncio.run(writer.store(_orders(1)[0], "peer"))
    finally:
        writer.stop()


def test_submit_from_other_threads_and_stop(intake, sessions):
    writer = IntakeWriter(intake, max_group=8).start()  # runs its own loop thread
    futures = [writer.submit(raw, "peer") for raw in _orders(5)]
    statuses = [f.result(30).status for f in futures]
    writer.stop()
    assert statuses == ["PROCESSED"] * 5
    assert _committed(sessions) == (5, 5)


def test_groups_reuse_the_writers_connection(intake, sessions):
    """One pool checkout for many groups: the writer holds its connection between commits."""
    engine = sessions.kw["bind"]
    checkouts = []

    def count(*args) -> None:
        checkouts.append(1)

    event.listen(engine, "checkout", count)

    async def scenario() -> int:
        writer = IntakeWriter(intake, 2, loop=asyncio.get_running_loop())
        for raw in _orders(6):
            await writer.store(raw, "peer")
        writer.stop()
        return writer.commits

    try:
        assert asyncio.run(scenario()) == 6
    finally:
        event.remove(engine, "checkout", count)
    assert len(checkouts) == 1
    assert _committed(sessions) == (6, 6)


def test_a_failed_commit_stores_each_message_alone_on_a_new_connection(intake, sessions,
                                                                      monkeypatch):
    """The group's commit fails once: every message is stored in a transaction of its own
    (and answered), and the next group runs on a fresh connection."""
    failures = [OperationalError("COMMIT", {}, RuntimeError("disk I/O error"))]

    def fail_once(session) -> None:
        # The commit itself fails, before the driver commits: the group's work is still open.
        if failures:
            raise failures.pop()
        commit_held(session)

    monkeypatch.setattr(writer_module, "commit_held", fail_once)

    async def scenario() -> list:
        writer = IntakeWriter(intake, 64, loop=asyncio.get_running_loop())
        first = await asyncio.gather(*(writer.store(raw, "peer") for raw in _orders(3)))
        held = writer._connection
        second = await writer.store(_orders(1, first=3)[0], "peer")
        return [first, held, second, writer._connection]

    first, held, second, connection = asyncio.run(scenario())
    assert [o.status for o in first] == ["PROCESSED"] * 3
    assert held is None  # dropped after the failure...
    assert connection is not None and second.status == "PROCESSED"  # ...and opened again
    assert _committed(sessions) == (4, 4)


def _clashing(control_id: str, placer: str, mrn: str) -> bytes:
    """An order that creates patient `mrn` and order `placer`, then fails: its second group
    reuses accession A0."""
    clash = (f"\rORC|NW|{placer}X^EHR|||||^^^202611241000^^R\rOBR|1|{placer}X^EHR||CTHEAD^CT "
             f"head^L||||||||||||||A0|RP{placer}X|SPS{placer}X||||CT")
    return orm(control_id, "NW", placer=placer, accession=f"A{placer}", pid=mrn,
               extra_group=clash)


def test_failing_messages_keep_their_raw_rows_and_the_rest_of_their_group(intake, sessions):
    """The first message of a transaction runs without a savepoint: when it fails, the whole
    transaction is rolled back and the message stored again as FAILED. Later messages of the
    group fail back to their own savepoints."""
    sent = [_clashing("B1", "P1", "BAD1"), orm("G2", "NW", placer="P2", accession="A2"),
            _clashing("B3", "P3", "BAD3"), orm("G4", "NW", placer="P4", accession="A4")]

    async def scenario() -> list:
        writer = IntakeWriter(intake, 64, loop=asyncio.get_running_loop())
        await writer.store(orm("G0", "NW", placer="P0", accession="A0"), "peer")
        outcomes = await asyncio.gather(*(writer.store(raw, "peer") for raw in sent))
        return [writer.commits, outcomes]

    commits, outcomes = asyncio.run(scenario())
    assert commits == 2
    assert [o.status for o in outcomes] == ["FAILED", "PROCESSED", "FAILED", "PROCESSED"]
    with sessions() as session:
        for raw, outcome in zip(sent, outcomes):
            row = session.get(InboundMessage, outcome.message_id)
            assert (row.status, row.raw, row.ack) == (outcome.status, raw, outcome.ack)
        assert sorted(session.scalars(select(Order.placer_order_number))) == ["P0", "P2", "P4"]
        assert not session.scalars(select(PatientIdentifier).where(
            PatientIdentifier.value.in_(["BAD1", "BAD3"]))).all()
    assert _committed(sessions) == (5, 3)


def test_a_bug_in_a_lone_message_is_logged_with_its_stored_row(intake, sessions, caplog):
    def broken(session, msg, message_id, ctx):
        session.add(Patient(name="HALF^DONE"))
        session.flush()
        raise RuntimeError("a bug")

    intake._handlers = {**intake._handlers, "ORM^O01": broken}

    async def scenario():
        writer = IntakeWriter(intake, 64, loop=asyncio.get_running_loop())
        return await writer.store(_orders(1)[0], "peer")

    with caplog.at_level("ERROR", logger="broker.hl7.intake"):
        outcome = asyncio.run(scenario())
    assert outcome.status == "FAILED"
    assert [r.getMessage() for r in caplog.records] == [
        f"hl7 message #{outcome.message_id} (control id G0): processing failed"]
    with sessions() as session:
        assert session.get(InboundMessage, outcome.message_id).status == "FAILED"
        assert not session.scalars(select(Patient).where(Patient.name == "HALF^DONE")).all()
