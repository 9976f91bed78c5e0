"""A ServiceRequest and its subject Patient read into the broker's records (no I/O).

Values come from mappings/fhir.toml; the defaults follow the HL7 Imaging ServiceRequest IG.
ServiceRequest.status (FHIR R4 value set request-status) says what the order asks for.
"""
from __future__ import annotations

from dataclasses import dataclass

from broker.domain.records import (
    Identifier, OrderRequest, PatientRecord, PersonName, ProcedureRequest, StepRequest,
)
from broker.domain.schedule import scheduled_end
from broker.fhir.mapping import FhirMapping, evaluate, parse_fhir_datetime
from broker.mapping.procedures import ProcedureDefinition
from broker.mapping.site import SiteMappings

# FHIR request-priority -> DICOM Requested Procedure Priority (0040,1003).
_PRIORITIES = {"routine": "ROUTINE", "urgent": "HIGH", "asap": "HIGH", "stat": "STAT"}
# FHIR administrative-gender -> DICOM Patient's Sex (0010,0040).
_SEXES = {"male": "M", "female": "F", "other": "O", "unknown": ""}
# request-status -> what the broker does: schedule (create or change), hold, cancel; the rest
# (draft, completed, unknown) is left alone: a completed order is the modality's news, not ours.
ACTIONS = {"active": "schedule", "on-hold": "hold", "revoked": "cancel",
           "entered-in-error": "cancel"}


class UnmappableOrder(ValueError):
    """The ServiceRequest cannot become an order; the message says why."""


@dataclass(frozen=True)
class FhirOrder:
    """What one ServiceRequest version asks the broker to do."""
    action: str              # schedule, hold, cancel or ignore
    status: str              # the ServiceRequest status as sent
    request: OrderRequest | None


def subject_reference(resource: dict, mapping: FhirMapping) -> str:
    """The ServiceRequest's subject reference ("Patient/123"), or ""."""
    found = evaluate(mapping.order.get("subject", ()), resource, {})
    return str(found[0]) if found else ""


def requester_reference(resource: dict) -> str:
    """The requester reference when it is a Practitioner, else ""."""
    reference = (resource.get("requester") or {}).get("reference", "")
    return reference if "Practitioner/" in reference else ""


def study_uid(resource: dict, mapping: FhirMapping) -> str:
    """The Study Instance UID the ServiceRequest (or an ImagingStudy) carries, or ""."""
    found = evaluate(mapping.order.get("study_instance_uid", ()), resource, {})
    uid = str(found[0]) if found and not isinstance(found[0], dict) else ""
    return uid[len("urn:oid:"):] if uid.startswith("urn:oid:") else uid


def read_service_request(resource: dict, patient: dict | None, mapping: FhirMapping,
                         site: SiteMappings, requester: dict | None = None,
                         patient_id_issuer: str = "",
                         imaging_study: dict | None = None) -> FhirOrder:
    """The action and order a ServiceRequest version asks for; UnmappableOrder says why not.
    `imaging_study`: the ImagingStudy registered for the order (basedOn), whose identifier
    gives the Study Instance UID when the ServiceRequest has none."""
    status = str(resource.get("status", ""))
    action = ACTIONS.get(status, "ignore")
    if action == "ignore":
        return FhirOrder(action, status, None)
    context = {"patient": patient or {}, "requester": requester or {}}
    value = lambda name: _first(mapping, name, resource, context)  # noqa: E731
    placer = value("placer_order_number")
    if not placer:
        raise UnmappableOrder("no placer order number (identifier of type PLAC)")
    if action == "cancel":
        # A cancellation names the order; it needs neither patient nor a known code.
        return FhirOrder(action, status, OrderRequest(
            patient=PatientRecord(identifiers=()), placer_order_number=placer[:64],
            placer_issuer=mapping.issuer(value("placer_issuer"))))
    if patient is None:
        raise UnmappableOrder(f"subject {subject_reference(resource, mapping) or '(none)'} "
                              "does not resolve to a Patient")
    record = read_patient(patient, mapping, patient_id_issuer)
    accession = value("accession_number")[:16]
    definition, code, scheme, meaning = _procedure(resource, mapping, site)
    start = _time(value("start"), "start")
    end = scheduled_end(start, _time(value("end"), "end"), definition.duration_minutes)
    step_id = (accession or placer)[:16]
    modality = definition.modality
    location = value("location")
    titles, station_name = definition.station_ae_titles, definition.station_name
    rule = site.station(modality, definition.code, location, "")
    if rule is not None:
        titles, station_name = rule.station_ae_titles, rule.station_name or station_name
    uid = study_uid(resource, mapping) or (study_uid(imaging_study, mapping)
                                           if imaging_study else "")
    step = StepRequest(step_id=step_id, modality=modality[:16], station_ae_titles=titles,
                       station_name=station_name[:64], location=location[:64], start=start,
                       end=end, description=(meaning or definition.meaning)[:64])
    procedure = ProcedureRequest(procedure_id=step_id, code_value=code[:64],
                                 code_scheme=scheme[:64],
                                 code_meaning=(meaning or definition.meaning)[:64],
                                 study_instance_uid=uid[:64], steps=(step,))
    return FhirOrder(action, status, OrderRequest(
        patient=record, placer_order_number=placer[:64],
        placer_issuer=mapping.issuer(value("placer_issuer")),
        filler_order_number=value("filler_order_number")[:64],
        filler_issuer=mapping.issuer(value("filler_issuer")),
        accession_number=accession, accession_issuer=mapping.issuer(value("accession_issuer")),
        priority=_PRIORITIES.get(value("priority").lower(), ""),
        referring_physician=_person(evaluate(mapping.order.get("referring_physician", ()),
                                             resource, context)),
        reason=value("reason"), procedures=(procedure,)))


