"""Modality Worklist: a C-FIND identifier becomes one SQL query (PS3.4 K.6, C.2.2.2).

The query selects plain columns (no ORM objects per row); response items are built from those
rows by broker.dicom.items.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Iterator

from pydicom.dataset import Dataset
from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select, true
from sqlalchemy.orm import Session

from broker.config import WorklistSettings
from broker.dicom.query_match import (
    InvalidQuery, date_time_bounds, dt_bounds, match_any, match_date_string,
    match_datetime_range, match_string, match_time_of_day,
)
from broker.dicom.query_keys import (
    LIST_VRS, check_structure, name_groups, sequence_item, single, values,
)
from broker.dicom.rules import AeRule, parse_rules
from broker.store.models import (
    Order, Patient, PatientIdentifier, RequestedProcedure, ScheduledStep, StepStationAE,
)

SPS = "ScheduledProcedureStepSequence"


@dataclass(frozen=True)
class QueryContext:
    """What besides the identifier shapes a query: settings, who asks, and today's date."""
    settings: WorklistSettings
    calling_ae: str = ""
    today: date = field(default_factory=date.today)

    @property
    def rule(self) -> AeRule | None:
        rules = parse_rules(self.settings.calling_ae_rules)
        return rules.get(self.calling_ae) or rules.get("*")


def _primary(column: Any) -> Any:
    """A patient's first identifier (what the worklist shows as PatientID), as a subquery."""
    return (select(column).where(PatientIdentifier.patient_id == Patient.id)
            .order_by(PatientIdentifier.id).limit(1).correlate(Patient).scalar_subquery())


COLUMNS = {
    "step_pk": ScheduledStep.id, "step_id": ScheduledStep.step_id,
    "modality": ScheduledStep.modality, "station_ae_title": ScheduledStep.station_ae_title,
    "station_name": ScheduledStep.station_name, "location": ScheduledStep.location,
    "start_at": ScheduledStep.start_at, "end_at": ScheduledStep.end_at,
    "performing_physician": ScheduledStep.performing_physician,
    "description": ScheduledStep.description, "protocol_codes": ScheduledStep.protocol_codes,
    "status": ScheduledStep.status, "extra": ScheduledStep.extra,
    "procedure_id": RequestedProcedure.procedure_id, "code_value": RequestedProcedure.code_value,
    "code_scheme": RequestedProcedure.code_scheme, "code_meaning": RequestedProcedure.code_meaning,
    "study_instance_uid": RequestedProcedure.study_instance_uid,
    "accession_number": RequestedProcedure.accession_number,
    "accession_issuer": RequestedProcedure.accession_issuer, "priority": Order.priority,
    "referring_physician": Order.referring_physician, "reason": Order.reason,
    "placer_order_number": Order.placer_order_number,
    "filler_order_number": Order.filler_order_number,
    "patient_name": Patient.name, "birth_date": Patient.birth_date, "sex": Patient.sex,
    "patient_id": _primary(PatientIdentifier.value),
    "issuer": _primary(PatientIdentifier.issuer),
}

# Top-level string keys: (column, upper-case comparison).
_TOP_STRINGS = {
    "AccessionNumber": RequestedProcedure.accession_number,
    "RequestedProcedureID": RequestedProcedure.procedure_id,
    "PlacerOrderNumberImagingServiceRequest": Order.placer_order_number,
    "FillerOrderNumberImagingServiceRequest": Order.filler_order_number,
    "RequestedProcedureDescription": RequestedProcedure.code_meaning,
    "StudyInstanceUID": RequestedProcedure.study_instance_uid,
    "PatientSex": Patient.sex,
    "RequestedProcedurePriority": Order.priority,
}
_SPS_STRINGS = {
    "Modality": ScheduledStep.modality,
    "ScheduledProcedureStepID": ScheduledStep.step_id,
    "ScheduledStationName": ScheduledStep.station_name,
    "ScheduledProcedureStepLocation": ScheduledStep.location,
    "ScheduledProcedureStepDescription": ScheduledStep.description,
}


