"""Orders, requested procedures and scheduled steps."""
from __future__ import annotations

from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.domain.records import OrderRequest
from broker.store.models import Order, RequestedProcedure, ScheduledStep, StepStationAE
from broker.store.patients import upsert_patient


class OrderConflict(ValueError):
    """The order cannot be applied as asked; the message says why."""


def find_order(session: Session, placer_order_number: str, placer_issuer: str = "") -> Order | None:
    """The order with this placer order number and issuer, or None."""
    return session.execute(
        select(Order).where(Order.placer_order_number == placer_order_number,
                            Order.placer_issuer == placer_issuer)
    ).scalar_one_or_none()


def create_order(session: Session, request: OrderRequest, new_uid: Callable[[], str],
                 source_channel: str = "", source_message_id: int | None = None) -> Order:
    """Store a new order with its patient, procedures and steps; refuse a duplicate placer number."""
    if find_order(session, request.placer_order_number, request.placer_issuer) is not None:
        raise OrderConflict(f"order {request.placer_order_number} already exists")
    if request.accession_number and session.execute(
            select(Order.id).where(Order.accession_number == request.accession_number,
                                   Order.accession_issuer == request.accession_issuer)).first():
        raise OrderConflict(f"accession number {request.accession_number} is already used")
    patient = upsert_patient(session, request.patient)
    order = Order(
        patient=patient,
        placer_order_number=request.placer_order_number,
        placer_issuer=request.placer_issuer,
        filler_order_number=request.filler_order_number or None,
        filler_issuer=request.filler_issuer,
        accession_number=request.accession_number or None,
        accession_issuer=request.accession_issuer,
        priority=request.priority,
        referring_physician=request.referring_physician,
        reason=request.reason,
        source_channel=source_channel,
        source_message_id=source_message_id,
    )
    session.add(order)
    for proc in request.procedures:
        procedure = RequestedProcedure(
            procedure_id=proc.procedure_id, code_value=proc.code_value,
            code_scheme=proc.code_scheme, code_meaning=proc.code_meaning,
            study_instance_uid=proc.study_instance_uid or new_uid())
        order.procedures.append(procedure)
        for step in proc.steps:
            procedure.steps.append(ScheduledStep(
                step_id=step.step_id, modality=step.modality,
                station_ae_title="\\".join(step.station_ae_titles),
                stations=[StepStationAE(ae_title=t) for t in dict.fromkeys(step.station_ae_titles)],
                station_name=step.station_name, location=step.location, start_at=step.start,
                performing_physician=step.performing_physician, description=step.description,
                protocol_codes=[list(c) for c in step.protocol_codes], status="SCHEDULED"))
    session.flush()
    return order
