"""Orders, requested procedures and scheduled steps: create (NW), change (XO), lifecycle events.

Every step transition goes through broker.domain.lifecycle, which refuses an illegal one with
the reason; the order's status is derived from its steps afterwards.
"""
from __future__ import annotations

from datetime import date, datetime, time
from typing import Callable

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from broker.domain.lifecycle import (
    NOT_STARTED, IllegalTransition, StepEvent, StepStatus, next_status, order_status,
)
from broker.domain.records import OrderRequest, ProcedureRequest, StepRequest
from broker.store.models import (
    Order, Patient, RequestedProcedure, ScheduledStep, StepStationAE,
)
from broker.store.patients import upsert_patient


class OrderConflict(ValueError):
    """The order cannot be applied as asked; the message says why."""


class UnknownOrder(LookupError):
    """The placer refers to an order the broker does not hold."""


def find_order(session: Session, placer_order_number: str, placer_issuer: str = "") -> Order | None:
    """The order with this placer order number and issuer, or None."""
    return session.execute(
        select(Order).where(Order.placer_order_number == placer_order_number,
                            Order.placer_issuer == placer_issuer)
    ).scalar_one_or_none()


def existing_order(session: Session, placer: str, issuer: str = "") -> Order:
    """The order with this placer number, or UnknownOrder."""
    order = find_order(session, placer, issuer)
    if order is None:
        raise UnknownOrder(f"order {placer} is not known")
    return order


_orders = Order.__table__
_procedures = RequestedProcedure.__table__
# Built once: every new order is checked against them.
_PLACER_TAKEN = select(_orders.c.id).where(
    _orders.c.placer_order_number == bindparam("placer"),
    _orders.c.placer_issuer == bindparam("issuer")).limit(1)
# Every procedure carries its accession (its own or its order's), so one table answers.
_ACCESSION_TAKEN = select(_procedures.c.id).where(
    _procedures.c.accession_number == bindparam("accession"),
    _procedures.c.accession_issuer == bindparam("issuer")).limit(1)


def order_conflict(session: Session, request: OrderRequest) -> str | None:
    """Why a new order would clash with a stored one (placer or accession), or None."""
    if session.execute(_PLACER_TAKEN, dict(placer=request.placer_order_number,
                                           issuer=request.placer_issuer)).first():
        return f"order {request.placer_order_number} already exists"
    accessions = dict.fromkeys(procedure_accession(request, proc) for proc in request.procedures)
    if request.accession_number:
        accessions[(request.accession_number, request.accession_issuer)] = None
    for accession, issuer in accessions:
        if accession and session.execute(_ACCESSION_TAKEN, dict(accession=accession,
                                                                issuer=issuer)).first():
            return f"accession number {accession} is already used"
    return None


def store_order(session: Session, request: OrderRequest, new_uid: Callable[[], str],
                source_channel: str = "", source_message_id: int | None = None) -> int:
    """Store a new order with its patient, procedures and steps; its id. OrderConflict (and
    nothing written) when its placer order or accession number is taken."""
    conflict = order_conflict(session, request)
    if conflict:
        raise OrderConflict(conflict)
    # The patient's pending search names where the patient came from (the queue shows it).
    patient = upsert_patient(session, request.patient, source=source_channel or "hl7")
    session.flush()
    return insert_order(session, request, patient.id, new_uid, source_channel, source_message_id)


def create_order(session: Session, request: OrderRequest, new_uid: Callable[[], str],
                 source_channel: str = "", source_message_id: int | None = None) -> Order:
    """store_order, returning the stored Order for callers that go on with it."""
    return session.get(Order, store_order(session, request, new_uid, source_channel,
                                          source_message_id))


# Built once: the intake runs them for every new order.
_INSERT_ORDER = insert(_orders).returning(_orders.c.id)
_INSERT_PROCEDURE = insert(RequestedProcedure.__table__).returning(
    RequestedProcedure.__table__.c.id)
_INSERT_STEP = insert(ScheduledStep.__table__).returning(ScheduledStep.__table__.c.id)
_INSERT_STATION = insert(StepStationAE.__table__)


def insert_order(session: Session, request: OrderRequest, patient_id: int,
                 new_uid: Callable[[], str], source_channel: str = "",
                 source_message_id: int | None = None) -> int:
    """Insert the order's rows for a known patient; returns the order id.

    Plain Core INSERTs rather than ORM objects: nothing here is read back, and the ORM's unit
    of work would only add its bookkeeping to the intake's most frequent write."""
    order_id = session.execute(_INSERT_ORDER, dict(
        patient_id=patient_id, placer_order_number=request.placer_order_number,
        placer_issuer=request.placer_issuer,
        filler_order_number=request.filler_order_number or None,
        filler_issuer=request.filler_issuer,
        # NULL, not "", when absent: the unique constraint ignores NULLs.
        accession_number=request.accession_number or None,
        accession_issuer=request.accession_issuer, priority=request.priority,
        referring_physician=request.referring_physician, reason=request.reason,
        status="SCHEDULED", source_channel=source_channel,
        source_message_id=source_message_id)).scalar_one()
    for proc in request.procedures:
        accession, issuer = procedure_accession(request, proc)
        proc_id = session.execute(_INSERT_PROCEDURE, dict(
            order_id=order_id, procedure_id=proc.procedure_id, code_value=proc.code_value,
            code_scheme=proc.code_scheme, code_meaning=proc.code_meaning,
            study_instance_uid=proc.study_instance_uid or new_uid(),
            accession_number=accession, accession_issuer=issuer)).scalar_one()
        for step in proc.steps:
            step_id = session.execute(_INSERT_STEP, dict(
                requested_procedure_id=proc_id, status="SCHEDULED", extra={},
                **_step_columns(step))).scalar_one()
            titles = list(dict.fromkeys(step.station_ae_titles))
            if titles:
                session.execute(_INSERT_STATION,
                                [{"step_id": step_id, "ae_title": t} for t in titles])
    return order_id


def procedure_accession(request: OrderRequest, proc: ProcedureRequest) -> tuple[str | None, str]:
    """The procedure's own accession and issuer, else the order's (NULL when neither has one)."""
    if proc.accession_number:
        return proc.accession_number, proc.accession_issuer
    return request.accession_number or None, request.accession_issuer


def _step_columns(step: StepRequest) -> dict:
    """The scheduled_step columns a StepRequest sets."""
    return dict(step_id=step.step_id, modality=step.modality,
                station_ae_title="\\".join(step.station_ae_titles),
                station_name=step.station_name, location=step.location,
                start_at=step.start, end_at=step.end,
                performing_physician=step.performing_physician, description=step.description,
                protocol_codes=[list(c) for c in step.protocol_codes])


def apply_event(session: Session, order: Order, event: StepEvent) -> None:
    """Apply one lifecycle event to every step of the order that is not already final for it."""
    for step in (s for p in order.procedures for s in p.steps):
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
        procedure.accession_number, procedure.accession_issuer = procedure_accession(request, proc)
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
