"""Changes to existing orders from the order placer: change (XO), status events (CA/DC/HD/RL/SC).

Every step transition goes through broker.domain.lifecycle, which refuses an illegal one with
the reason; the order's status is derived from its steps afterwards.
"""
from __future__ import annotations

from datetime import date, datetime, time
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.domain.lifecycle import (
    NOT_STARTED, IllegalTransition, StepEvent, StepStatus, next_status, order_status,
)
from broker.domain.records import OrderRequest, StepRequest
from broker.store.models import (
    Order, Patient, RequestedProcedure, ScheduledStep, StepStationAE,
)
from broker.store.orders import OrderConflict, find_order
from broker.store.patients import upsert_patient


class UnknownOrder(LookupError):
    """The placer refers to an order the broker does not hold."""


def existing_order(session: Session, placer: str, issuer: str = "") -> Order:
    """The order with this placer number, or UnknownOrder."""
    order = find_order(session, placer, issuer)
    if order is None:
        raise UnknownOrder(f"order {placer} is not known")
    return order


def apply_event(session: Session, order: Order, event: StepEvent) -> None:
    """Apply one lifecycle event to every step of the order that is not already final for it."""
    steps = [s for p in order.procedures for s in p.steps]
    for step in steps:
        if event is StepEvent.CANCEL and step.status == StepStatus.CANCELED.value:
            continue  # cancelling twice is harmless
        step.status = next_status(StepStatus(step.status), event).value
    refresh_status(order)
    session.flush()


def refresh_status(order: Order) -> None:
    """Derive the order's status from its steps."""
    order.status = order_status([StepStatus(s.status) for p in order.procedures
                                 for s in p.steps]).value


def change_order(session: Session, order: Order, request: OrderRequest,
                 new_uid: Callable[[], str]) -> Order:
    """XO: apply a changed order; refused once the modality has started or finished a step."""
    for step in (s for p in order.procedures for s in p.steps):
        if StepStatus(step.status) not in NOT_STARTED | {StepStatus.HOLD}:
            raise IllegalTransition(StepStatus(step.status), StepEvent.MAKE_READY,
                                    f"order {order.placer_order_number} cannot be changed: step "
                                    f"{step.step_id} is {step.status}")
    if request.accession_number and request.accession_number != order.accession_number:
        taken = session.scalar(select(Order.id).where(
            Order.accession_number == request.accession_number,
            Order.accession_issuer == request.accession_issuer, Order.id != order.id))
        if taken is not None:
            raise OrderConflict(f"accession number {request.accession_number} is already used")
        order.accession_number = request.accession_number
    patient: Patient = upsert_patient(session, request.patient)
    order.patient = patient
    order.filler_order_number = request.filler_order_number or order.filler_order_number
    order.priority = request.priority or order.priority
    order.referring_physician = request.referring_physician
    order.reason = request.reason
    known = {p.procedure_id: p for p in order.procedures}
    for proc in request.procedures:
        procedure = known.get(proc.procedure_id)
        if procedure is None:
            procedure = RequestedProcedure(procedure_id=proc.procedure_id,
                                           study_instance_uid=proc.study_instance_uid or new_uid())
            order.procedures.append(procedure)
        elif proc.study_instance_uid:
            procedure.study_instance_uid = proc.study_instance_uid
        procedure.code_value, procedure.code_scheme = proc.code_value, proc.code_scheme
        procedure.code_meaning = proc.code_meaning
        steps = {s.step_id: s for s in procedure.steps}
        for step in proc.steps:
            _update_step(procedure, steps.get(step.step_id), step)
    session.flush()
    return order


def _update_step(procedure: RequestedProcedure, row: ScheduledStep | None,
                 step: StepRequest) -> None:
    if row is None:
        row = ScheduledStep(step_id=step.step_id, status="SCHEDULED")
        procedure.steps.append(row)
    row.modality, row.station_name, row.location = step.modality, step.station_name, step.location
    row.station_ae_title = "\\".join(step.station_ae_titles)
    row.stations = [StepStationAE(ae_title=t) for t in dict.fromkeys(step.station_ae_titles)]
    if step.start is not None:
        # The request's end was worked out for its start (sent, or start + duration): a moved
        # start takes its end along, and an old end never outlives the start it belonged to.
        row.start_at, row.end_at = step.start, step.end
    elif step.end is not None:
        row.end_at = step.end
    row.performing_physician, row.description = step.performing_physician, step.description
    row.protocol_codes = [list(c) for c in step.protocol_codes]


def arrive_patient(session: Session, patient: Patient, day: date) -> list[ScheduledStep]:
    """ADT A10: the patient's SCHEDULED steps of `day` become ARRIVED; returns those changed."""
    start, end = datetime.combine(day, time.min), datetime.combine(day, time.max)
    steps = session.scalars(
        select(ScheduledStep)
        .join(RequestedProcedure, ScheduledStep.requested_procedure_id == RequestedProcedure.id)
        .join(Order, RequestedProcedure.order_id == Order.id)
        .where(Order.patient_id == patient.id, ScheduledStep.status == StepStatus.SCHEDULED.value,
               ScheduledStep.start_at >= start, ScheduledStep.start_at <= end)).all()
    for step in steps:
        step.status = next_status(StepStatus(step.status), StepEvent.ARRIVE).value
    session.flush()
    return list(steps)
