"""The mapping bench: what a pasted HL7 order would become on the worklist, each DICOM
attribute with the HL7 address (and mapping file line) it came from, and the errors it would
get. Reads the message and the mappings only; nothing is stored."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from broker.domain.records import OrderRequest, ProcedureRequest, StepRequest

from broker.hl7 import ack
from broker.hl7.fields import FieldError
from broker.hl7.handlers import HANDLERS, read_order_message
from broker.hl7.intake import Failed, IntakeContext, Rejected
from broker.hl7.message import Hl7ParseError, Message
from broker.hl7.orders import OrderGroup, OrderReader, order_groups
from broker.mapping.site import SiteMappings

ORDER_TYPES = ("ORM^O01", "OMI^O23", "OMG^O19")


@dataclass(frozen=True)
class Attribute:
    keyword: str   # DICOM keyword, as PS3.6 spells it
    value: str
    source: str    # HL7 address, mapping file and line, or the rule that filled it


@dataclass
class BenchResult:
    items: list[list[Attribute]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    message_type: str = ""


def mapping_line(folder: Path, mappings: SiteMappings, name: str, version: str,
                 sender_key: str | None) -> str:
    """'hl7_fields.toml:12' (or senders.toml) where `name`'s addresses for this message are set."""
    if sender_key:
        path, header = folder / "senders.toml", f'[senders."{sender_key}".fields]'
    else:
        table = next((key for key in (version, version[:3])
                      if name in mappings.version_fields.get(key, {})), None)
        path = folder / "hl7_fields.toml"
        header = f'[version."{table}"]' if table else "[fields]"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return path.name
    start = next((n for n, line in enumerate(lines) if line.strip().startswith(header)), 0)
    for number in range(start, len(lines)):
        if lines[number].split("=")[0].strip() == name:
            return f"{path.name}:{number + 1}"
    return path.name


_PID_SOURCES = {"name": "PID-5 (XPN as PN)",
                "identifiers": "PID-3 (first identifier, hl7.patient_id_issuer first)",
                "issuer": "PID-3.4", "birth_date": "PID-7", "sex": "PID-8"}


class _Sources:
    """Where each mapped name was read for one step (order group and IPC)."""

    def __init__(self, msg: Message, ctx: IntakeContext, folder: Path, group: OrderGroup | None,
                 ipc: list[str] | None) -> None:
        self.reader, self.group, self.ipc = OrderReader(msg, ctx.mappings), group, ipc
        self.folder, self.mappings, self.version = folder, ctx.mappings, msg.version
        sender = self.reader.sender
        self.sender_key = next((key for key, value in ctx.mappings.senders.items()
                                if value is sender), None) if sender else None

    def patient(self, name: str) -> str:
        """Where a patient value comes from: fixed PID fields in the HL7 reader."""
        return _PID_SOURCES[name]

    def of(self, name: str, otherwise: str) -> str:
        if self.group is None:
            return otherwise
        value, address = self.reader.located(name, self.group, self.ipc)
        if not address:
            return otherwise
        overridden = self.sender_key if self.reader.sender and name in self.reader.sender.fields \
            else None
        return f"{address} ({mapping_line(self.folder, self.mappings, name, self.version, overridden)})"


def _dicom_date(value: datetime | None) -> tuple[str, str]:
    return (value.strftime("%Y%m%d"), value.strftime("%H%M%S")) if value else ("", "")


def try_order(text: str, ctx: IntakeContext, folder: Path) -> BenchResult:
    """Read a pasted order as the intake would, and describe the worklist items it yields."""
    result = BenchResult()
    raw = text.strip().replace("\r\n", "\r").replace("\n", "\r")
    try:
        msg = Message(raw)
    except Hl7ParseError as exc:
        result.errors.append(f"not readable HL7: {exc} (the sender would get AR)")
        return result
    result.message_type = msg.message_type
    if msg.version not in ack.SUPPORTED_VERSIONS:
        result.errors.append(f"HL7 version {msg.version!r} is not supported (AR)")
    if msg.message_type not in ORDER_TYPES:
        known = "a known" if msg.message_type in HANDLERS else "an unknown"
        result.errors.append(f"{msg.message_type} is {known} message type but not an order: "
                             "the bench shows orders only")
        return result
    try:
        orders = read_order_message(msg, ctx)
    except (FieldError, Failed, Rejected, ValueError) as exc:
        result.errors.append(f"{exc} (the sender would get AE)")
        return result
    places = [(g, ipc) for g in order_groups(msg) for ipc in (g.ipcs or [None])]
    steps = [(control, request, proc, step) for control, request in orders
             for proc in request.procedures for step in proc.steps]
    for n, (control, request, proc, step) in enumerate(steps):
        group, ipc = places[n] if len(places) == len(steps) else (None, None)
        result.items.append(item_attributes(_Sources(msg, ctx, folder, group, ipc), ctx,
                                            control, request, proc, step))
    return result


