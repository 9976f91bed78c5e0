"""The FHIR R4 resources the EHR is told with, built from plain values: no I/O, no database.

A notification is planned in the transaction of its cause (what to write, and how delivery
finds the ServiceRequest and Patient it refers to) and completed at delivery, when those are
known (with_references). Plain dicts: the broker does not depend on a FHIR model library; the
tests check the shapes against the server and, where installed, fhir.resources.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

FHIR_KIND = "fhir"
DICOM_UID_SYSTEM = "urn:dicom:uid"  # FHIR R4 ImagingStudy.identifier: urn:oid:<Study Instance UID>
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
TASK_CODES = "http://hl7.org/fhir/CodeSystem/task-code"
# The broker's Task of a ServiceRequest is found again by this identifier (value: the
# ServiceRequest's id), so a status change updates it instead of adding another.
TASK_SYSTEM = "urn:broker:fhir:task"

IMAGING_STUDY, TASK, REQUEST_STATUS = "imaging-study", "task", "request-status"
WRITES = {IMAGING_STUDY: "ImagingStudy", TASK: "Task", REQUEST_STATUS: "ServiceRequest.status"}
# ORC-5 code -> FHIR R4 task-status; -> request-status (IP: the request simply stays active).
TASK_STATUSES = {"IP": "in-progress", "CM": "completed", "DC": "cancelled"}
REQUEST_STATUSES = {"CM": "completed", "DC": "revoked"}
_BUSINESS = {"IP": "exam started", "CM": "exam completed", "DC": "exam discontinued"}


@dataclass(frozen=True)
class Links:
    """How delivery finds what a write refers to: known references (an order that came as a
    ServiceRequest), else identifier tokens ("system|value") to search by, tried in order."""
    service_request: str = ""
    patient: str = ""
    request_identifiers: tuple[str, ...] = ()
    patient_identifiers: tuple[str, ...] = ()


@dataclass(frozen=True)
class StudyFacts:
    """What the broker knows about a study when it becomes available."""
    study_instance_uid: str
    accession_number: str = ""
    accession_system: str = ""
    modality: str = ""
    started: datetime | None = None  # naive local time, as DICOM DA/TM are
    series: int | None = None
    instances: int | None = None
    description: str = ""


@dataclass(frozen=True)
class Planned:
    """One outbox row's payload: what to write, its links, the resource without them."""
    write: str
    order_id: int
    links: Links = field(default_factory=Links)
    resource: dict = field(default_factory=dict)
    status: str = ""  # REQUEST_STATUS: the ServiceRequest status to set


def encode(planned: Planned) -> bytes:
    """The outbox payload (JSON, UTF-8)."""
    return json.dumps(asdict(planned), separators=(",", ":"), sort_keys=True).encode()


def decode(payload: bytes) -> Planned:
    """The Planned of an outbox payload; ValueError when it is not one."""
    data = json.loads(payload)
    if data.get("write") not in WRITES:
        raise ValueError(f"unknown FHIR write {data.get('write')!r}")
    links = data.get("links") or {}
    return Planned(write=data["write"], order_id=int(data.get("order_id") or 0),
                   links=Links(str(links.get("service_request", "")),
                               str(links.get("patient", "")),
                               tuple(links.get("request_identifiers") or ()),
                               tuple(links.get("patient_identifiers") or ())),
                   resource=data.get("resource") or {}, status=str(data.get("status", "")))


def describe(payload: bytes) -> str:
    """What a FHIR row writes ("ImagingStudy", "Task", ...), for listings; "?" if unreadable."""
    try:
        return WRITES[decode(payload).write]
    except (ValueError, KeyError, TypeError):
        return "?"


def token(system: str, value: str) -> str:
    """A FHIR token search value, system|value (R4 3.1.1.5.5), with the search's special
    characters (\\ | , $) escaped."""
    def escape(text: str) -> str:
        for char in ("\\", "|", ",", "$"):
            text = text.replace(char, "\\" + char)
        return text
    return f"{escape(system)}|{escape(value)}"


def study_identifier(study_instance_uid: str) -> str:
    """The token an ImagingStudy is found again by."""
    return token(DICOM_UID_SYSTEM, f"urn:oid:{study_instance_uid}")


def fhir_datetime(value: datetime) -> str:
    """A FHIR dateTime with its offset (R4 requires one when a time is given); a naive value
    is the site's local time."""
    aware = value if value.tzinfo is not None else value.astimezone()
    return aware.isoformat(timespec="seconds")


def fhir_instant(value: datetime) -> str:
    """A FHIR instant in UTC; a naive value is UTC (the broker's record-keeping times)."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    return aware.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def imaging_study(facts: StudyFacts) -> dict:
    """ImagingStudy status available, without subject and basedOn (added at delivery)."""
    identifiers: list[dict] = [{"use": "official", "system": DICOM_UID_SYSTEM,
                                "value": f"urn:oid:{facts.study_instance_uid}"}]
    if facts.accession_number:
        accession: dict = {"use": "usual",
                           "type": {"coding": [{"system": V2_0203, "code": "ACSN"}]},
                           "value": facts.accession_number}
        if facts.accession_system:
            accession["system"] = facts.accession_system
        identifiers.append(accession)
    study: dict = {"resourceType": "ImagingStudy", "status": "available",
                   "identifier": identifiers}
    if facts.modality:
        study["modality"] = [{"system": DCM, "code": facts.modality}]
    if facts.started is not None:
        study["started"] = fhir_datetime(facts.started)
    if facts.series is not None:
        study["numberOfSeries"] = facts.series
    if facts.instances is not None:
        study["numberOfInstances"] = facts.instances
    if facts.description:
        study["description"] = facts.description
    return study


def task(code: str, now: datetime, started: datetime | None = None,
         ended: datetime | None = None) -> dict:
    """The Task telling an order's progress (ORC-5 `code`: IP, CM, DC), without identifier and
    references (added at delivery); code "fulfill": the broker fulfils the ServiceRequest."""
    resource: dict = {"resourceType": "Task", "status": TASK_STATUSES[code], "intent": "order",
                      "code": {"coding": [{"system": TASK_CODES, "code": "fulfill"}]},
                      "businessStatus": {"text": _BUSINESS[code]},
                      "lastModified": fhir_instant(now)}
    if code == "DC":
        resource["statusReason"] = {"text": "discontinued at the modality (MPPS DISCONTINUED)"}
    period = {}
    if started is not None:
        period["start"] = fhir_datetime(started)
    if ended is not None and code != "IP":
        period["end"] = fhir_datetime(ended)
    if period:
        resource["executionPeriod"] = period
    return resource


def with_references(planned: Planned, service_request: str, patient: str) -> dict:
    """The planned resource completed with what delivery found ("" when not found)."""
    resource = dict(planned.resource)
    if planned.write == IMAGING_STUDY:
        if patient:
            resource["subject"] = {"reference": patient}
        if service_request:
            resource["basedOn"] = [{"reference": service_request}]
    elif planned.write == TASK:
        resource["identifier"] = [{"system": TASK_SYSTEM,
                                   "value": service_request.rpartition("/")[2]}]
        resource["basedOn"] = [{"reference": service_request}]
        resource["focus"] = {"reference": service_request}
        if patient:
            resource["for"] = {"reference": patient}
    return resource


def relative(reference: str, base_url: str) -> str:
    """An absolute reference on `base_url` as Type/id; other references as they are."""
    prefix = base_url.rstrip("/") + "/"
    return reference[len(prefix):] if reference.startswith(prefix) else reference
