"""Worklist housekeeping: cancel steps nobody performed, purge finished records after retention."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from broker.domain.lifecycle import StepEvent
from broker.store.audit import record_event
from broker.store.models import (
    Order, PerformedStep, PerformedStepLink, RequestedProcedure, ScheduledStep, StepStationAE,
    finished_order,
)
from broker.store.steps import lock_orders, order_of, refresh_order_status, transition_step

ACTOR = "housekeeping"


def cancel_stale_steps(session: Session, now: datetime, days: int, limit: int = 500) -> int:
    """Cancel steps still SCHEDULED `days` after their start (site local time); returns the count."""
    cutoff = now - timedelta(days=days)
    stmt = (select(ScheduledStep).where(ScheduledStep.status == "SCHEDULED",
                                        ScheduledStep.start_at < cutoff)
            .order_by(ScheduledStep.id).limit(limit))
    if session.get_bind().dialect.name != "sqlite":
        # Several `broker serve` processes run this job: each step is canceled by one of them.
        stmt = stmt.with_for_update(skip_locked=True)
    steps = list(session.scalars(stmt))
    lock_orders(session, [order_of(s).id for s in steps])
    for step in steps:
        transition_step(session, step, StepEvent.CANCEL, ACTOR,
                        reason=f"still SCHEDULED {days} days after its start")
    for order in {order_of(s).id: order_of(s) for s in steps}.values():
        refresh_order_status(session, order, ACTOR)
    return len(steps)


def purge_finished(session: Session, now: datetime, days: int, limit: int = 500) -> int:
    """Delete orders finished more than `days` ago, with their steps and performed steps.

    Audit events stay (the trail outlives the record); patients stay; an MPPS also linked to a
    step of a live order stays.
    """
    cutoff = now - timedelta(days=days)
    orders = list(session.scalars(
        # Oldest first, as ix_imaging_order_finished (updated_at) holds them: its WHERE is
        # finished_order's, and in its order the search stops at `limit` without a sort.
        select(Order).where(finished_order(Order.status), Order.updated_at < cutoff)
        .order_by(Order.updated_at, Order.id).limit(limit)))
    if not orders:
        return 0
    order_ids = [o.id for o in orders]
    procedure_ids = select(RequestedProcedure.id).where(RequestedProcedure.order_id.in_(order_ids))
    step_ids = list(session.scalars(
        select(ScheduledStep.id).where(ScheduledStep.requested_procedure_id.in_(procedure_ids))))
    performed_ids = set(session.scalars(select(PerformedStepLink.performed_step_id)
                                        .where(PerformedStepLink.scheduled_step_id.in_(step_ids))))
    kept = set(session.scalars(select(PerformedStepLink.performed_step_id).where(
        PerformedStepLink.performed_step_id.in_(performed_ids),
        PerformedStepLink.scheduled_step_id.not_in(step_ids)))) if performed_ids else set()
    session.execute(delete(PerformedStepLink).where(PerformedStepLink.scheduled_step_id.in_(step_ids)))
    if performed_ids - kept:
        session.execute(delete(PerformedStep).where(PerformedStep.id.in_(performed_ids - kept)))
    session.execute(delete(StepStationAE).where(StepStationAE.step_id.in_(step_ids)))
    session.execute(delete(ScheduledStep).where(ScheduledStep.id.in_(step_ids)))
    session.execute(delete(RequestedProcedure).where(RequestedProcedure.order_id.in_(order_ids)))
    for order in orders:
        record_event(session, ACTOR, "order purged", "order", order.id, status=order.status,
                     accession_number=order.accession_number, retention_days=days)
    session.execute(delete(Order).where(Order.id.in_(order_ids)))
    session.expire_all()
    return len(orders)
