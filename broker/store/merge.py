"""Patient merge and unmerge, recorded exactly enough to be undone.

Used by reconciliation (an admin links a match), by HL7 ADT^A40 from the EHR, and by unmerge.
The merged record is kept, marked merged into the survivor; nothing is deleted.
"""
from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from broker.clock import utcnow
from broker.store.audit import record_event
from broker.store.models import Order, Patient, PatientIdentifier, PatientMerge, PerformedStep


class MergeError(ValueError):
    """The merge or unmerge cannot be done; the message says why."""


def surviving(session: Session, patient: Patient) -> Patient:
    """Follow merged_into links to the record that survived."""
    seen = {patient.id}
    while patient.merged_into_id is not None:
        patient = session.get(Patient, patient.merged_into_id)
        if patient.id in seen:  # a cycle would be a bug elsewhere; stop rather than loop
            break
        seen.add(patient.id)
    return patient


# Rows that belong to a patient and follow it in a merge.
_MOVABLE = {
    "identifiers": (PatientIdentifier, PatientIdentifier.patient_id),
    "orders": (Order, Order.patient_id),
    "performed_steps": (PerformedStep, PerformedStep.patient_id),
}


def merge_patients(session: Session, survivor_id: int, merged_id: int, actor: str,
                   reason: str = "") -> PatientMerge:
    """Move the merged patient's identifiers, orders and performed steps to the survivor."""
    survivor = session.get(Patient, survivor_id)
    merged = session.get(Patient, merged_id)
    if survivor is None or merged is None:
        raise MergeError(f"no patient #{survivor_id if survivor is None else merged_id}")
    if survivor_id == merged_id:
        raise MergeError("a patient cannot be merged into itself")
    if merged.merged_into_id is not None:
        raise MergeError(f"patient #{merged_id} is already merged into #{merged.merged_into_id}")
    if survivor.merged_into_id is not None:
        raise MergeError(f"patient #{survivor_id} is itself merged into #{survivor.merged_into_id}")
    moved: dict[str, list[int]] = {}
    for name, (model, column) in _MOVABLE.items():
        ids = list(session.scalars(select(model.id).where(column == merged_id)))
        if ids:
            session.execute(update(model).where(model.id.in_(ids)).values({column.key: survivor_id}))
        moved[name] = ids
    merged.merged_into_id = survivor_id
    record = PatientMerge(survivor_id=survivor_id, merged_id=merged_id, moved=moved, actor=actor)
    session.add(record)
    session.flush()
    record_event(session, actor, "patient.merge", "patient", survivor_id,
                 merged_id=merged_id, merge_id=record.id, reason=reason,
                 moved={k: len(v) for k, v in moved.items()})
    session.flush()
    session.expire_all()  # relationships loaded before the bulk updates are stale now
    return record


def unmerge_patients(session: Session, merge_id: int, actor: str, reason: str = "") -> PatientMerge:
    """Undo a merge exactly: the rows it moved go back, the merged record lives again."""
    record = session.get(PatientMerge, merge_id)
    if record is None:
        raise MergeError(f"no merge #{merge_id}")
    if record.undone_at is not None:
        raise MergeError(f"merge #{merge_id} was already undone")
    later = session.scalar(select(PatientMerge.id).where(
        PatientMerge.merged_id == record.survivor_id, PatientMerge.undone_at.is_(None)))
    if later is not None:
        raise MergeError(f"patient #{record.survivor_id} was merged again (merge #{later}): "
                         "undo that merge first")
    for name, (model, column) in _MOVABLE.items():
        ids = record.moved.get(name, [])
        if ids:
            session.execute(update(model).where(model.id.in_(ids)).values({column.key: record.merged_id}))
    merged = session.get(Patient, record.merged_id)
    merged.merged_into_id = None
    record.undone_at = utcnow()
    record_event(session, actor, "patient.unmerge", "patient", record.merged_id,
                 survivor_id=record.survivor_id, merge_id=record.id, reason=reason)
    session.flush()
    session.expire_all()
    return record
