"""The review queue of possible duplicate patients: its entries and how they are listed.

Entries are written by the intake (conflicts, identifiers held by two patients), by the deferred
candidate search and by the scan; broker.matching.review holds what an admin does with one.
Every entry written is an audit event. Imports nothing of broker.store.patients (which writes
entries through this module).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from broker.clock import utcnow
from broker.matching.score import Comparison, Verdict
from broker.store.audit import record_event
from broker.store.merge import merge_patients, surviving
from broker.store.models import MatchCandidate, Patient, PatientMerge

OPEN, LINKED, DISMISSED = "OPEN", "LINKED", "DISMISSED"
SYSTEM_ACTOR = "matching"


class MatchError(ValueError):
    """The queue entry cannot be acted on as asked; the message says why."""


def pair_entry(session: Session, a: int, b: int) -> MatchCandidate | None:
    """The queue entry for this pair of patients, in either order, if there is one."""
    return session.scalars(select(MatchCandidate).where(MatchCandidate.kind == "duplicate", or_(
        and_(MatchCandidate.incoming_patient_id == a, MatchCandidate.candidate_patient_id == b),
        and_(MatchCandidate.incoming_patient_id == b, MatchCandidate.candidate_patient_id == a),
    )).order_by(MatchCandidate.id).limit(1)).first()


def propose(session: Session, incoming_id: int, candidate_id: int, verdict: Verdict,
            source: str) -> MatchCandidate | None:
    """Queue a pair for review; None when the pair is already queued, linked or dismissed."""
    if incoming_id == candidate_id or pair_entry(session, incoming_id, candidate_id) is not None:
        return None
    entry = MatchCandidate(
        incoming_patient_id=incoming_id, candidate_patient_id=candidate_id,
        total_score=verdict.comparison.total, field_scores=verdict.comparison.explain(),
        reason=verdict.reason[:255], source=source, status=OPEN, kind="duplicate")
    session.add(entry)
    session.flush()
    record_event(session, SYSTEM_ACTOR, "match.proposed", "match_candidate", entry.id,
                 incoming_patient_id=incoming_id, candidate_patient_id=candidate_id,
                 score=entry.total_score, source=source)
    return entry


def auto_link(session: Session, survivor_id: int, merged_id: int, verdict: Verdict,
              source: str) -> MatchCandidate | None:
    """Link a pair in the automatic band: merge, and keep a LINKED entry saying why."""
    existing = pair_entry(session, survivor_id, merged_id)
    if existing is not None and existing.status != OPEN:
        return None  # dismissed or already resolved by a person: never override them
    if existing is not None:  # queued for review earlier; the trusted identifier settles it now
        existing.reason = f"automatic: {verdict.reason}"[:255]
        existing.total_score = verdict.comparison.total
        existing.field_scores = verdict.comparison.explain()
        link_pair(session, existing, SYSTEM_ACTOR)
        return existing
    entry = MatchCandidate(
        incoming_patient_id=merged_id, candidate_patient_id=survivor_id,
        total_score=verdict.comparison.total, field_scores=verdict.comparison.explain(),
        reason=f"automatic: {verdict.reason}"[:255], source=source, status=OPEN, kind="duplicate")
    session.add(entry)
    session.flush()
    link_pair(session, entry, SYSTEM_ACTOR)
    return entry


def flag_conflict(session: Session, patient: Patient, incoming: dict[str, Any],
                  comparison: Comparison, source: str) -> MatchCandidate:
    """Queue an identifier match whose demographics disagree; the patient row is left as it was.

    The same disagreement sent again (every order of a visit carries it) is queued once; one an
    admin dismissed stays dismissed.
    """
    for earlier in session.scalars(select(MatchCandidate).where(
            MatchCandidate.kind == "conflict", MatchCandidate.candidate_patient_id == patient.id,
            MatchCandidate.status.in_([OPEN, DISMISSED]))):
        if earlier.incoming == incoming:
            return earlier
    entry = MatchCandidate(
        incoming_patient_id=patient.id, candidate_patient_id=patient.id,
        total_score=comparison.total, field_scores=comparison.explain(),
        reason="identifier matches but demographics disagree", source=source, status=OPEN,
        kind="conflict", incoming=incoming)
    session.add(entry)
    session.flush()
    record_event(session, SYSTEM_ACTOR, "match.conflict", "match_candidate", entry.id,
                 patient_id=patient.id, score=comparison.total, source=source)
    return entry


@dataclass(frozen=True)
class MatchView:
    """A queue entry with both records, for display."""
    id: int
    kind: str
    status: str
    score: float
    reason: str
    source: str
    created_at: datetime
    resolved_by: str
    resolved_at: datetime | None
    fields: dict[str, Any]
    incoming: dict[str, Any]
    candidate: dict[str, Any]


def patient_summary(patient: Patient) -> dict[str, Any]:
    """A patient's demographics and identifiers as plain data."""
    return {"id": patient.id, "family_name": patient.family_name, "given_name": patient.given_name,
            "birth_date": patient.birth_date, "sex": patient.sex, "address": patient.address,
            "phone": patient.phone, "merged_into_id": patient.merged_into_id,
            "identifiers": [_identifier_text(i.value, i.issuer) for i in patient.identifiers]}


