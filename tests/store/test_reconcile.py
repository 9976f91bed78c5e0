"""Reconciliation in the store: keys kept current, the review queue, link, dismiss, unmerge."""
from dataclasses import replace

import pytest
from sqlalchemy import select

from broker.config import MatchingSettings
from broker.domain.records import Identifier, PatientRecord, PersonName
from broker.matching.queue import MatchError, list_matches
from broker.matching.review import dismiss_match, link_match, unmerge_patient
from broker.matching.score import Policy, profile
from broker.matching.search import search
from broker.store.models import (
    AuditEvent, MatchCandidate, Order, Patient, PatientBlockKey, PatientIdentifier, PerformedStep,
)
from broker.store.patients import configure_matching, upsert_patient
from tests.support.matching import create_order_for, run_searches

ANNA = PatientRecord((Identifier("A1", "HOSP"),), PersonName("Lindqvist", "Anna"), "19800512", "F",
                     "Storgatan 1, Uppsala", "018 555 1234")


def _clinic_copy(**changes):
    return replace(ANNA, **{"identifiers": (Identifier("C9", "CLINIC"),), **changes})


def _actions(session):
    return session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()


def test_unknown_identifier_with_typo_is_queued_with_explained_scores(sessions):
    with sessions.begin() as session:
        anna = create_order_for(session, ANNA, "P1").patient_id
        clinic = create_order_for(session, _clinic_copy(name=PersonName("Lindqvst", "Anna")), "P2").patient_id
    assert anna != clinic  # never merged on demographics alone
    run_searches(sessions)
    with sessions() as session:
        [entry] = list_matches(session)
        assert (entry.incoming["id"], entry.candidate["id"]) == (clinic, anna)
        # Points are the matching model's weights (bits), each with its level in words.
        assert entry.fields["family_name"]["note"].startswith("one letter differs")
        assert entry.fields["family_name"]["points"] >= 0 and entry.fields["birth_date"]["points"] > 3
        assert entry.score >= 8.0 and entry.kind == "duplicate" and entry.source == "hl7"
        assert "match.proposed" in _actions(session)


def test_queue_names_the_channel_the_patient_came_from(sessions):
    with sessions.begin() as session:
        create_order_for(session, ANNA, "P1")
        create_order_for(session, _clinic_copy(name=PersonName("Lindqvst", "Anna")), "P2",
                         source_channel="wl-import")
    run_searches(sessions)
    with sessions() as session:
        [entry] = list_matches(session)
        assert entry.source == "wl-import"


def test_different_person_is_not_queued(sessions):
    with sessions.begin() as session:
        upsert_patient(session, ANNA)
        upsert_patient(session, _clinic_copy(name=PersonName("Lindqvist", "Erik"), sex="M",
                                             birth_date="19781101"))
    run_searches(sessions)
    with sessions() as session:
        assert list_matches(session) == []


def test_block_keys_follow_every_update(sessions):
    with sessions.begin() as session:
        pid = upsert_patient(session, ANNA).id
    with sessions() as session:
        before = set(session.scalars(select(PatientBlockKey.key).where(PatientBlockKey.patient_id == pid)))
    with sessions.begin() as session:
        upsert_patient(session, replace(ANNA, name=PersonName("Lindqvist", "Anna-Karin"),
                                        birth_date="19800513"))
    with sessions() as session:
        after = set(session.scalars(select(PatientBlockKey.key).where(PatientBlockKey.patient_id == pid)))
        assert "D19800512" in before and "D19800513" in after and "D19800512" not in after
        found = search(session, profile("Lindqvist", "Anna-Karin", "19800513"), Policy())
        assert [pid] == [p for p, _ in found]


def test_identifier_match_with_contradicting_demographics_is_flagged_not_applied(sessions):
    with sessions.begin() as session:
        pid = upsert_patient(session, ANNA).id
    other = replace(ANNA, name=PersonName("Okafor", "Chinedu"), sex="M", birth_date="19550101")
    for _ in range(2):  # the second order of the visit carries the same disagreement
        with sessions.begin() as session:
            assert upsert_patient(session, other).id == pid
    with sessions() as session:
        patient = session.get(Patient, pid)
        assert (patient.family_name, patient.birth_date) == ("Lindqvist", "19800512")
        [entry] = list_matches(session)
        assert entry.kind == "conflict" and entry.incoming["family_name"] == "Okafor"
        assert "demographics disagree" in entry.reason
    with sessions.begin() as session:  # an admin accepts the correction
        assert link_match(session, entry.id, actor="admin") is None
    with sessions() as session:
        assert session.get(Patient, pid).family_name == "Okafor"
        assert "match.accept" in _actions(session)


def test_emergency_placeholder_name_is_replaced_without_review(sessions):
    with sessions.begin() as session:
        upsert_patient(session, replace(ANNA, name=PersonName("UNKNOWN", "TRAUMA"), birth_date="",
                                        sex="", address="", phone=""))
        upsert_patient(session, ANNA)  # the ADT with her real identity
    run_searches(sessions)
    with sessions() as session:
        assert session.scalars(select(Patient.family_name)).all() == ["Lindqvist"]
        assert list_matches(session) == []


def test_small_corrections_are_applied_without_review(sessions):
    with sessions.begin() as session:
        upsert_patient(session, ANNA)
        upsert_patient(session, replace(ANNA, name=PersonName("Lindqvist-Berg", "Anna"),
                                        address="Kungsgatan 9, Uppsala"))
    run_searches(sessions)
    with sessions() as session:
        assert session.scalars(select(Patient.family_name)).all() == ["Lindqvist-Berg"]
        assert list_matches(session) == []


