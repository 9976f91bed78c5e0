"""Merge and unmerge: everything a patient owns moves, and comes back exactly."""
import pytest
from sqlalchemy import select

from broker.domain.records import Identifier, PatientRecord, PersonName
from broker.store.merge import MergeError, merge_patients, surviving, unmerge_patients
from broker.store.models import AuditEvent, Order, Patient, PatientIdentifier
from broker.store.patients import find_by_identifiers
from tests.support.matching import create_order_for

def _order(session, mrn, placer, family):
    return create_order_for(session, PatientRecord((Identifier(mrn, "HOSP"),),
                                                   PersonName(family, "Anna")), placer)


def _setup(sessions):
    with sessions.begin() as session:
        a = _order(session, "A1", "P1", "Smith").patient_id
        b = _order(session, "B1", "P2", "Smyth").patient_id
    return a, b


def _owner(session, mrn):
    return session.scalar(select(PatientIdentifier.patient_id).where(PatientIdentifier.value == mrn))


def test_merge_moves_everything_and_unmerge_restores_exactly(sessions):
    survivor, merged = _setup(sessions)
    with sessions.begin() as session:
        merge_id = merge_patients(session, survivor, merged, actor="admin", reason="same person").id
    with sessions() as session:
        assert _owner(session, "B1") == survivor
        assert {o.patient_id for o in session.scalars(select(Order))} == {survivor}
        assert session.get(Patient, merged).merged_into_id == survivor
        assert find_by_identifiers(session, PatientRecord((Identifier("B1", "HOSP"),))).id == survivor
    with sessions.begin() as session:
        unmerge_patients(session, merge_id, actor="admin")
    with sessions() as session:
        assert _owner(session, "B1") == merged
        owners = {o.placer_order_number: o.patient_id for o in session.scalars(select(Order))}
        assert owners == {"P1": survivor, "P2": merged}
        assert session.get(Patient, merged).merged_into_id is None
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
        assert actions == ["patient.merge", "patient.unmerge"]


@pytest.mark.parametrize("case,message", [
    ("self", "into itself"),
    ("twice", "already merged"),
    ("missing", "no patient"),
])
def test_merge_refusals(sessions, case, message):
    survivor, merged = _setup(sessions)
    with sessions.begin() as session:
        if case == "twice":
            merge_patients(session, survivor, merged, actor="admin")
    with pytest.raises(MergeError, match=message):
        with sessions.begin() as session:
            if case == "self":
                merge_patients(session, survivor, survivor, actor="admin")
            elif case == "twice":
                merge_patients(session, survivor, merged, actor="admin")
            else:
                merge_patients(session, survivor, 9999, actor="admin")


def test_unmerge_twice_is_refused(sessions):
    survivor, merged = _setup(sessions)
    with sessions.begin() as session:
        merge_id = merge_patients(session, survivor, merged, actor="admin").id
    with sessions.begin() as session:
        unmerge_patients(session, merge_id, actor="admin")
    with pytest.raises(MergeError, match="already undone"):
        with sessions.begin() as session:
            unmerge_patients(session, merge_id, actor="admin")


def test_surviving_follows_a_chain_of_merges(sessions):
    first, second = _setup(sessions)
    with sessions.begin() as session:
        third = _order(session, "C1", "P3", "Smithe").patient_id
        merge_patients(session, second, first, actor="admin")
        merge_patients(session, third, second, actor="admin")
    with sessions() as session:
        assert surviving(session, session.get(Patient, first)).id == third
