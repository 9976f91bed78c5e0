"""Candidate search stays bounded in a block of look-alikes and still finds the true match."""
from __future__ import annotations

from broker.config import MatchingSettings
from broker.domain.records import Identifier, PatientRecord, PersonName
from broker.matching.score import Band, profile
from broker.matching.search import candidate_ids, policy_of, search
from broker.store.patients import upsert_patient

GIVEN = ["Anna", "Maria", "Sofia", "Emma", "Olivia", "Chloe", "Ingrid", "Astrid", "Zofia", "Elena",
         "Giulia", "Lucia", "Carmen", "Pilar", "Leila", "Priya", "Aiko", "Sakura", "Mei", "Nadia",
         "Olga", "Irina", "Elif", "Ngozi", "Grace"]


def _lookalikes(sessions, count: int) -> int:
    """`count` women named Nakamura born 1980-05-12, then the one the probe describes (her id)."""
    with sessions.begin() as session:
        for n in range(count):
            given = f"{GIVEN[n % len(GIVEN)]} {GIVEN[(n // len(GIVEN) + 3) % len(GIVEN)]}"
            upsert_patient(session, PatientRecord((Identifier(f"L{n}", "HOSP"),),
                                                  PersonName("Nakamura", given), "19800512", "F"),
                           reconcile=False)
        return upsert_patient(session, PatientRecord(
            (Identifier("TRUE", "HOSP"),), PersonName("Nakamura", "Yukiko"), "19800512", "F",
            "7 Station Road, Leeds", "0113 496 0000"), reconcile=False).id


def test_search_among_lookalikes_scores_at_most_the_limit_and_finds_the_match(sessions):
    true_id = _lookalikes(sessions, 150)
    probe = profile("Nakamura", "Yukico", "19800512", "F", "7 Station Rd Leeds", "0113 496 0000")
    with sessions() as session:
        found = search(session, probe, policy_of(MatchingSettings()), limit=20, per_key=20)
    assert len(found) <= 20
    assert found[0][0] == true_id and found[0][1].band is Band.REVIEW


def test_candidate_query_reads_at_most_per_key_patients_of_each_key(sessions):
    _lookalikes(sessions, 60)
    birth_date_only = profile("", "", "19800512")  # a single key, shared by all 61
    with sessions() as session:
        assert len(candidate_ids(session, birth_date_only, limit=100, per_key=10)) == 10
        assert len(candidate_ids(session, birth_date_only, limit=100)) == 61
        assert len(candidate_ids(session, birth_date_only, limit=5)) == 5
