"""ORM^O01 (IHE RAD-2/RAD-4, v2.3.1 and v2.4) read into OrderRequests."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from broker.domain.records import (
    OrderRequest, PatientRecord, ProcedureRequest, StepRequest,
)
from broker.hl7.fields import (
    FieldError, cx_list, dicom_priority, dicom_sex, parse_date, parse_ts, xcn_as_pn, xpn,
)
from broker.hl7.message import Message
from broker.mapping.procedures import ProcedureDefinition


@dataclass(frozen=True)
class OrderGroup:
    """One ORC with its OBR (and ZDS): one requested procedure."""
    control: str        # ORC-1
    orc: list[str]
    obr: list[str] | None
    zds: list[str] | None


def order_groups(msg: Message) -> list[OrderGroup]:
    """Split the message into ORC/OBR groups, in order."""
    groups: list[OrderGroup] = []
    orc = obr = zds = None
    for name, fields in msg.segments:
        if name == "ORC":
            if orc is not None:
                groups.append(OrderGroup(msg.field(orc, 1), orc, obr, zds))
            orc, obr, zds = fields, None, None
        elif name == "OBR" and orc is not None and obr is None:
            obr = fields
        elif name == "ZDS" and orc is not None:
            zds = fields
    if orc is not None:
        groups.append(OrderGroup(msg.field(orc, 1), orc, obr, zds))
    return groups


def read_patient(msg: Message, patient_id_issuer: str = "") -> PatientRecord:
    """PID as a PatientRecord; the configured issuer's identifier comes first."""
    pid = msg.segment("PID")
    if pid is None:
        raise FieldError("PID segment is missing")
    identifiers = cx_list(msg, pid, 3)
    if not identifiers:
        raise FieldError("PID-3 patient identifier is empty")
    if patient_id_issuer:
        identifiers.sort(key=lambda i: i.issuer != patient_id_issuer)
    return PatientRecord(
        identifiers=tuple(identifiers),
        name=xpn(msg, pid, 5),
        birth_date=parse_date(msg.field(pid, 7), "PID-7"),
        sex=dicom_sex(msg.field(pid, 8)),
        address="^".join(filter(None, (msg.field(pid, 11, comp=c) for c in (1, 3, 4, 5)))),
        phone=msg.field(pid, 13),
    )


def read_order(msg: Message, group: OrderGroup, procedures: dict[str, ProcedureDefinition],
               patient_id_issuer: str = "") -> OrderRequest:
    """One ORC/OBR group as an OrderRequest with one requested procedure and its step."""
    orc, obr = group.orc, group.obr
    if obr is None:
        raise FieldError("ORC without an OBR segment")
    placer = msg.field(orc, 2) or msg.field(obr, 2)
    placer_issuer = msg.field(orc, 2, comp=2) or msg.field(obr, 2, comp=2)
    if not placer:
        raise FieldError("ORC-2/OBR-2 placer order number is empty")
    accession = msg.field(obr, 18)
    code = msg.field(obr, 4, comp=1)
    definition = procedures.get(code, ProcedureDefinition(code=code))
    start = _start_time(msg, orc, obr)
    procedure_id = msg.field(obr, 19) or accession or placer
    description = msg.field(obr, 4, comp=2) or definition.meaning
    step = StepRequest(
        step_id=(msg.field(obr, 20) or procedure_id)[:16],
        modality=msg.field(obr, 24) or definition.modality,
        station_ae_titles=definition.station_ae_titles,
        station_name=definition.station_name,
        location=msg.field(msg.segment("PV1"), 3),
        start=start,
        performing_physician=xcn_as_pn(msg, obr, 34),
        description=description,
    )
    pv1 = msg.segment("PV1")
    referring = xcn_as_pn(msg, pv1, 8) or xcn_as_pn(msg, orc, 12) or xcn_as_pn(msg, obr, 16)
    priority = msg.field(orc, 7, comp=6) or msg.field(obr, 27, comp=6) or msg.field(obr, 5)
    return OrderRequest(
        patient=read_patient(msg, patient_id_issuer),
        placer_order_number=placer, placer_issuer=placer_issuer,
        filler_order_number=msg.field(orc, 3) or msg.field(obr, 3),
        filler_issuer=msg.field(orc, 3, comp=2) or msg.field(obr, 3, comp=2),
        accession_number=accession[:16],
        priority=dicom_priority(priority),
        referring_physician=referring,
        reason=msg.field(obr, 31, comp=2) or msg.field(obr, 31, comp=1),
        procedures=(ProcedureRequest(
            procedure_id=procedure_id[:16], code_value=code,
            code_scheme=msg.field(obr, 4, comp=3), code_meaning=description,
            study_instance_uid=msg.field(group.zds, 1), steps=(step,)),),
    )


def _start_time(msg: Message, orc: list[str], obr: list[str]) -> datetime | None:
    for where, seg, number in (("ORC-7.4", orc, 7), ("OBR-27.4", obr, 27)):
        value = msg.field(seg, number, comp=4)
        if value:
            return parse_ts(value, where)
    return parse_ts(msg.field(obr, 36), "OBR-36")
