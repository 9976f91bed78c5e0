"""Performed procedure steps (MPPS): stored, linked to the schedule, and their effect on steps.

PS3.4 F.7 and IHE RAD TF-2 4.6/4.7 (RAD-6 / RAD-7). What the modality reports is always kept:
an MPPS that names nothing known is stored as unscheduled for an admin to attach later.
"""
from __future__ import annotations

import logging
from typing import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.domain.lifecycle import IllegalTransition, StepEvent
from broker.domain.mpps import (
    FINAL_PERFORMED, PerformedReport, PerformedStatus, ScheduledReference, step_event_on_finish,
)
from broker.store.audit import record_event
from broker.store.models import (
    Order, PerformedStep, PerformedStepLink, RequestedProcedure, ScheduledStep,
)
from broker.store.patients import upsert_patient
from broker.store.steps import lock_orders, order_of, refresh_order_status, transition_step

log = logging.getLogger(__name__)


class PerformedNotFound(LookupError):
    """No performed step has this SOP Instance UID or id."""


def find_performed(session: Session, sop_instance_uid: str, lock: bool = False
                   ) -> PerformedStep | None:
    """The performed step with this MPPS SOP Instance UID, or None."""
    stmt = select(PerformedStep).where(PerformedStep.sop_instance_uid == sop_instance_uid)
    if lock and session.get_bind().dialect.name != "sqlite":
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def match_references(session: Session, references: Iterable[ScheduledReference],
                     modality: str = "") -> list[ScheduledStep]:
    """The scheduled steps the references name: every non-empty key of an item must agree."""
    found: dict[int, ScheduledStep] = {}
    for ref in references:
        if ref.is_empty():
            continue
        stmt = (select(ScheduledStep)
                .join(RequestedProcedure, ScheduledStep.requested_procedure_id == RequestedProcedure.id)
                .join(Order, RequestedProcedure.order_id == Order.id))
        for value, column in ((ref.study_instance_uid, RequestedProcedure.study_instance_uid),
                              (ref.accession_number, RequestedProcedure.accession_number),
                              (ref.requested_procedure_id, RequestedProcedure.procedure_id),
                              (ref.scheduled_step_id, ScheduledStep.step_id)):
            if value:
                stmt = stmt.where(column == value)
        steps = list(session.scalars(stmt.order_by(ScheduledStep.id)))
        if len(steps) > 1 and not ref.scheduled_step_id and modality:
            # A procedure with steps on several modalities: the reporting modality's own step.
            steps = [s for s in steps if s.modality == modality] or steps
        for step in steps:
            found[step.id] = step
    return list(found.values())


def start_performed_step(session: Session, report: PerformedReport, actor: str) -> PerformedStep:
    """Store an MPPS created IN PROGRESS; link it, start its steps, or keep it unscheduled."""
    steps = match_references(session, report.references, report.modality)
    row = PerformedStep(
        sop_instance_uid=report.sop_instance_uid, status=report.status.value,
        modality=report.modality, station_ae_title=report.station_ae_title,
        calling_ae_title=report.calling_ae_title, started_at=report.started_at,
        ended_at=report.ended_at, study_instance_uid=report.study_instance_uid,
        unscheduled=not steps, dataset=report.dataset, summary=report.summary)
    if steps:
        row.patient_id = order_of(steps[0]).patient_id
        _check_patient(session, report, steps, actor)
    elif report.patient is not None:
        # Unscheduled: the demographics go through the one patient entry point, where
        # reconciliation decides whether they belong to a known patient.
        row.patient_id = upsert_patient(session, report.patient).id
    session.add(row)
    session.flush()
    record_event(session, actor, "mpps created", "performed_step", row.id,
                 sop_instance_uid=row.sop_instance_uid, unscheduled=row.unscheduled,
                 steps=[s.id for s in steps])
    _link_and_start(session, row, steps, actor)
    return row


def _check_patient(session: Session, report: PerformedReport, steps: list[ScheduledStep],
                   actor: str) -> None:
    """Flag an MPPS whose patient ID is not the order's (a wrong worklist entry picked?).

    The link stands (the modality named the step); the order's history says what differs so an
    admin can move the performed step with attach_performed_step.
    """
    if report.patient is None or not report.patient.identifiers:
        return
    sent = {i.value for i in report.patient.identifiers}
    for order in {order_of(s).id: order_of(s) for s in steps}.values():
        known = {i.value for i in order.patient.identifiers}
        if known and not sent & known:
            log.warning("mpps %s: patient ID differs from order %s", report.sop_instance_uid,
                        order.id)
            record_event(session, actor, "mpps patient mismatch", "order", order.id,
                         mpps=report.sop_instance_uid, mpps_patient_id=sorted(sent),
                         order_patient_ids=sorted(known))