def item_attributes(src, ctx: IntakeContext, control: str, request: OrderRequest,
                    proc: ProcedureRequest, step: StepRequest) -> list[Attribute]:
    """One worklist item's DICOM attributes; `src.of(name, otherwise)` says where each
    mapped value was read (an HL7 address or a FHIRPath expression, with its file line)."""
    patient = request.patient
    definition = ctx.mappings.procedures.get(proc.code_value)
    table = f"procedures.toml: {proc.code_value}" if definition else "not in procedures.toml"
    start_date, start_time = _dicom_date(step.start)
    A = Attribute
    return [
        A("(order control)", control, src.of("order_control", "ORC-1")),
        A("PatientName", patient.name.dicom(), src.patient("name")),
        A("PatientID", patient.primary.value, src.patient("identifiers")),
        A("IssuerOfPatientID", patient.primary.issuer, src.patient("issuer")),
        A("PatientBirthDate", patient.birth_date, src.patient("birth_date")),
        A("PatientSex", patient.sex, src.patient("sex")),
        # IHE RAD-4 v2.5.1: each requested procedure may carry its own accession (IPC-1).
        A("AccessionNumber", proc.accession_number or request.accession_number,
          src.of("accession_number", "not sent")),
        A("IssuerOfAccessionNumberSequence", proc.accession_issuer or request.accession_issuer,
          "namespace of the accession (EI component 2)"),
        A("PlacerOrderNumberImagingServiceRequest", request.placer_order_number,
          src.of("placer_order_number", "")),
        A("FillerOrderNumberImagingServiceRequest", request.filler_order_number,
          src.of("filler_order_number", "not sent")),
        A("ReferringPhysicianName", request.referring_physician,
          src.of("referring_physician", "not sent")),
        A("RequestedProcedurePriority", request.priority, src.of("priority", "not sent")),
        A("ReasonForTheRequestedProcedure", request.reason, src.of("reason", "not sent")),
        A("RequestedProcedureID", proc.procedure_id,
          src.of("requested_procedure_id", "accession number, else placer order number")),
        A("RequestedProcedureCodeSequence", "^".join(filter(None, (proc.code_value, proc.code_scheme,
                                                                    proc.code_meaning))),
          src.of("procedure_code", "not sent")),
        A("RequestedProcedureDescription", proc.code_meaning,
          src.of("procedure_code", table) + (f"; else {table}" if definition else "")),
        A("StudyInstanceUID", proc.study_instance_uid or "(generated when stored)",
          src.of("study_instance_uid", f"hl7.study_uid_policy = {ctx.study_uid_policy!r}")),
        A("Modality", step.modality, src.of("modality", table)),
        A("ScheduledStationAETitle", "\\".join(step.station_ae_titles),
          src.of("station_ae_title", f"stations.toml rule, else {table}")),
        A("ScheduledStationName", step.station_name, src.of("station_name", table)),
        A("ScheduledProcedureStepLocation", step.location, src.of("location", "not sent")),
        A("ScheduledProcedureStepStartDate", start_date, src.of("start", "not sent")),
        A("ScheduledProcedureStepStartTime", start_time, src.of("start", "not sent")),
        A("ScheduledProcedureStepEndDate", _dicom_date(step.end)[0],
          src.of("end", "start + procedures.toml duration_minutes")),
        A("ScheduledPerformingPhysicianName", step.performing_physician,
          src.of("performing_physician", "not sent")),
        A("ScheduledProcedureStepID", step.step_id, src.of("step_id", "requested procedure ID")),
        A("ScheduledProcedureStepDescription", step.description,
          src.of("protocol_code", "requested procedure description")),
        A("ScheduledProcedureStepStatus", "SCHEDULED", "new step"),
    ]