def _identifier_text(value: str, issuer: str) -> str:
    return f"{value}^^^{issuer}" if issuer else value


def _record_summary(data: dict[str, Any]) -> dict[str, Any]:
    """A held-back incoming record in the shape of patient_summary (it has no id of its own)."""
    return {"id": None, "family_name": data.get("family", ""), "given_name": data.get("given", ""),
            "birth_date": data.get("birth_date", ""), "sex": data.get("sex", ""),
            "address": data.get("address", ""), "phone": data.get("phone", ""),
            "merged_into_id": None,
            "identifiers": [_identifier_text(i["value"], i.get("issuer", ""))
                            for i in data.get("identifiers", [])]}


def view(session: Session, entry: MatchCandidate) -> MatchView:
    """The entry with both records filled in."""
    candidate = patient_summary(session.get(Patient, entry.candidate_patient_id))
    incoming = patient_summary(session.get(Patient, entry.incoming_patient_id))
    if entry.kind == "conflict":
        incoming = _record_summary(entry.incoming or {})
    return MatchView(entry.id, entry.kind, entry.status, entry.total_score, entry.reason,
                     entry.source, entry.created_at, entry.resolved_by, entry.resolved_at,
                     entry.field_scores, incoming, candidate)


def list_matches(session: Session, status: str | None = OPEN, limit: int = 100,
                 offset: int = 0) -> list[MatchView]:
    """Queue entries, best score first; status None lists every status."""
    query = select(MatchCandidate)
    if status:
        query = query.where(MatchCandidate.status == status.upper())
    query = query.order_by(MatchCandidate.total_score.desc(), MatchCandidate.id)
    return [view(session, e) for e in session.scalars(query.limit(limit).offset(offset))]


def resolve(entry: MatchCandidate, status: str, actor: str) -> None:
    """Mark an entry resolved by `actor` now."""
    entry.status, entry.resolved_by, entry.resolved_at = status, actor, utcnow()


def _live(session: Session, patient_id: int) -> int:
    return surviving(session, session.get(Patient, patient_id)).id


def link_pair(session: Session, entry: MatchCandidate, actor: str) -> PatientMerge | None:
    """Merge the entry's incoming patient into its candidate (as they are now) and resolve it."""
    survivor, merged = _live(session, entry.candidate_patient_id), _live(session, entry.incoming_patient_id)
    merge = None
    if survivor != merged:
        merge = merge_patients(session, survivor, merged, actor,
                               reason=f"match #{entry.id}: {entry.reason}"[:255])
    resolve(entry, LINKED, actor)
    record_event(session, actor, "match.link", "match_candidate", entry.id,
                 survivor_id=survivor, merged_id=merged, merge_id=merge.id if merge else None)
    session.flush()
    return merge
