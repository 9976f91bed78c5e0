"""The deferred patient search: queued after the message's transaction, durable, done once."""
from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from broker.config import MatchingSettings
from broker.domain.records import Identifier, PatientRecord, PersonName
from broker.matching import searches
from broker.matching.queue import list_matches
from broker.matching.searches import MAX_ATTEMPTS, run_pending_searches
from broker.store.db import make_engine, make_session_factory
from broker.store.models import AuditEvent, MatchCandidate, Patient, PatientBlockKey, PatientSearch
from broker.store.patients import configure_matching, upsert_patient
from tests.support.matching import create_order_for, run_searches

ANNA = PatientRecord((Identifier("A1", "HOSP"),), PersonName("Lindqvist", "Anna"), "19800512", "F",
                     "Storgatan 1, Uppsala", "018 555 1234")
CLINIC_ANNA = replace(ANNA, identifiers=(Identifier("C9", "CLINIC"),),
                      name=PersonName("Lindqvst", "Anna"))


PEOPLE = [(f, g) for f in ("Okafor", "Lindqvist", "Nakamura", "Kowalski", "Haddad", "Moreau",
                            "Petrov", "Silva", "Murphy", "Jensen")
          for g in ("Anna", "Ngozi", "Yuki", "Zofia")]


def _pending(sessions) -> list[tuple[int, int, str]]:
    with sessions() as session:
        return session.execute(select(PatientSearch.patient_id, PatientSearch.attempts,
                                      PatientSearch.last_error).order_by(PatientSearch.id)).all()


def test_new_patient_is_queued_by_the_job_not_by_its_transaction(sessions):
    with sessions.begin() as session:
        create_order_for(session, ANNA, "P1")
        clinic = create_order_for(session, CLINIC_ANNA, "P2").patient_id
    with sessions() as session:
        assert list_matches(session) == []  # committed, acknowledged, not searched yet
    assert run_searches(sessions) == 2
    with sessions() as session:
        [entry] = list_matches(session)
        assert entry.incoming["id"] == clinic and entry.source == "hl7"
    assert _pending(sessions) == []
    assert run_searches(sessions) == 0


def test_pending_search_survives_a_crash_before_the_job_ran(database_url):
    engine = make_engine(database_url)
    from broker.store.migrate import upgrade
    upgrade(engine)
    with make_session_factory(engine).begin() as session:
        upsert_patient(session, ANNA)
        upsert_patient(session, CLINIC_ANNA)
    engine.dispose()  # the process dies here: nothing was searched

    reopened = make_engine(database_url)
    sessions = make_session_factory(reopened)
    try:
        assert [p for p, _, _ in _pending(sessions)] == [1, 2]
        assert run_pending_searches(sessions, MatchingSettings()) == 2
        with sessions() as session:
            assert len(list_matches(session)) == 1
    finally:
        reopened.dispose()


def test_known_patient_with_unchanged_demographics_is_not_written(sessions):
    with sessions.begin() as session:
        pid = upsert_patient(session, ANNA).id
    with sessions() as session:
        updated = session.get(Patient, pid).updated_at
        keys = session.execute(select(PatientBlockKey.id, PatientBlockKey.key)
                               .order_by(PatientBlockKey.id)).all()
    with sessions.begin() as session:
        assert upsert_patient(session, ANNA).id == pid
    with sessions() as session:
        assert session.get(Patient, pid).updated_at == updated
        assert session.execute(select(PatientBlockKey.id, PatientBlockKey.key)
                               .order_by(PatientBlockKey.id)).all() == keys
        assert session.scalar(select(func.count()).select_from(PatientSearch)) == 1  # its first


def test_reconciliation_off_writes_no_pending_search(sessions):
    configure_matching(sessions, MatchingSettings(enabled=False))
    with sessions.begin() as session:
        upsert_patient(session, ANNA)
    assert _pending(sessions) == []


def test_failed_search_is_kept_with_its_error_and_given_up_after_a_few_attempts(
        sessions, monkeypatch, caplog):
    with sessions.begin() as session:
        upsert_patient(session, ANNA)
        upsert_patient(session, CLINIC_ANNA)
    real = searches.search

    def broken_for_the_first(session, prof, *args, **kwargs):
        if prof.family.joined == "LINDQVIST":
            raise RuntimeError("scorer broke")
        return real(session, prof, *args, **kwargs)
    monkeypatch.setattr(searches, "search", broken_for_the_first)

    assert run_searches(sessions) == 1  # the other search is not held up
    assert _pending(sessions) == [(1, 1, "RuntimeError: scorer broke")]
    for _ in range(MAX_ATTEMPTS + 2):
        run_searches(sessions)
    assert _pending(sessions) == [(1, MAX_ATTEMPTS, "RuntimeError: scorer broke")]
    assert "not retried" in caplog.text and "Lindqvist" not in caplog.text

    monkeypatch.setattr(searches, "search", real)
    assert run_searches(sessions) == 0  # given up: an admin's to look at


def test_failure_while_writing_the_entries_keeps_the_search(sessions, monkeypatch):
    with sessions.begin() as session:
        upsert_patient(session, ANNA)
        upsert_patient(session, CLINIC_ANNA)

    def refuse(*args, **kwargs):
        raise RuntimeError("queue unavailable")
    monkeypatch.setattr(searches.queue, "propose", refuse)
    assert run_searches(sessions) == 1  # Anna's search leaves the pair to the clinic's
    assert _pending(sessions) == [(2, 1, "RuntimeError: queue unavailable")]
    with sessions() as session:
        assert list_matches(session) == []
    monkeypatch.undo()
    assert run_searches(sessions) == 1
    with sessions() as session:
        assert len(list_matches(session)) == 1


@pytest.mark.postgres
def test_concurrent_runs_on_postgres_do_each_search_once(postgres):
    url = postgres.create_database("broker_searches_concurrent")
    engine = make_engine(url)
    from broker.store.migrate import upgrade
    upgrade(engine)
    sessions = make_session_factory(engine)
    try:
        with sessions.begin() as session:
            for n, (family, given) in enumerate(PEOPLE):  # each registered twice
                person = PatientRecord((Identifier(f"H{n}", "HOSP"),), PersonName(family, given),
                                       f"{1940 + n}0{n % 9 + 1}1{n % 10}", "F")
                upsert_patient(session, person)
                upsert_patient(session, replace(person, identifiers=(Identifier(f"C{n}", "CLINIC"),)))
        done: list[int] = []
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                while (count := run_pending_searches(sessions, MatchingSettings(), limit=7)):
                    done.append(count)
            except BaseException as exc:  # reported below
                errors.append(exc)
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert sum(done) == 80  # every row completed by exactly one run
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(PatientSearch)) == 0
            pairs = session.execute(select(MatchCandidate.incoming_patient_id,
                                           MatchCandidate.candidate_patient_id)).all()
            assert len(pairs) == 40 and len({frozenset(p) for p in pairs}) == 40
            assert session.scalar(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.action == "match.proposed")) == 40
    finally:
        engine.dispose()