def read_patient(patient: dict, mapping: FhirMapping, patient_id_issuer: str = "") -> PatientRecord:
    """The Patient as a PatientRecord; the configured issuer's identifier comes first."""
    identifiers = []
    for found in evaluate(mapping.patient["identifiers"], patient, {}):
        if not isinstance(found, dict) or not found.get("value"):
            continue
        codings = (found.get("type") or {}).get("coding") or [{}]
        identifiers.append(Identifier(str(found["value"])[:64],
                                      mapping.issuer(str(found.get("system", ""))),
                                      str(codings[0].get("code", ""))[:16]))
    if not identifiers:
        raise UnmappableOrder(f"Patient/{patient.get('id', '?')} has no identifier")
    wanted = mapping.patient_id_issuer or patient_id_issuer
    # The patient ID: the configured issuer's identifier, else the medical record number
    # (identifier type MR, HL7 table 0203), else the first.
    identifiers.sort(key=lambda i: (bool(wanted) and i.issuer != wanted, i.type_code != "MR"))
    value = lambda name: _first(mapping, name, patient, {}, "patient")  # noqa: E731
    birth = value("birth_date")
    return PatientRecord(
        identifiers=tuple(identifiers),
        name=PersonName(family=value("family")[:64], given=value("given")[:64],
                        middle=value("middle")[:64]),
        birth_date=birth[:10].replace("-", "") if len(birth) >= 10 else "",
        sex=_SEXES.get(value("sex").lower(), ""),
        address=_address(evaluate(mapping.patient.get("address", ()), patient, {})),
        phone=value("phone")[:64])


def _first(mapping: FhirMapping, name: str, resource: dict, context: dict,
           section: str = "order") -> str:
    table = mapping.order if section == "order" else mapping.patient
    found = evaluate(table.get(name, ()), resource, context)
    return str(found[0]).strip() if found and not isinstance(found[0], dict) else ""


def _procedure(resource: dict, mapping: FhirMapping,
               site: SiteMappings) -> tuple[ProcedureDefinition, str, str, str]:
    """The first coding found in procedures.toml (else the mapping's default code)."""
    codings = [c for c in evaluate(mapping.order["procedure_codes"], resource, {})
               if isinstance(c, dict) and c.get("code")]
    for coding in codings:
        definition = site.procedures.get(str(coding["code"]))
        if definition is not None:
            return (definition, str(coding["code"]), str(coding.get("system", "")),
                    str(coding.get("display", "")))
    if mapping.default_procedure and mapping.default_procedure in site.procedures:
        first = codings[0] if codings else {}
        return (site.procedures[mapping.default_procedure],
                str(first.get("code", mapping.default_procedure)), str(first.get("system", "")),
                str(first.get("display", "")))
    codes = ", ".join(str(c["code"]) for c in codings) or "(none)"
    raise UnmappableOrder(f"procedure code {codes} is not in procedures.toml and there is no "
                          "default")


def _time(value: str, name: str):
    if not value:
        return None
    try:
        return parse_fhir_datetime(value)
    except ValueError:
        raise UnmappableOrder(f"{name} {value!r} is not a FHIR dateTime") from None


def _person(found: list) -> str:
    """A HumanName as a DICOM PN (family^given^middle^prefix^suffix), or a display string."""
    if not found:
        return ""
    name = found[0]
    if isinstance(name, dict):
        given = [str(g) for g in name.get("given", [])]
        parts = [str(name.get("family", "")), given[0] if given else "", " ".join(given[1:]),
                 " ".join(name.get("prefix", [])), " ".join(name.get("suffix", []))]
        while parts and not parts[-1]:
            parts.pop()
        return "^".join(parts)[:324]
    return str(name)[:324]


def _address(found: list) -> str:
    """A FHIR Address as street^city^state^postal code, empty parts left out."""
    if not found or not isinstance(found[0], dict):
        return ""
    address = found[0]
    parts = [" ".join(address.get("line", [])), address.get("city", ""),
             address.get("state", ""), address.get("postalCode", "")]
    return "^".join(str(p) for p in parts if p)[:255]
