"""What an admin does with a queue entry: link (a merge, or accepting held-back demographics),
dismiss (the pair is remembered as two people), unmerge. Shared by the CLI and the web UI;
every action writes an audit event in the transaction of the change."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.matching.queue import (
    DISMISSED, LINKED, OPEN, MatchError, link_pair, pair_entry, resolve,
)
from broker.store.audit import record_event
from broker.store.merge import MergeError, unmerge_patients
from broker.store.models import MatchCandidate, PatientMerge
from broker.store.patients import accept_demographics


def _open_entry(session: Session, match_id: int) -> MatchCandidate:
    entry = session.get(MatchCandidate, match_id)
    if entry is None:
        raise MatchError(f"no match #{match_id}")
    if entry.status != OPEN:
        raise MatchError(f"match #{match_id} is {entry.status.lower()} "
                         f"(by {entry.resolved_by or '?'} at {entry.resolved_at:%Y-%m-%d %H:%M})")
    return entry


def link_match(session: Session, match_id: int, actor: str) -> PatientMerge | None:
    """Accept an open entry: merge the incoming patient into the candidate (or, for a conflict,
    apply the incoming demographics). Returns the merge, if one was made."""
    entry = _open_entry(session, match_id)
    if entry.kind == "conflict":
        accept_demographics(session, entry.candidate_patient_id, entry.incoming or {})
        resolve(entry, LINKED, actor)
        record_event(session, actor, "match.accept", "match_candidate", entry.id,
                     patient_id=entry.candidate_patient_id)
        session.flush()
        return None
    try:
        return link_pair(session, entry, actor)
    except MergeError as exc:
        raise MatchError(f"match #{match_id}: {exc}") from None


def dismiss_match(session: Session, match_id: int, actor: str) -> MatchCandidate:
    """Reject an open entry: the two records are different people and won't be proposed again."""
    entry = _open_entry(session, match_id)
    resolve(entry, DISMISSED, actor)
    record_event(session, actor, "match.dismiss", "match_candidate", entry.id,
                 incoming_patient_id=entry.incoming_patient_id,
                 candidate_patient_id=entry.candidate_patient_id, kind=entry.kind)
    session.flush()
    return entry


def unmerge_patient(session: Session, patient_id: int, actor: str) -> PatientMerge:
    """Undo the merge that merged this patient away; its link, if any, becomes a dismissal."""
    merge_id = session.scalar(select(PatientMerge.id).where(
        PatientMerge.merged_id == patient_id, PatientMerge.undone_at.is_(None))
        .order_by(PatientMerge.id.desc()).limit(1))
    if merge_id is None:
        raise MatchError(f"patient #{patient_id} is not merged into another patient")
    try:
        merge = unmerge_patients(session, merge_id, actor)
    except MergeError as exc:
        raise MatchError(str(exc)) from None
    entry = pair_entry(session, merge.survivor_id, merge.merged_id)
    if entry is not None and entry.status == LINKED:
        # Undoing a link says the two records are different people: don't propose them again.
        resolve(entry, DISMISSED, actor)
        record_event(session, actor, "match.unlink", "match_candidate", entry.id, merge_id=merge_id)
    session.flush()
    return merge
