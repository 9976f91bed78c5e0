"""Read-only queries the pages and the API share: the worklist of a day, an order with its
timeline, a patient with identifiers and merges. Each is an indexed query with a limit."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, or_, select, union
from sqlalchemy.orm import Session

from broker.dicom.query_match import match_string
from broker.domain.lifecycle import StepStatus
from broker.store.models import (
    AuditEvent, InboundMessage, Notification, Order, Patient, PatientIdentifier, PatientMerge,
    PerformedStep, PerformedStepLink, RequestedProcedure, ScheduledStep, StepStationAE,
)

ALL_STATUSES = [s.value for s in StepStatus]


@dataclass(frozen=True)
class WorklistRow:
    """One scheduled step as the worklist page shows it."""
    step: int
    sps_id: str
    status: str
    modality: str
    station_ae_title: str
    start_at: datetime | None
    description: str
    accession_number: str
    order_id: int
    patient_id: int
    patient_name: str
    patient_identifier: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        data = asdict(self)
        data["start_at"] = self.start_at.isoformat() if self.start_at else None
        return data


@dataclass(frozen=True)
class WorklistFilter:
    """What the worklist is narrowed to; `search` (name prefix, patient ID or accession)
    looks across every date."""
    day: date
    modality: str = ""
    station: str = ""
    status: str = ""
    search: str = ""


def _first_identifier():
    return (select(PatientIdentifier.value).where(PatientIdentifier.patient_id == Patient.id)
            .order_by(PatientIdentifier.id).limit(1).scalar_subquery())


def _step_conditions(session: Session, wanted: WorklistFilter) -> list[Any]:
    conditions: list[Any] = []
    if wanted.search:
        return [RequestedProcedure.order_id.in_(_searched_orders(wanted.search))]
    start = datetime.combine(wanted.day, time.min)
    conditions += [ScheduledStep.start_at >= start, ScheduledStep.start_at < start + timedelta(days=1)]
    # start_at is indexed after the status or the modality only: name one of them always.
    if wanted.modality:
        conditions.append(ScheduledStep.modality == wanted.modality.upper())
    if wanted.status:
        conditions.append(ScheduledStep.status == wanted.status.upper())
    elif not wanted.modality:
        conditions.append(ScheduledStep.status.in_(ALL_STATUSES))
    if wanted.station:
        conditions.append(ScheduledStep.id.in_(select(StepStationAE.step_id).where(
            StepStationAE.ae_title == wanted.station.upper())))
    return conditions


def _searched_orders(text: str):
    """Orders whose accession is `text`, or whose patient's ID is it or whose name starts so."""
    text = text.strip()
    # A LIMIT inside a compound SELECT must sit in a subquery of its own (SQLite's grammar).
    by_name = select(Patient.id).where(match_string(
        Patient.name_key, text.replace("*", "") + "*", upper=True, index_prefix=True)).limit(500)
    by_name_ids = by_name.subquery()
    patients = union(
        select(PatientIdentifier.patient_id).where(PatientIdentifier.value == text),
        select(by_name_ids.c.id))
    # A procedure may carry its own accession (IPC-1), so both are searched.
    return union(select(Order.id).where(Order.accession_number == text),
                 select(RequestedProcedure.order_id).where(
                     RequestedProcedure.accession_number == text),
                 select(Order.id).where(Order.patient_id.in_(patients)))


def worklist(session: Session, wanted: WorklistFilter, limit: int = 50,
             offset: int = 0) -> tuple[list[WorklistRow], int]:
    """One page of steps in start order, and how many match in all."""
    conditions = _step_conditions(session, wanted)
    joined = (select(ScheduledStep.id)
              .join(RequestedProcedure, ScheduledStep.requested_procedure_id == RequestedProcedure.id)
              .where(*conditions))
    total = session.scalar(select(func.count()).select_from(joined.subquery()))
    accession = func.coalesce(RequestedProcedure.accession_number, Order.accession_number)
    stmt = (select(ScheduledStep, RequestedProcedure.order_id, accession, Patient.id,
                   Patient.name, _first_identifier())
            .join(RequestedProcedure, ScheduledStep.requested_procedure_id == RequestedProcedure.id)
            .join(Order, RequestedProcedure.order_id == Order.id)
            .join(Patient, Order.patient_id == Patient.id)
            .where(*conditions).order_by(ScheduledStep.start_at, ScheduledStep.id)
            .limit(limit).offset(offset))
    rows = [WorklistRow(s.id, s.step_id, s.status, s.modality, s.station_ae_title, s.start_at,
                        s.description, accession or "", order_id, pid, name, ident or "")
            for s, order_id, accession, pid, name, ident in session.execute(stmt)]
    return rows, total or 0


def step_counts(session: Session, day: date) -> dict[tuple[str, str], int]:
    """(modality, status) -> steps of the day, for the dashboard."""
    start = datetime.combine(day, time.min)
    stmt = (select(ScheduledStep.modality, ScheduledStep.status, func.count())
            .where(ScheduledStep.status.in_(ALL_STATUSES), ScheduledStep.start_at >= start,
                   ScheduledStep.start_at < start + timedelta(days=1))
            .group_by(ScheduledStep.modality, ScheduledStep.status))
    return {(m or "?", s): n for m, s, n in session.execute(stmt)}


