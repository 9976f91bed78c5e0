"""The intake in one transaction: store, apply in a savepoint, ACK; order controls; ADT."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from broker.clock import uid_factory
from broker.hl7.handlers import HANDLERS
from broker.hl7.intake import Hl7Intake, IntakeContext
from broker.hl7.message import parse
from broker.store.models import InboundMessage, Order, Patient, ScheduledStep
from tests.hl7.conftest import MAPPINGS
from tests.support.hl7messages import adt, orm


def _statuses(sessions) -> list[str]:
    with sessions() as session:
        return list(session.scalars(select(ScheduledStep.status).order_by(ScheduledStep.id)))


def test_ack_echoes_control_id_and_answers_sender(intake):
    outcome = intake.receive(orm("C1", "NW"), "peer")
    ack = parse(outcome.ack)
    assert (ack.get("MSA", 1), ack.get("MSA", 2)) == ("AA", "C1")
    assert (ack.get("MSH", 5), ack.get("MSH", 6), ack.get("MSH", 9, comp=2)) == ("EHR", "HOSP", "O01")


def test_failed_apply_keeps_the_raw_message_and_writes_nothing_else(intake, sessions):
    intake.receive(orm("C1", "NW", placer="P1", accession="A1"), "peer")
    # Two groups: the first would create order P2, the second clashes on accession A1.
    second_group = "\rORC|NW|P3^EHR|||||^^^202611241000^^R\rOBR|1|P3^EHR||CTHEAD^CT head^L" \
                   "||||||||||||||A1|RP3|SPS3||||CT"
    raw = orm("C2", "NW", placer="P2", accession="A2", pid="MRN2", extra_group=second_group)
    outcome = intake.receive(raw, "peer")
    ack = parse(outcome.ack)
    assert ack.get("MSA", 1) == "AE" and "A1" in ack.get("MSA", 3)
    assert ack.get("ERR", 1, comp=4, sub=1) == "205"  # v2.3.1 ERR-1: duplicate key
    with sessions() as session:
        row = session.get(InboundMessage, outcome.message_id)
        assert (row.status, row.raw, row.ack) == ("FAILED", raw, outcome.ack)
        assert session.scalar(select(func.count()).select_from(Order)) == 1  # P2 rolled back
        assert session.scalar(select(func.count()).select_from(Patient)) == 1  # MRN2 too


def test_failed_message_is_reprocessed_once_the_cause_is_fixed(intake, sessions):
    change = intake.receive(orm("C1", "XO", when="202611241500"), "peer")
    assert (change.status, parse(change.ack).get("ERR", 1, comp=4, sub=1)) == ("FAILED", "204")
    assert intake.receive(orm("C2", "NW"), "peer").status == "PROCESSED"
    again = intake.reprocess(change.message_id)
    assert again.status == "PROCESSED"
    with sessions() as session:
        step = session.scalars(select(ScheduledStep)).one()
        assert step.start_at.hour == 15
        assert session.get(InboundMessage, change.message_id).attempts == 2
    with pytest.raises(ValueError):
        intake.reprocess(change.message_id)  # already processed


def test_reprocess_is_atomic_a_failure_before_the_outcome_leaves_no_change(intake, sessions,
                                                                          monkeypatch):
    failed = intake.receive(orm("C1", "XO", when="202611241500"), "peer")
    assert failed.status == "FAILED"
    intake.receive(orm("C2", "NW"), "peer")   # the order XO needs now exists

    def outcome_not_written(*args, **kwargs):
        raise RuntimeError("disk full while writing the outcome")
    monkeypatch.setattr("broker.hl7.intake.finish_message", outcome_not_written)
    with pytest.raises(RuntimeError):
        intake.reprocess(failed.message_id)
    with sessions() as session:
        assert session.scalars(select(ScheduledStep)).one().start_at.hour == 10  # XO not applied
        row = session.get(InboundMessage, failed.message_id)
        assert (row.status, row.attempts) == ("FAILED", 1)
    monkeypatch.undo()
    assert intake.reprocess(failed.message_id).status == "PROCESSED"


def test_resend_is_answered_with_the_first_ack_and_not_applied_again(intake, sessions):
    first = intake.receive(orm("C1", "NW"), "peer")
    again = intake.receive(orm("C1", "NW"), "peer")
    assert again.duplicate and again.ack == first.ack and again.message_id == first.message_id
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboundMessage)) == 1


def test_unreadable_bytes_are_stored_and_answered_ar(intake, sessions):
    outcome = intake.receive(b"\x00\x01garbage", "peer")
    assert parse(outcome.ack).get("MSA", 1) == "AR"
    with sessions() as session:
        assert session.get(InboundMessage, outcome.message_id).raw == b"\x00\x01garbage"


# (controls sent in order with their ORC-5, final step statuses, MSA-1 of the last ACK,
#  words the last ACK's MSA-3 must contain)
CONTROL_CASES = [
    ([("NW", "")], ["SCHEDULED"], "AA", ""),
    ([("NW", ""), ("CA", "CA")], ["CANCELED"], "AA", ""),
    ([("NW", ""), ("DC", "DC")], ["CANCELED"], "AA", ""),
    ([("NW", ""), ("HD", "HD")], ["HOLD"], "AA", ""),
    ([("NW", ""), ("HD", "HD"), ("RL", "")], ["SCHEDULED"], "AA", ""),
    ([("NW", ""), ("SC", "IP")], ["STARTED"], "AA", ""),
    ([("NW", ""), ("SC", "CM")], ["COMPLETED"], "AA", ""),
    ([("NW", ""), ("SC", "CM"), ("CA", "CA")], ["COMPLETED"], "AE", "COMPLETED"),
    ([("NW", ""), ("SC", "CM"), ("XO", "")], ["COMPLETED"], "AE", "cannot be changed"),
    ([("NW", ""), ("RL", "")], ["SCHEDULED"], "AE", "HOLD"),
    ([("CA", "CA")], [], "AE", "not known"),
    ([("NW", ""), ("NW", "")], ["SCHEDULED"], "AE", "already exists"),
    ([("NW", ""), ("SC", "ZZ")], ["SCHEDULED"], "AE", "ORC-5"),
    ([("NW", ""), ("OC", "")], ["SCHEDULED"], "AE", "not supported"),
]


@pytest.mark.parametrize("controls, statuses, code, words", CONTROL_CASES,
                         ids=["-".join(c for c, _ in case[0]) + f"-{case[2]}"
                              for case in CONTROL_CASES])
def test_order_controls_map_to_lifecycle_transitions(intake, sessions, controls, statuses,
                                                     code, words):
    for number, (control, orc5) in enumerate(controls):
        outcome = intake.receive(orm(f"C{number}", control, orc5=orc5), "peer")
    ack = parse(outcome.ack)
    assert ack.get("MSA", 1) == code
    assert words in ack.get("MSA", 3)
    assert (ack.segment("ERR") is not None) == (code != "AA")
    assert _statuses(sessions) == statuses


def test_a40_moves_orders_to_the_survivor_at_once(intake, sessions):
    intake.receive(adt("C1", "A04", pid="MRN9", name="Walker^Tom"), "peer")
    intake.receive(orm("C2", "NW", pid="TEMP1"), "peer")
    outcome = intake.receive(adt("C3", "A40", pid="MRN9", name="Walker^Tom", mrg="TEMP1"), "peer")
    assert outcome.status == "PROCESSED"
    with sessions() as session:
        order = session.scalars(select(Order)).one()
        assert [i.value for i in order.patient.identifiers] == ["MRN9", "TEMP1"]
        assert order.patient.name == "Walker^Tom"


@pytest.mark.parametrize("messages, code, words", [
    ([adt("C1", "A40", pid="MRN1", mrg="NOPE")], "AE", "MRG-1"),
    ([adt("C1", "A47", pid="NEW1", mrg="NOPE")], "AE", "MRG-1"),
    ([adt("C1", "A04", pid="X1"), adt("C2", "A04", pid="X2"),
      adt("C3", "A47", pid="X2", mrg="X1")], "AE", "another patient"),
    ([adt("C1", "A10", pid="NOPE")], "AE", "not known"),
    ([adt("C1", "A99")], "AR", "not supported"),
])
def test_adt_refusals(intake, messages, code, words):
    for raw in messages:
        outcome = intake.receive(raw, "peer")
    ack = parse(outcome.ack)
    assert ack.get("MSA", 1) == code and words in ack.get("MSA", 3)


def test_a47_changes_the_identifier_and_a10_marks_todays_steps_arrived(intake, sessions):
    intake.receive(orm("C1", "NW", pid="OLD1", when="202611241000"), "peer")
    intake.receive(orm("C2", "NW", placer="P2", accession="A2", pid="OLD1",
                       when="202611251000"), "peer")
    assert intake.receive(adt("C3", "A47", pid="NEW1", mrg="OLD1"), "peer").status == "PROCESSED"
    assert intake.receive(adt("C4", "A10", pid="NEW1", evn_time="20261124075500"),
                          "peer").status == "PROCESSED"
    assert _statuses(sessions) == ["ARRIVED", "SCHEDULED"]  # only the steps of 24 November
    with sessions() as session:
        assert [i.value for i in session.scalars(select(Patient)).one().identifiers] == ["NEW1"]


def test_a40_with_two_patient_groups_merges_both(intake, sessions):
    for n, pid in enumerate(["S1", "T1", "S2", "T2"]):
        intake.receive(adt(f"R{n}", "A04", pid=pid), "peer")
    raw = adt("M1", "A40", pid="S1", mrg="T1") + b"\rPID|2||S2^^^HOSP^MR||Doe^Jane\rMRG|T2^^^HOSP^MR"
    assert intake.receive(raw, "peer").status == "PROCESSED"
    with sessions() as session:
        patients = session.scalars(select(Patient).order_by(Patient.id)).all()
        assert sum(p.merged_into_id is not None for p in patients) == 2
        survivors = {p.identifiers[0].value: [i.value for i in p.identifiers]
                     for p in patients if p.merged_into_id is None}
    assert survivors == {"S1": ["S1", "T1"], "S2": ["S2", "T2"]}


@pytest.mark.postgres
def test_concurrent_copy_of_a_message_is_answered_as_a_resend(postgres):
    """Two broker processes get the same message: the second insert waits on the unique index,
    inserts nothing once the first commits, and is answered with the first's ACK (PostgreSQL
    only)."""
    import time

    from sqlalchemy import text

    from broker.store.db import make_engine, make_session_factory
    from broker.store.migrate import upgrade

    engine = make_engine(postgres.create_database("broker_test_concurrent_resend"))
    upgrade(engine)
    sessions = make_session_factory(engine)
    first_intake = Hl7Intake(sessions, IntakeContext(mappings=MAPPINGS,
                                                     new_uid=uid_factory("1.2.3.")), HANDLERS)
    second_intake = Hl7Intake(sessions, IntakeContext(mappings=MAPPINGS,
                                                      new_uid=uid_factory("1.2.4.")), HANDLERS)
    raw = orm("SAME1", "NW")
    session = sessions()
    session.begin()
    first = first_intake.process(session, raw, "a")  # not committed yet
    results = []
    thread = threading.Thread(target=lambda: results.append(second_intake.receive(raw, "b")))
    thread.start()
    with engine.connect() as watch:  # wait until the second insert blocks on the first
        for _ in range(400):
            waiting = watch.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")).scalar()
            if waiting:
                break
            time.sleep(0.025)
    session.commit()
    session.close()
    thread.join(30)
    engine.dispose()
    assert results and results[0].duplicate
    assert (results[0].message_id, results[0].ack) == (first.message_id, first.ack)