def test_link_moves_identifiers_orders_and_performed_steps_and_unmerge_restores(sessions):
    with sessions.begin() as session:
        anna = create_order_for(session, ANNA, "P1").patient_id
        order = create_order_for(session, _clinic_copy(birth_date="19800521"), "P2")
        clinic = order.patient_id
        session.add(PerformedStep(sop_instance_uid="1.2.3", status="COMPLETED", patient_id=clinic))
    run_searches(sessions)
    with sessions() as session:
        [entry] = list_matches(session)
    with sessions.begin() as session:
        merge = link_match(session, entry.id, actor="admin")
        assert (merge.survivor_id, merge.merged_id) == (anna, clinic)
    with sessions() as session:
        owners = set(session.scalars(select(PatientIdentifier.patient_id)))
        assert owners == {anna}
        assert set(session.scalars(select(Order.patient_id))) == {anna}
        assert session.scalar(select(PerformedStep.patient_id)) == anna
        linked = session.get(MatchCandidate, entry.id)
        assert (linked.status, linked.resolved_by) == ("LINKED", "admin")
        assert linked.resolved_at is not None
        assert search(session, profile("Lindqvist", "Anna", "19800521"), Policy())[0][0] == anna
    with sessions.begin() as session:
        unmerge_patient(session, clinic, actor="admin")
    with sessions() as session:
        assert session.scalar(select(Order.patient_id).where(Order.placer_order_number == "P2")) == clinic
        assert session.scalar(select(PatientIdentifier.patient_id)
                              .where(PatientIdentifier.value == "C9")) == clinic
        assert session.get(MatchCandidate, entry.id).status == "DISMISSED"
        assert _actions(session)[-4:] == ["patient.merge", "match.link", "patient.unmerge",
                                          "match.unlink"]


def test_dismissed_pair_is_never_proposed_again(sessions):
    with sessions.begin() as session:
        upsert_patient(session, ANNA)
        upsert_patient(session, _clinic_copy())
    run_searches(sessions)
    with sessions() as session:
        [entry] = list_matches(session)
    with sessions.begin() as session:
        dismiss_match(session, entry.id, actor="admin")
    with sessions.begin() as session:  # the clinic record is updated: search runs again
        upsert_patient(session, _clinic_copy(phone="018 555 9999"))
        upsert_patient(session, PatientRecord((Identifier("Z1", "OTHER"),), ANNA.name, ANNA.birth_date))
    run_searches(sessions)
    with sessions() as session:
        pairs = {frozenset((e.incoming["id"], e.candidate["id"])) for e in list_matches(session)}
        assert frozenset((entry.incoming["id"], entry.candidate["id"])) not in pairs
        dismissed = session.get(MatchCandidate, entry.id)
        assert (dismissed.status, dismissed.resolved_by) == ("DISMISSED", "admin")
        assert "match.dismiss" in _actions(session)
    with sessions.begin() as session, pytest.raises(MatchError, match="dismissed"):
        link_match(session, entry.id, actor="admin")


def test_trusted_identifier_bridging_two_patients_links_automatically(sessions):
    configure_matching(sessions, MatchingSettings(trusted_issuers=("NATIONAL",)))
    with sessions.begin() as session:
        anna = upsert_patient(session, replace(ANNA, identifiers=(
            Identifier("A1", "HOSP"), Identifier("19800512-1234", "NATIONAL")))).id
        clinic = upsert_patient(session, _clinic_copy(name=PersonName("Lindquist", "Anna"))).id
    with sessions.begin() as session:  # the clinic learns her national number
        upsert_patient(session, _clinic_copy(identifiers=(
            Identifier("C9", "CLINIC"), Identifier("19800512-1234", "NATIONAL"))))
    with sessions() as session:
        assert session.get(Patient, clinic).merged_into_id == anna
        entry = session.scalars(select(MatchCandidate)).one()
        assert (entry.status, entry.resolved_by) == ("LINKED", "matching")
        assert entry.reason.startswith("automatic: same identifier of trusted issuer NATIONAL")


def test_untrusted_identifier_bridging_two_patients_goes_to_review(sessions):
    with sessions.begin() as session:
        upsert_patient(session, replace(ANNA, identifiers=(
            Identifier("A1", "HOSP"), Identifier("X7", "REGION"))))
        clinic = upsert_patient(session, _clinic_copy(name=PersonName("Berg", "Erik"), sex="M",
                                                      birth_date="19500101")).id
    with sessions.begin() as session:
        upsert_patient(session, replace(_clinic_copy(name=PersonName("Berg", "Erik"), sex="M",
                                                     birth_date="19500101"),
                                        identifiers=(Identifier("C9", "CLINIC"), Identifier("X7", "REGION"))))
    run_searches(sessions)
    with sessions() as session:
        assert session.get(Patient, clinic).merged_into_id is None
        [entry] = list_matches(session)
        assert entry.reason.startswith("the identifiers of one record are held by two patients")
        assert session.scalars(select(Patient.family_name).order_by(Patient.id)).all() == [
            "Lindqvist", "Berg"]  # neither record was overwritten


def test_reconciliation_can_be_turned_off(sessions):
    configure_matching(sessions, MatchingSettings(enabled=False))
    with sessions.begin() as session:
        upsert_patient(session, ANNA)
        upsert_patient(session, _clinic_copy())
        assert session.scalars(select(PatientBlockKey)).first() is not None  # keys still kept
    run_searches(sessions)
    with sessions() as session:
        assert list_matches(session) == []