def _link_and_start(session: Session, row: PerformedStep, steps: list[ScheduledStep],
                    actor: str) -> None:
    lock_orders(session, [order_of(s).id for s in steps])
    for step in steps:
        session.add(PerformedStepLink(performed_step_id=row.id, scheduled_step_id=step.id))
        _apply(session, step, StepEvent.START, actor, row)
    session.flush()
    if PerformedStatus(row.status) in FINAL_PERFORMED:
        _finish_steps(session, row, steps, actor)
    for order in {order_of(s).id: order_of(s) for s in steps}.values():
        refresh_order_status(session, order, actor, mpps=row.sop_instance_uid)


def _apply(session: Session, step: ScheduledStep, event: StepEvent, actor: str,
           row: PerformedStep) -> None:
    """Apply a step event; one the lifecycle refuses is recorded, never lost nor fatal."""
    try:
        transition_step(session, step, event, actor, mpps=row.sop_instance_uid)
    except IllegalTransition as exc:
        # E.g. an MPPS for a step the placer cancelled: what was performed is kept and linked.
        log.warning("mpps %s: step %s unchanged: %s", row.sop_instance_uid, step.id, exc.reason)
        record_event(session, actor, "step unchanged", "order", order_of(step).id, step=step.id,
                     event=event.value, reason=exc.reason, mpps=row.sop_instance_uid)


def linked_steps(session: Session, row: PerformedStep) -> list[ScheduledStep]:
    """The scheduled steps this MPPS covers."""
    return list(session.scalars(
        select(ScheduledStep).join(PerformedStepLink,
                                   PerformedStepLink.scheduled_step_id == ScheduledStep.id)
        .where(PerformedStepLink.performed_step_id == row.id).order_by(ScheduledStep.id)))


def _finish_steps(session: Session, row: PerformedStep, steps: list[ScheduledStep],
                  actor: str) -> None:
    for step in steps:
        performed = session.execute(
            select(PerformedStep.status, PerformedStep.discontinuation_reason).join(
                PerformedStepLink, PerformedStepLink.performed_step_id == PerformedStep.id)
            .where(PerformedStepLink.scheduled_step_id == step.id)).all()
        event = step_event_on_finish([PerformedStatus(s) for s, _ in performed],
                                     [reason.split("^", 1)[0] for _, reason in performed])
        if event is not None and step.status != _status_after(event):
            _apply(session, step, event, actor, row)


def _status_after(event: StepEvent) -> str:
    return {StepEvent.COMPLETE: "COMPLETED", StepEvent.REOPEN: "SCHEDULED"}.get(event, "DISCONTINUED")


def update_performed_step(session: Session, row: PerformedStep, status: PerformedStatus,
                          dataset: dict, summary: dict, actor: str, ended_at=None,
                          discontinuation_reason: str = "") -> PerformedStep:
    """Apply an N-SET already checked by the caller; a final status finishes the linked steps."""
    before = row.status
    row.status = status.value
    row.dataset, row.summary = dataset, summary
    if ended_at is not None:
        row.ended_at = ended_at
    if discontinuation_reason:
        row.discontinuation_reason = discontinuation_reason[:64]
    session.flush()
    record_event(session, actor, "mpps updated", "performed_step", row.id,
                 sop_instance_uid=row.sop_instance_uid, status_from=before, status_to=row.status)
    if status in FINAL_PERFORMED:
        steps = linked_steps(session, row)
        lock_orders(session, [order_of(s).id for s in steps])
        _finish_steps(session, row, steps, actor)
        for order in {order_of(s).id: order_of(s) for s in steps}.values():
            refresh_order_status(session, order, actor, mpps=row.sop_instance_uid)
    return row


def attach_performed_step(session: Session, performed_id: int, scheduled_step_pk: int,
                          actor: str) -> PerformedStep:
    """Attach a performed step (typically unscheduled) to a scheduled step, as an admin decides.

    The performed step takes the order's patient; the step follows the MPPS status as if the
    modality had named it.
    """
    row = session.get(PerformedStep, performed_id)
    if row is None:
        raise PerformedNotFound(f"no performed step {performed_id}")
    step = session.get(ScheduledStep, scheduled_step_pk)
    if step is None:
        raise LookupError(f"no scheduled step {scheduled_step_pk}")
    if session.get(PerformedStepLink, (row.id, step.id)) is not None:
        raise ValueError(f"performed step {row.id} is already linked to step {step.id}")
    order = order_of(step)
    previous_patient = row.patient_id
    row.unscheduled = False
    row.patient_id = order.patient_id
    record_event(session, actor, "mpps attached", "performed_step", row.id, step=step.id,
                 order=order.id, patient_from=previous_patient, patient_to=order.patient_id)
    record_event(session, actor, "mpps attached", "order", order.id, step=step.id,
                 mpps=row.sop_instance_uid)
    _link_and_start(session, row, [step], actor)
    return row


def unscheduled_steps(session: Session, limit: int = 100) -> list[PerformedStep]:
    """Performed steps still waiting for an admin to attach them, newest first."""
    return list(session.scalars(select(PerformedStep).where(PerformedStep.unscheduled.is_(True))
                                .order_by(PerformedStep.id.desc()).limit(limit)))