def build_query(identifier: Dataset, settings: WorklistSettings | QueryContext) -> Select:
    """The SQL query answering `identifier`; InvalidQuery when the identifier is not valid."""
    context = settings if isinstance(settings, QueryContext) else QueryContext(settings)
    check_structure(identifier)
    stmt = (select(*(column.label(name) for name, column in COLUMNS.items()))
            .select_from(ScheduledStep)
            .join(RequestedProcedure, ScheduledStep.requested_procedure_id == RequestedProcedure.id)
            .join(Order, RequestedProcedure.order_id == Order.id)
            .join(Patient, Order.patient_id == Patient.id))
    conditions = _patient_conditions(identifier, context.settings)
    for keyword, column in _TOP_STRINGS.items():
        conditions += _string_condition(identifier, keyword, column)
    birth = single(identifier, "PatientBirthDate")
    if birth:
        with about("PatientBirthDate"):
            conditions.append(match_date_string(Patient.birth_date, birth))
    referring = single(identifier, "ReferringPhysicianName")
    if referring:
        conditions.append(match_string(func.upper(Order.referring_physician), referring, upper=True))
    code = sequence_item(identifier, "RequestedProcedureCodeSequence")
    if code is not None:
        conditions += _string_condition(code, "CodeValue", RequestedProcedure.code_value)
        conditions += _string_condition(code, "CodingSchemeDesignator", RequestedProcedure.code_scheme)
    conditions += _step_conditions(sequence_item(identifier, SPS) or Dataset(), context)
    stmt = stmt.where(and_(*conditions)).order_by(ScheduledStep.start_at, ScheduledStep.id)
    if context.settings.max_results:
        stmt = stmt.limit(context.settings.max_results)
    return stmt


def _string_condition(ds: Dataset, keyword: str, column: Any) -> list[ColumnElement[bool]]:
    """Single value, wild card, or (for CS/AE/UI) any-of list matching of one key."""
    found = values(ds, keyword)
    if not found:
        return []
    vr = ds[keyword].VR
    if len(found) > 1 and vr not in LIST_VRS:
        raise InvalidQuery(f"{keyword} takes a single value, got {len(found)}")
    return [match_any(column, found, upper=vr == "CS")]


def _patient_conditions(identifier: Dataset, settings: WorklistSettings) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    name = single(identifier, "PatientName")
    if name:
        conditions.append(_name_condition(name, settings.case_insensitive_names))
    patient_id = single(identifier, "PatientID")
    issuer = single(identifier, "IssuerOfPatientID")
    if patient_id or issuer:
        # IN (subquery), not a correlated EXISTS: the planner can start from the identifier index.
        inner = []
        if patient_id:
            inner.append(match_string(PatientIdentifier.value, patient_id))
        if issuer:
            inner.append(match_string(PatientIdentifier.issuer, issuer))
        conditions.append(Patient.id.in_(select(PatientIdentifier.patient_id).where(*inner)))
    return conditions


def _name_condition(value: str, case_insensitive: bool) -> ColumnElement[bool]:
    """PN matching: the alphabetic group on the indexed upper-case key, other groups on the name."""
    alphabetic, ideographic, phonetic = name_groups(value)
    conditions = []
    if alphabetic and case_insensitive:
        conditions.append(match_string(Patient.name_key, alphabetic, upper=True, index_prefix=True))
    elif alphabetic:
        conditions.append(_group_condition(Patient.name, 0, alphabetic))
    for position, group in ((1, ideographic), (2, phonetic)):
        if group.strip("*"):
            conditions.append(_group_condition(Patient.name, position, group))
    return and_(true(), *conditions)


