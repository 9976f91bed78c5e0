"""The deferred candidate search of new patients, run by a job after the message's ACK.

upsert_patient writes a patient_search row in the transaction that creates a patient; this job
runs the fuzzy search and writes the review-queue entries, then deletes the row in the same
transaction as those entries: a search is done exactly once, or not yet.

A run has two phases. Scoring reads only (on SQLite it holds no write lock, so HL7 commits are
not kept waiting); the writes then take one short transaction for the batch. Several broker
processes may share the table on PostgreSQL: a row is claimed with FOR UPDATE SKIP LOCKED before
anything is written for it, and one already claimed or gone is skipped. So every process may
run the job (every second or so) without a lock of its own.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broker.config import MatchingSettings
from broker.matching import queue
from broker.matching.model_store import current_model
from broker.matching.score import Band, Policy, Verdict
from broker.matching.search import load_profiles, policy_of, search
from broker.store.models import Patient, PatientSearch

log = logging.getLogger(__name__)

# A search failing this often is kept with its last error for an admin, and not retried.
MAX_ATTEMPTS = 5


@dataclass
class _Outcome:
    """What the read phase found for one pending search."""
    search_id: int
    patient_id: int
    source: str
    attempts: int
    verdicts: list[tuple[int, Verdict]] = field(default_factory=list)
    error: str = ""


def run_pending_searches(sessions: sessionmaker[Session], settings: MatchingSettings,
                         limit: int = 100,
                         read_sessions: sessionmaker[Session] | None = None) -> int:
    """Run up to `limit` pending candidate searches; returns how many were completed.

    `read_sessions` serve the scoring phase: on SQLite pass broker.store.db.read_only_sessions,
    so the scoring holds no write lock."""
    if not settings.enabled:
        return 0  # rows written before matching was turned off wait until it is on again
    outcomes = _score_pending(read_sessions or sessions, settings, limit)
    if not outcomes:
        return 0
    return _write_outcomes(sessions, settings, outcomes)


def _score_pending(sessions: sessionmaker[Session], settings: MatchingSettings,
                   limit: int) -> list[_Outcome]:
    """Read phase: the oldest pending searches, each scored (or with the error that stopped it)."""
    outcomes = []
    with sessions() as session:
        # The site's newest trained model, or the shipped one on a site that has trained none.
        policy = policy_of(settings, current_model(session))
        # SKIP LOCKED keeps a concurrent run (another process) on other rows while this one
        # scores; the rows are claimed again before anything is written.
        rows = session.execute(
            select(PatientSearch.id, PatientSearch.patient_id, PatientSearch.source,
                   PatientSearch.attempts)
            .where(PatientSearch.attempts < MAX_ATTEMPTS).order_by(PatientSearch.id).limit(limit)
            .with_for_update(skip_locked=True)).all()
        for search_id, patient_id, source, attempts in rows:
            outcome = _Outcome(search_id, patient_id, source, attempts)
            try:
                outcome.verdicts = _candidates(session, patient_id, settings, policy)
            except Exception as exc:  # one bad record must not stop the others' searches
                outcome.error = f"{type(exc).__name__}: {exc}"
            outcomes.append(outcome)
    return outcomes


def _candidates(session: Session, patient_id: int, settings: MatchingSettings,
                policy: Policy) -> list[tuple[int, Verdict]]:
    """The patient's candidates worth a queue entry, best first (none once it was merged away)."""
    profiles = load_profiles(session, [patient_id], with_identifiers=True)
    if patient_id not in profiles:
        return []
    found = search(session, profiles[patient_id], policy, settings.max_candidates,
                   exclude=[patient_id])
    found = [(other, verdict) for other, verdict in found if verdict.band is not Band.NONE]
    # A newer patient still waiting for its own search is left to it: that search queues the
    # pair with the newer record as the incoming one and its own source, as the intake saw it.
    newer = [other for other, _ in found if other > patient_id]
    waiting = set(session.scalars(select(PatientSearch.patient_id).where(
        PatientSearch.patient_id.in_(newer), PatientSearch.attempts < MAX_ATTEMPTS))) if newer else set()
    return [(other, verdict) for other, verdict in found if other not in waiting]


def _write_outcomes(sessions: sessionmaker[Session], settings: MatchingSettings,
                    outcomes: list[_Outcome]) -> int:
    """Write phase: queue entries and the row's deletion together, row by row (a savepoint each)."""
    done = 0
    with sessions.begin() as session:
        involved = {o.patient_id for o in outcomes} | {c for o in outcomes for c, _ in o.verdicts}
        # PostgreSQL: two searches may propose one pair from either side at once; locking the
        # patients (in id order, so runs cannot deadlock) makes the second see the first's entry.
        # NO KEY UPDATE (key_share) leaves new orders for these patients free to reference them.
        session.execute(select(Patient.id).where(Patient.id.in_(sorted(involved)))
                        .order_by(Patient.id).with_for_update(key_share=True)).all()
        for outcome in outcomes:
            row = session.scalar(select(PatientSearch).where(PatientSearch.id == outcome.search_id)
                                 .with_for_update(skip_locked=True))
            if row is None:
                continue  # done, or being done, by another run
            error = outcome.error
            if not error:
                try:
                    with session.begin_nested():
                        _queue(session, outcome, settings)
                        session.delete(row)
                    done += 1
                    continue
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
            _failed(row, error)
    return done


def _queue(session: Session, outcome: _Outcome, settings: MatchingSettings) -> None:
    """Queue the review band and link the automatic band, at most max_queued_per_patient."""
    acted = 0
    for other, verdict in outcome.verdicts:
        if acted >= settings.max_queued_per_patient:
            break
        pid = outcome.patient_id
        if verdict.band is Band.AUTO:
            entry = queue.auto_link(session, min(other, pid), max(other, pid), verdict,
                                    outcome.source)
        else:
            # The newer record is the incoming one, as in the scan (a newer one found here had
            # its own search already, before this patient was visible to it).
            entry = queue.propose(session, max(other, pid), min(other, pid), verdict,
                                  outcome.source)
        if entry is not None:
            acted += 1


def _failed(row: PatientSearch, error: str) -> None:
    row.attempts += 1
    row.last_error = error[:2000]
    # The error text may quote patient data: it stays in the row, the log names its type only.
    kind = error.split(":", 1)[0]
    if row.attempts >= MAX_ATTEMPTS:
        log.error("patient search #%d (patient #%d) failed %d times (%s); not retried, "
                  "see patient_search.last_error", row.id, row.patient_id, row.attempts, kind)
    else:
        log.warning("patient search #%d (patient #%d) failed (%s); attempt %d of %d",
                    row.id, row.patient_id, kind, row.attempts, MAX_ATTEMPTS)
