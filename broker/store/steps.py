"""Scheduled step transitions with their effect on the order, recorded in the order's history.

The history of an order is its audit_event rows with entity_type "order". The web UI and the
CLI use these functions alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import select, union_all
from sqlalchemy.orm import Session

from broker.domain.lifecycle import StepEvent, StepStatus, next_status, order_status
from broker.store.audit import record_event
from broker.store.models import AuditEvent, Order, RequestedProcedure, ScheduledStep


class StepNotFound(LookupError):
    """No scheduled step has this id."""


def order_of(step: ScheduledStep) -> Order:
    return step.procedure.order


def lock_orders(session: Session, order_ids: Iterable[int]) -> None:
    """Row-lock the orders about to change (PostgreSQL), in id order so writers never deadlock."""
    ids = sorted(set(order_ids))
    if ids and session.get_bind().dialect.name != "sqlite":
        session.execute(select(Order.id).where(Order.id.in_(ids)).order_by(Order.id)
                        .with_for_update()).all()


def transition_step(session: Session, step: ScheduledStep, event: StepEvent, actor: str,
                    **detail: Any) -> bool:
    """Apply `event` (IllegalTransition when refused); record it on the order; True if changed."""
    before = StepStatus(step.status)
    after = next_status(before, event)
    if after is before:
        return False
    step.status = after.value
    record_event(session, actor, f"step {event.value}", "order", order_of(step).id,
                 step=step.id, sps_id=step.step_id, status_from=before.value,
                 status_to=after.value, **detail)
    return True


def refresh_order_status(session: Session, order: Order, actor: str, **detail: Any) -> bool:
    """Derive the order's status from its steps; record a change in its history."""
    session.flush()
    statuses = session.scalars(
        select(ScheduledStep.status).join(RequestedProcedure)
        .where(RequestedProcedure.order_id == order.id)).all()
    new = order_status([StepStatus(s) for s in statuses]).value
    if new == order.status:
        return False
    record_event(session, actor, "order status", "order", order.id, status_from=order.status,
                 status_to=new, **detail)
    order.status = new
    return True


def arrive_step(session: Session, step_pk: int, actor: str) -> ScheduledStep:
    """Mark the patient arrived for a step (by hand, or ADT A10); IllegalTransition if it can't."""
    step = session.get(ScheduledStep, step_pk)
    if step is None:
        raise StepNotFound(f"no scheduled step {step_pk}")
    lock_orders(session, [order_of(step).id])
    transition_step(session, step, StepEvent.ARRIVE, actor)
    refresh_order_status(session, order_of(step), actor)
    return step


@dataclass(frozen=True)
class StepRow:
    """One line of a step listing."""
    id: int
    sps_id: str
    status: str
    modality: str
    station_ae_title: str
    start_at: datetime | None
    accession_number: str
    requested_procedure_id: str
    order_id: int
    order_status: str


def list_steps(session: Session, statuses: Iterable[str] = (), limit: int = 100) -> list[StepRow]:
    """Scheduled steps in start order, optionally only those in `statuses`."""
    wanted = list(dict.fromkeys(s.upper() for s in statuses)) or [s.value for s in StepStatus]
    # start_at has no index of its own: the first `limit` of each status come from a search of
    # ix_scheduled_step_status_start, already in start order, and only those are sorted.
    firsts = [select(ScheduledStep.id).where(ScheduledStep.status == status)
              .order_by(ScheduledStep.start_at, ScheduledStep.id).limit(limit).subquery()
              for status in wanted]
    ids = union_all(*(select(first.c.id) for first in firsts)).subquery()
    stmt = (select(ScheduledStep, RequestedProcedure, Order)
            .join(ids, ids.c.id == ScheduledStep.id)
            .join(RequestedProcedure, ScheduledStep.requested_procedure_id == RequestedProcedure.id)
            .join(Order, RequestedProcedure.order_id == Order.id)
            .order_by(ScheduledStep.start_at, ScheduledStep.id).limit(limit))
    return [StepRow(step.id, step.step_id, step.status, step.modality, step.station_ae_title,
                    step.start_at, proc.accession_number or "", proc.procedure_id, order.id,
                    order.status)
            for step, proc, order in session.execute(stmt).all()]


def order_history(session: Session, order_id: int) -> list[AuditEvent]:
    """The order's recorded changes, oldest first."""
    return list(session.scalars(
        select(AuditEvent).where(AuditEvent.entity_type == "order",
                                 AuditEvent.entity_id == str(order_id))
        .order_by(AuditEvent.id)))
