"""`broker patients scan`: likely duplicates among all patients, into the review queue.

The scan blocks in memory with the same keys candidate search stores (broker.matching.score.blocking),
so every pair it scores shares at least one key; oversized blocks (a key shared by thousands of
patients says nothing) are skipped and counted. Pairs are scored with the site's newest trained
model; on a site that has none, a model is fitted on its patients first (and the report says
so), or, with fewer than train_min_patients patients, the shipped default model scores.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from broker.config import MatchingSettings
from broker.matching.model_store import default_model, save_model, stored_model
from broker.matching.pairs import MAX_BLOCK, blocked_pairs, load_live_profiles  # noqa: F401
from broker.matching.queue import OPEN, SYSTEM_ACTOR, auto_link
from broker.matching.score import Band, Policy, Profile, Verdict, judge
from broker.matching.search import policy_of
from broker.matching.train import fit_profiles
from broker.store.audit import record_event
from broker.store.models import AuditEvent, MatchCandidate, Patient


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
    model_version: int | None = None   # the stored model that scored (None: a given policy)
    trained: bool = False              # no model was stored: one was fitted first
    default_model: bool = False        # no model was stored and too few patients to fit one


def candidate_pairs(profiles: dict[int, Profile], report: ScanReport) -> set[tuple[int, int]]:
    """Pairs of patients sharing a blocking key (lower id first)."""
    pairs, report.skipped_blocks = blocked_pairs(profiles)
    return pairs


def scan(sessions: sessionmaker[Session], settings: MatchingSettings,
         on_progress: Callable[[int, int], None] | None = None,
         output: Path | None = None, policy: Policy | None = None,
         read_sessions: sessionmaker[Session] | None = None) -> ScanReport:
    """Score every blocked pair, queue the review band, link the automatic band.

    `policy` overrides the stored model and the settings' bands (the bench compares scorers)."""
    report = ScanReport()
    with (read_sessions or sessions)() as session:
        trusted = policy.trusted_issuers if policy else frozenset(settings.trusted_issuers)
        profiles, primary = load_live_profiles(session, bool(trusted))
        known = _known_pairs(session)
        model = None if policy else stored_model(session)
    if policy is None:
        if model is None and len(profiles) >= max(settings.train_min_patients, 2):
            model = _fit_first(sessions, settings, profiles, report)
        elif model is not None:
            report.model_version = model.info.get("version")
        else:
            model, report.default_model = default_model(), True
        policy = policy_of(settings, model)
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


def _fit_first(sessions: sessionmaker[Session], settings: MatchingSettings,
               profiles: dict[int, Profile], report: ScanReport):
    """No model trained yet: fit one on these patients and store it, as `train` would."""
    model, sampled, blocked, randoms = fit_profiles(profiles, settings)
    with sessions.begin() as session:
        row = save_model(session, model, len(profiles), sampled, randoms, SYSTEM_ACTOR)
        record_event(session, SYSTEM_ACTOR, "patients.train", "matching_model", row.version,
                     patients=len(profiles), candidate_pairs=sampled, blocked_pairs=blocked,
                     random_pairs=randoms, reason="scan without a trained model")
        report.model_version, report.trained = row.version, True
    return model


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