def _group_condition(column: Any, position: int, group: str) -> ColumnElement[bool]:
    """Match one PN component group of the stored 'alphabetic=ideographic=phonetic' value.

    Ideographic and phonetic groups are told apart by script, not position: a pattern for the
    second group may also meet the third, which differ in script (kanji vs kana) in practice.
    """
    pattern = ("*=" if position else "") + group
    return or_(match_string(column, pattern), match_string(column, pattern + "=*"))


def _step_conditions(sps: Dataset, context: QueryContext) -> list[ColumnElement[bool]]:
    settings, rule = context.settings, context.rule
    conditions: list[ColumnElement[bool]] = []
    statuses = [s.upper() for s in values(sps, "ScheduledProcedureStepStatus")]
    served = [s for s in settings.served_statuses if not statuses or s in statuses]
    conditions.append(ScheduledStep.status.in_(served) if served else ScheduledStep.id.is_(None))
    modality = values(sps, "Modality") or (list(rule.modalities) if rule else [])
    if modality:
        conditions.append(match_any(ScheduledStep.modality, modality, upper=True))
    for keyword, column in _SPS_STRINGS.items():
        if keyword != "Modality":
            conditions += _string_condition(sps, keyword, column)
    stations = values(sps, "ScheduledStationAETitle") or (
        rule.stations_for(context.calling_ae) if rule else [])
    if stations:  # multi-valued stored attribute: any stored title may match (C.2.2.2.2)
        conditions.append(_station_condition(stations, dated=bool(
            single(sps, "ScheduledProcedureStepStartDate") or settings.days_ahead >= 0)))
    performer = single(sps, "ScheduledPerformingPhysicianName")
    if performer:
        conditions.append(match_string(func.upper(ScheduledStep.performing_physician),
                                       performer, upper=True))
    conditions += _start_conditions(sps, context)
    return conditions


def _station_condition(stations: list[str], dated: bool) -> ColumnElement[bool]:
    """Station AE title matching, shaped so the planner starts from the selective side.

    With a start date the date range is the narrow one (a day of a station's items out of its
    whole history), so the title is a correlated probe of each step in range; without one, the
    step ids come from the title index.
    """
    match = match_any(StepStationAE.ae_title, stations)
    if dated:
        return exists().where(StepStationAE.step_id == ScheduledStep.id, match)
    return ScheduledStep.id.in_(select(StepStationAE.step_id).where(match))


def _start_conditions(sps: Dataset, context: QueryContext) -> list[ColumnElement[bool]]:
    """Start date/time (C.2.2.2.5 combined range), a DT key, and the configured date window."""
    column = ScheduledStep.start_at
    day, tm = single(sps, "ScheduledProcedureStepStartDate"), single(sps, "ScheduledProcedureStepStartTime")
    conditions = []
    with about("ScheduledProcedureStepStartDate/Time"):
        if day:
            conditions.append(match_datetime_range(column, *date_time_bounds(day, tm)))
        elif tm:
            conditions.append(match_time_of_day(column, tm))
    when = single(sps, "ScheduledProcedureStepStartDateTime")
    if when:
        with about("ScheduledProcedureStepStartDateTime"):
            conditions.append(match_datetime_range(column, *dt_bounds(when)))
    settings = context.settings
    midnight = datetime.combine(context.today, datetime.min.time())
    if settings.days_behind >= 0:
        conditions.append(column >= midnight - timedelta(days=settings.days_behind))
    if settings.days_ahead >= 0:
        conditions.append(column < midnight + timedelta(days=settings.days_ahead + 1))
    return conditions


@contextmanager
def about(keyword: str) -> Iterator[None]:
    """Name the key in an InvalidQuery raised while reading its value."""
    try:
        yield
    except InvalidQuery as exc:
        raise InvalidQuery(f"{keyword}: {exc}", exc.status) from None


def find_rows(session: Session, identifier: Dataset, context: QueryContext) -> list[Any]:
    """The worklist rows (plain column tuples) matching `identifier`, in start order."""
    return list(session.execute(build_query(identifier, context)).mappings())
