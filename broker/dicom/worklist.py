"""Modality Worklist: a C-FIND identifier becomes one SQL query; rows become response items.

PS3.4 K.6 (Modality Worklist Information Model) and C.2.2.2 (attribute matching).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from sqlalchemy import Select, exists, select
from sqlalchemy.orm import Session

from broker.config import WorklistSettings
from broker.dicom.matching import (
    InvalidQuery, date_time_bounds, match_datetime_range, match_string,
)
from broker.store.models import (
    Order, Patient, PatientIdentifier, RequestedProcedure, ScheduledStep, StepStationAE,
)


@dataclass(frozen=True)
class WorklistRow:
    step: ScheduledStep
    procedure: RequestedProcedure
    order: Order
    patient: Patient
    patient_id: str
    issuer: str


def _value(ds: Dataset, keyword: str) -> str:
    """A query key's value as text ('' for universal matching or absence)."""
    if keyword not in ds:
        return ""
    value = ds[keyword].value
    if value is None:
        return ""
    if hasattr(value, "original_string") and keyword.endswith("Name"):
        return str(value)
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def build_query(identifier: Dataset, settings: WorklistSettings) -> Select:
    """The SQL query answering `identifier`; InvalidQuery when the identifier is not valid."""
    stmt = (select(ScheduledStep, RequestedProcedure, Order, Patient)
            .join(RequestedProcedure, ScheduledStep.requested_procedure_id == RequestedProcedure.id)
            .join(Order, RequestedProcedure.order_id == Order.id)
            .join(Patient, Order.patient_id == Patient.id)
            .where(ScheduledStep.status.in_(settings.served_statuses)))

    name = _value(identifier, "PatientName").split("=", 1)[0]
    if name:
        column = Patient.name_key if settings.case_insensitive_names else Patient.name
        stmt = stmt.where(match_string(column, name, upper=settings.case_insensitive_names))
    patient_id = _value(identifier, "PatientID")
    issuer = _value(identifier, "IssuerOfPatientID")
    if patient_id or issuer:
        conditions = [PatientIdentifier.patient_id == Patient.id]
        if patient_id:
            conditions.append(match_string(PatientIdentifier.value, patient_id))
        if issuer:
            conditions.append(match_string(PatientIdentifier.issuer, issuer))
        stmt = stmt.where(exists().where(*conditions))
    for keyword, column in (("AccessionNumber", Order.accession_number),
                            ("RequestedProcedureID", RequestedProcedure.procedure_id),
                            ("StudyInstanceUID", RequestedProcedure.study_instance_uid),
                            ("PatientBirthDate", Patient.birth_date),
                            ("PatientSex", Patient.sex)):
        value = _value(identifier, keyword)
        if value:
            stmt = stmt.where(match_string(column, value))

    sps = _sps_item(identifier)
    if sps is not None:
        stmt = _where_step(stmt, sps)
    stmt = stmt.order_by(ScheduledStep.start_at, ScheduledStep.id)
    if settings.max_results:
        stmt = stmt.limit(settings.max_results)
    return stmt


def _sps_item(identifier: Dataset) -> Dataset | None:
    if "ScheduledProcedureStepSequence" not in identifier:
        return None
    seq = identifier.ScheduledProcedureStepSequence
    if len(seq) > 1:
        raise InvalidQuery("ScheduledProcedureStepSequence may hold only one item in a query")
    return seq[0] if len(seq) else None


def _where_step(stmt: Select, sps: Dataset) -> Select:
    for keyword, column in (("Modality", ScheduledStep.modality),
                            ("ScheduledProcedureStepID", ScheduledStep.step_id),
                            ("ScheduledStationName", ScheduledStep.station_name),
                            ("ScheduledProcedureStepLocation", ScheduledStep.location)):
        value = _value(sps, keyword)
        if value:
            stmt = stmt.where(match_string(column, value))
    station = _value(sps, "ScheduledStationAETitle")
    if station:
        stmt = stmt.where(exists().where(StepStationAE.step_id == ScheduledStep.id,
                                         match_string(StepStationAE.ae_title, station)))
    performer = _value(sps, "ScheduledPerformingPhysicianName")
    if performer:
        stmt = stmt.where(match_string(ScheduledStep.performing_physician, performer, upper=True))
    low, high = date_time_bounds(_value(sps, "ScheduledProcedureStepStartDate"),
                                 _value(sps, "ScheduledProcedureStepStartTime"))
    return stmt.where(match_datetime_range(ScheduledStep.start_at, low, high))


