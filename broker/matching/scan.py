"""`broker patients scan`: likely duplicates among all patients, into the review queue.

The scan blocks in memory with the same keys candidate search stores (broker.matching.score.blocking),
so every pair it scores shares at least one key; oversized blocks (a key shared by thousands of
patients says nothing) are skipped and counted.
"""
from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from broker.config import MatchingSettings
from broker.matching.queue import OPEN, SYSTEM_ACTOR, auto_link
from broker.matching.score import Band, Profile, Verdict, block_keys, judge, profile
from broker.matching.search import policy_of
from broker.store.audit import record_event
from broker.store.models import AuditEvent, MatchCandidate, Patient, PatientIdentifier

MAX_BLOCK = 1000


@dataclass
class Flagged:
    a: int            # the older patient (lower id): the candidate
    b: int            # the newer one: the incoming record
    verdict: Verdict


@dataclass
class ScanReport:
    patients: int = 0
    pairs_scored: int = 0
    flagged: list[Flagged] = field(default_factory=list)
    queued: int = 0
    auto_linked: int = 0
    skipped_blocks: int = 0


def load_live_profiles(session: Session, with_identifiers: bool) -> tuple[dict[int, Profile], dict[int, str]]:
    """Profiles of every live patient, and each one's primary identifier value."""
    primary: dict[int, str] = {}
    idents: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for pid, value, issuer in session.execute(
            select(PatientIdentifier.patient_id, PatientIdentifier.value, PatientIdentifier.issuer)
            .order_by(PatientIdentifier.id)).yield_per(20000):
        primary.setdefault(pid, value)
        if with_identifiers:
            idents[pid].append((value, issuer))
    profiles = {}
    for r in session.execute(
            select(Patient.id, Patient.family_name, Patient.given_name, Patient.birth_date,
                   Patient.sex, Patient.address, Patient.phone)
            .where(Patient.merged_into_id.is_(None)).order_by(Patient.id)).yield_per(20000):
        profiles[r[0]] = profile(r[1], r[2], r[3], r[4], r[5], r[6], idents.get(r[0], ()))
    return profiles, primary


def candidate_pairs(profiles: dict[int, Profile], report: ScanReport) -> set[tuple[int, int]]:
    """Pairs of patients sharing a blocking key (lower id first)."""
    blocks: dict[str, list[int]] = defaultdict(list)
    for pid, prof in profiles.items():
        for key in block_keys(prof):
            blocks[key].append(pid)
    pairs: set[tuple[int, int]] = set()
    for members in blocks.values():
        if len(members) < 2:
            continue
        if len(members) > MAX_BLOCK:
            report.skipped_blocks += 1
            continue
        members.sort()
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                pairs.add((a, b))
    return pairs


def scan(sessions: sessionmaker[Session], settings: MatchingSettings,
         on_progress: Callable[[int, int], None] | None = None,
         output: Path | None = None) -> ScanReport:
    """Score every blocked pair, queue the review band, link the automatic band."""
    policy = policy_of(settings)
    report = ScanReport()
    with sessions() as session:
        profiles, primary = load_live_profiles(session, bool(policy.trusted_issuers))
        known = _known_pairs(session)
    report.patients = len(profiles)
    pairs = sorted(candidate_pairs(profiles, report))
    for n, (a, b) in enumerate(pairs, 1):
        verdict = judge(profiles[b], profiles[a], policy)
        if verdict.band is not Band.NONE and known.get((a, b)) != "DISMISSED":
            report.flagged.append(Flagged(a, b, verdict))
        if on_progress and n % 2000 == 0:
            on_progress(n, len(pairs))
    report.pairs_scored = len(pairs)
    if on_progress:
        on_progress(len(pairs), len(pairs))
    _store(sessions, report, known)
    if output is not None:
        write_pairs(output, report.flagged, primary)
    return report


def _known_pairs(session: Session) -> dict[tuple[int, int], str]:
    rows = session.execute(select(MatchCandidate.incoming_patient_id,
                                  MatchCandidate.candidate_patient_id, MatchCandidate.status)
                           .where(MatchCandidate.kind == "duplicate"))
    known: dict[tuple[int, int], str] = {}
    for a, b, status in rows:
        pair = (min(a, b), max(a, b))
        if known.get(pair) != "DISMISSED":
            known[pair] = status
    return known


def _store(sessions: sessionmaker[Session], report: ScanReport,
           known: dict[tuple[int, int], str]) -> None:
    new = [f for f in report.flagged if (f.a, f.b) not in known]
    review = [f for f in new if f.verdict.band is Band.REVIEW]
    with sessions.begin() as session:
        if review:
            ids = session.scalars(insert(MatchCandidate).returning(
                MatchCandidate.id, sort_by_parameter_order=True), [
                {"incoming_patient_id": f.b, "candidate_patient_id": f.a,
                 "total_score": f.verdict.comparison.total,
                 "field_scores": f.verdict.comparison.explain(), "reason": f.verdict.reason[:255],
                 "source": "scan", "status": OPEN, "kind": "duplicate"} for f in review]).all()
            session.execute(insert(AuditEvent), [
                {"actor": SYSTEM_ACTOR, "action": "match.proposed", "entity_type": "match_candidate",
                 "entity_id": str(i), "detail": {"incoming_patient_id": f.b,
                                                 "candidate_patient_id": f.a,
                                                 "score": f.verdict.comparison.total,
                                                 "source": "scan"}}
                for i, f in zip(ids, review)])
        report.queued = len(review)
        for f in new:
            if f.verdict.band is Band.AUTO and _both_live(session, f.a, f.b):
                if auto_link(session, f.a, f.b, f.verdict, "scan") is not None:
                    report.auto_linked += 1
        record_event(session, SYSTEM_ACTOR, "patients.scan", "patient", "*",
                     patients=report.patients, pairs=report.pairs_scored,
                     flagged=len(report.flagged), queued=report.queued,
                     auto_linked=report.auto_linked)


def _both_live(session: Session, a: int, b: int) -> bool:
    rows = session.execute(select(Patient.merged_into_id).where(Patient.id.in_([a, b]))).all()
    return len(rows) == 2 and all(r[0] is None for r in rows)


def write_pairs(path: Path, flagged: list[Flagged], primary: dict[int, str]) -> None:
    """patient_a,patient_b,score,decision for every flagged pair (primary identifier values)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["patient_a", "patient_b", "score", "decision"])
        for f in sorted(flagged, key=lambda f: -f.verdict.comparison.total):
            out.writerow([primary.get(f.a, f"#{f.a}"), primary.get(f.b, f"#{f.b}"),
                          f"{f.verdict.comparison.total:.2f}", f.verdict.band.value])
