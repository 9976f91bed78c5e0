"""The values an outbound message is built from: an order, its patient, procedure and study."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.clock import local_now
from broker.store.models import Order, PerformedStep, PerformedStepLink, RequestedProcedure

# ORC-5 order status (HL7 v2.3.1 table 0038) for the order statuses the EHR hears about.
ORDER_STATUS_CODES = {"IN_PROGRESS": "IP", "COMPLETED": "CM", "DISCONTINUED": "DC"}


def new_control_id() -> str:
    """A fresh MSH-10 (20 characters, the field's length in v2.3.1); kept in the payload, so a
    resend of the same notification carries the same one."""
    return uuid.uuid4().hex[:20].upper()


def hl7_datetime(value: datetime | None) -> str:
    return value.strftime("%Y%m%d%H%M%S") if value else ""


def order_values(session: Session, order: Order, study_instance_uid: str = "",
                 performed: PerformedStep | None = None) -> dict[str, str]:
    """Everything a template may name about `order` (and the study, when given)."""
    patient = order.patient
    identifier = patient.identifiers[0] if patient.identifiers else None
    procedure = procedure_of(order, study_instance_uid)
    step = procedure.steps[0] if procedure is not None and procedure.steps else None
    performed = performed or latest_performed(session, order)
    summary = (performed.summary or {}) if performed is not None else {}
    series = summary.get("series", [])
    return {
        "timestamp": local_now().strftime("%Y%m%d%H%M%S"),
        "patient_id": identifier.value if identifier else "",
        "patient_id_issuer": identifier.issuer if identifier else "",
        "patient_family_name": patient.family_name, "patient_given_name": patient.given_name,
        "patient_birth_date": patient.birth_date, "patient_sex": patient.sex,
        "placer_order_number": order.placer_order_number or "",
        "placer_issuer": order.placer_issuer,
        "filler_order_number": order.filler_order_number or "",
        "filler_issuer": order.filler_issuer,
        "accession_number": (procedure.accession_number if procedure is not None else "")
        or order.accession_number or "",
        "order_status": ORDER_STATUS_CODES.get(order.status, ""),
        "procedure_code": procedure.code_value if procedure else "",
        "procedure_meaning": procedure.code_meaning if procedure else "",
        "procedure_scheme": procedure.code_scheme if procedure else "",
        "requested_procedure_id": procedure.procedure_id if procedure else "",
        "study_instance_uid": study_instance_uid or (procedure.study_instance_uid
                                                     if procedure else ""),
        "scheduled_step_id": step.step_id if step else "",
        "modality": (performed.modality if performed is not None else "") or (
            step.modality if step else ""),
        "exam_started": hl7_datetime(performed.started_at) if performed is not None else "",
        "exam_ended": hl7_datetime(performed.ended_at) if performed is not None else "",
        "series_count": str(len(series)) if series else "",
        "instance_count": str(summary.get("image_count", "")) if series else "",
    }


def procedure_of(order: Order, study_instance_uid: str) -> RequestedProcedure | None:
    """The order's procedure holding the study, else its first."""
    for procedure in order.procedures:
        if study_instance_uid and procedure.study_instance_uid == study_instance_uid:
            return procedure
    return order.procedures[0] if order.procedures else None


def latest_performed(session: Session, order: Order) -> PerformedStep | None:
    """The newest MPPS covering a step of the order, or None."""
    step_ids = [s.id for p in order.procedures for s in p.steps]
    if not step_ids:
        return None
    return session.scalars(
        select(PerformedStep).join(PerformedStepLink,
                                   PerformedStepLink.performed_step_id == PerformedStep.id)
        .where(PerformedStepLink.scheduled_step_id.in_(step_ids))
        .order_by(PerformedStep.id.desc()).limit(1)).first()