def find_items(session: Session, identifier: Dataset, settings: WorklistSettings
               ) -> Iterator[WorklistRow]:
    """The worklist rows matching `identifier`, in start order."""
    rows = session.execute(build_query(identifier, settings)).all()
    patient_ids = {row[3].id for row in rows}
    primary = _primary_identifiers(session, patient_ids)
    for step, procedure, order, patient in rows:
        value, issuer = primary.get(patient.id, ("", ""))
        yield WorklistRow(step, procedure, order, patient, value, issuer)


def _primary_identifiers(session: Session, patient_ids: set[int]) -> dict[int, tuple[str, str]]:
    """Each patient's first identifier, fetched in one query."""
    if not patient_ids:
        return {}
    result: dict[int, tuple[str, str]] = {}
    rows = session.execute(
        select(PatientIdentifier.patient_id, PatientIdentifier.value, PatientIdentifier.issuer)
        .where(PatientIdentifier.patient_id.in_(patient_ids)).order_by(PatientIdentifier.id))
    for pid, value, issuer in rows:
        result.setdefault(pid, (value, issuer))
    return result


def full_item(row: WorklistRow) -> Dataset:
    """Every worklist attribute the broker knows for one scheduled step."""
    step, proc, order, patient = row.step, row.procedure, row.order, row.patient
    ds = Dataset()
    ds.PatientName = patient.name
    ds.PatientID = row.patient_id
    ds.IssuerOfPatientID = row.issuer
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.AccessionNumber = order.accession_number or ""
    ds.ReferringPhysicianName = order.referring_physician
    ds.RequestedProcedureID = proc.procedure_id
    ds.RequestedProcedureDescription = proc.code_meaning[:64]
    ds.StudyInstanceUID = proc.study_instance_uid
    ds.RequestedProcedurePriority = order.priority
    ds.ReasonForTheRequestedProcedure = order.reason[:64]
    ds.PlacerOrderNumberImagingServiceRequest = order.placer_order_number or ""
    ds.FillerOrderNumberImagingServiceRequest = order.filler_order_number or ""
    if proc.code_value:
        code = Dataset()
        code.CodeValue = proc.code_value
        code.CodingSchemeDesignator = proc.code_scheme or "L"
        code.CodeMeaning = proc.code_meaning[:64]
        ds.RequestedProcedureCodeSequence = Sequence([code])
    else:
        ds.RequestedProcedureCodeSequence = Sequence()
    sps = Dataset()
    sps.Modality = step.modality
    sps.ScheduledStationAETitle = step.station_ae_title.split("\\") if "\\" in step.station_ae_title \
        else step.station_ae_title
    sps.ScheduledStationName = step.station_name
    sps.ScheduledProcedureStepLocation = step.location
    sps.ScheduledProcedureStepStartDate = step.start_at.strftime("%Y%m%d") if step.start_at else ""
    sps.ScheduledProcedureStepStartTime = step.start_at.strftime("%H%M%S") if step.start_at else ""
    sps.ScheduledPerformingPhysicianName = step.performing_physician
    sps.ScheduledProcedureStepDescription = step.description[:64]
    sps.ScheduledProcedureStepID = step.step_id
    sps.ScheduledProcedureStepStatus = step.status
    ds.ScheduledProcedureStepSequence = Sequence([sps])
    return ds


def project(full: Dataset, identifier: Dataset) -> Dataset:
    """The response item: each requested key with its value, zero length when unknown."""
    out = Dataset()
    for elem in identifier:
        keyword = elem.keyword
        if keyword in ("SpecificCharacterSet", "QueryRetrieveLevel") or not keyword:
            continue
        if elem.VR == "SQ":
            source = full.get(keyword)
            template = elem.value[0] if elem.value else None
            if source is None:
                items = []
            elif template is None or len(template) == 0:
                items = [_copy(item) for item in source]
            else:
                items = [project(item, template) for item in source]
            setattr(out, keyword, Sequence(items))
        elif keyword in full:
            out[keyword] = full[keyword]
        else:
            out.add_new(elem.tag, elem.VR, None)
    return out


def _copy(item: Dataset) -> Dataset:
    copy = Dataset()
    for elem in item:
        copy.add(elem)
    return copy


def needs_unicode(ds: Dataset) -> bool:
    """True when any text value in the dataset is not plain ASCII."""
    for elem in ds.iterall():
        if elem.VR in ("PN", "LO", "SH", "ST", "LT", "UT", "UC") and elem.value is not None:
            if not str(elem.value).isascii():
                return True
    return False