def order_detail(session: Session, order_id: int) -> dict[str, Any] | None:
    """The order with its patient, procedures, steps and timeline, as plain data."""
    order = session.get(Order, order_id)
    if order is None:
        return None
    procedures = [{"procedure_id": p.procedure_id, "code": p.code_value, "meaning": p.code_meaning,
                   "study_instance_uid": p.study_instance_uid,
                   "steps": [{"id": s.id, "sps_id": s.step_id, "status": s.status,
                              "modality": s.modality, "station_ae_title": s.station_ae_title,
                              "start_at": s.start_at.isoformat() if s.start_at else None,
                              "description": s.description} for s in p.steps]}
                  for p in order.procedures]
    patient = order.patient
    return {"id": order.id, "placer_order_number": order.placer_order_number,
            "filler_order_number": order.filler_order_number,
            "accession_number": order.accession_number, "status": order.status,
            "priority": order.priority, "referring_physician": order.referring_physician,
            "reason": order.reason, "source_channel": order.source_channel,
            "source_message_id": order.source_message_id,
            "created_at": order.created_at.isoformat(),
            "patient": {"id": patient.id, "name": patient.name, "birth_date": patient.birth_date,
                        "sex": patient.sex,
                        "identifiers": [i.value for i in patient.identifiers]},
            "procedures": procedures, "timeline": timeline(session, order)}


def timeline(session: Session, order: Order) -> list[dict[str, Any]]:
    """Everything that happened to the order, oldest first: its message, MPPS, state changes
    with who made them, notifications out."""
    events: list[dict[str, Any]] = []
    if order.source_message_id:
        message = session.get(InboundMessage, order.source_message_id)
        if message is not None:
            events.append({"at": message.received_at, "what": f"{message.channel} "
                           f"{message.message_type} received ({message.status})",
                           "who": message.sender, "message_id": message.id})
    step_ids = [s.id for p in order.procedures for s in p.steps]
    keys = [f"order:{order.id}"]
    if step_ids:
        # Plain columns: DISTINCT over the JSON dataset column is refused by PostgreSQL.
        for mpps in session.execute(select(
                PerformedStep.id, PerformedStep.status, PerformedStep.created_at,
                PerformedStep.calling_ae_title, PerformedStep.station_ae_title,
                PerformedStep.sop_instance_uid).join(
                PerformedStepLink, PerformedStepLink.performed_step_id == PerformedStep.id)
                .where(PerformedStepLink.scheduled_step_id.in_(step_ids)).distinct()):
            events.append({"at": mpps.created_at, "what": f"MPPS {mpps.status}",
                           "who": mpps.calling_ae_title or mpps.station_ae_title})
            keys.append(f"mpps:{mpps.sop_instance_uid}")
    # Notifications out: those keyed to this order or to one of its MPPS (the outbox orders
    # deliveries by that key, so it names what they are about).
    for note in session.scalars(select(Notification).where(Notification.ordering_key.in_(keys))):
        events.append({"at": note.created_at, "what": f"{note.kind} to {note.destination}: "
                       f"{note.status.lower()}", "who": "outbox"})
    for event in session.scalars(select(AuditEvent).where(
            AuditEvent.entity_type == "order", AuditEvent.entity_id == str(order.id))
            .order_by(AuditEvent.id)):
        detail = ", ".join(f"{k} {v}" for k, v in event.detail.items() if k.startswith("status"))
        events.append({"at": event.at, "what": f"{event.action}" + (f" ({detail})" if detail else ""),
                       "who": event.actor})
    events.sort(key=lambda e: e["at"])
    return [{**e, "at": e["at"].isoformat(timespec="seconds")} for e in events]


def patient_detail(session: Session, patient_id: int) -> dict[str, Any] | None:
    """A patient with identifiers, the records merged into it and the one it was merged into."""
    patient = session.get(Patient, patient_id)
    if patient is None:
        return None
    merges = session.scalars(select(PatientMerge).where(or_(
        PatientMerge.survivor_id == patient_id, PatientMerge.merged_id == patient_id))
        .order_by(PatientMerge.id)).all()
    orders = session.execute(select(Order.id, Order.accession_number, Order.status)
                             .where(Order.patient_id == patient_id).order_by(Order.id.desc())
                             .limit(50)).all()
    return {"id": patient.id, "name": patient.name, "birth_date": patient.birth_date,
            "sex": patient.sex, "address": patient.address, "phone": patient.phone,
            "merged_into_id": patient.merged_into_id,
            "identifiers": [{"value": i.value, "issuer": i.issuer, "type": i.type_code}
                            for i in patient.identifiers],
            "merges": [{"id": m.id, "survivor_id": m.survivor_id, "merged_id": m.merged_id,
                        "actor": m.actor, "at": m.created_at.isoformat(timespec="seconds"),
                        "undone_at": m.undone_at.isoformat(timespec="seconds") if m.undone_at
                        else None} for m in merges],
            "orders": [{"id": o.id, "accession_number": o.accession_number, "status": o.status}
                       for o in orders]}
