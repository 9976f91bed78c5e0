"""Order messages (ORM^O01 v2.3.1/v2.4, OMI^O23 v2.5.1, OMG^O19) read into OrderRequests.

Each value is read where mappings/hl7_fields.toml (and the sender's override) says, following
IHE RAD TF-2 4.4: OBR-18/19/20/24 and ZDS-1 in v2.3.1, IPC-1..9 and TQ1-7/8/9 in v2.5.1.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from broker.domain.records import (
    Identifier, OrderRequest, PatientRecord, ProcedureRequest, StepRequest,
)
from broker.domain.schedule import scheduled_end
from broker.hl7.fields import (
    FieldError, cx_list, dicom_priority, dicom_sex, parse_date, parse_ts, xcn_as_pn, xpn,
)
from broker.hl7.message import Message
from broker.mapping.procedures import ProcedureDefinition
from broker.mapping.site import Address, SenderOverride, SiteMappings

# Segments read inside an order group; everything else is read from the message.
GROUP_SEGMENTS = ("ORC", "OBR", "TQ1", "ZDS")
# Person-name fields (XCN) are read as DICOM PN values, not as one component.
_PERSON_FIELDS = ("referring_physician", "performing_physician")


@dataclass
class OrderGroup:
    """One ORC with its OBR, TQ1, ZDS and IPC segments: one requested procedure."""
    control: str        # ORC-1
    orc: list[str]
    obr: list[str] | None = None
    zds: list[str] | None = None
    tq1: list[str] | None = None
    ipcs: list[list[str]] = field(default_factory=list)


def order_groups(msg: Message) -> list[OrderGroup]:
    """Split the message into ORC groups, in order (ORC starts a group; IPC may repeat)."""
    groups: list[OrderGroup] = []
    for name, fields in msg.segments:
        if name == "ORC":
            groups.append(OrderGroup(msg.field(fields, 1).upper(), fields))
        elif not groups:
            continue
        elif name == "OBR" and groups[-1].obr is None:
            groups[-1].obr = fields
        elif name == "ZDS" and groups[-1].zds is None:
            groups[-1].zds = fields
        elif name == "TQ1" and groups[-1].tq1 is None:
            groups[-1].tq1 = fields
        elif name == "IPC":
            groups[-1].ipcs.append(fields)
    return groups


class OrderReader:
    """Reads a message's mapped values for its sender and version."""

    def __init__(self, msg: Message, mappings: SiteMappings) -> None:
        self.msg = msg
        self.mappings = mappings
        self.version = msg.version
        self.sender: SenderOverride | None = mappings.sender(msg.sending_application,
                                                              msg.sending_facility)

    def _addresses(self, name: str) -> tuple[Address, ...]:
        return self.mappings.addresses(name, self.version, self.sender)

    def value(self, name: str, group: OrderGroup, ipc: list[str] | None = None) -> str:
        """The first non-empty value of `name` at its mapped addresses."""
        person = name in _PERSON_FIELDS
        for address in self._addresses(name):
            segment = self._segment(address, group, ipc)
            if segment is None:
                continue
            found = (xcn_as_pn(self.msg, segment, address.field) if person else
                     self.msg.field(segment, address.field, 1, address.component,
                                    address.subcomponent or 1))
            if found:
                return found
        return ""

    def located(self, name: str, group: OrderGroup,
                ipc: list[str] | None = None) -> tuple[str, str]:
        """Like value(), with the address it was read from ("" when none had a value)."""
        for address in self._addresses(name):
            found = self.msg.field(self._segment(address, group, ipc), address.field, 1,
                                   address.component, address.subcomponent or 1)
            if found:
                return found, str(address)
        return "", ""

    def identifier(self, name: str, group: OrderGroup,
                   ipc: list[str] | None = None) -> tuple[str, str]:
        """(value, namespace) of an EI value such as IPC-1's Accession Identifier (HL7 v2.5.1
        2.A.28: entity identifier, then namespace ID); namespace "" when the field has none."""
        for address in self._addresses(name):
            segment = self._segment(address, group, ipc)
            found = self.msg.field(segment, address.field, 1, address.component,
                                   address.subcomponent or 1)
            if found:
                namespace = self.msg.field(segment, address.field, 1, 2) \
                    if address.component == 1 and not address.subcomponent else ""
                return found, namespace
        return "", ""

    def coded(self, name: str, group: OrderGroup) -> list[str]:
        """The components of the first mapped CE field of `name` whose code is not empty."""
        for address in self._addresses(name):
            parts = self.msg.components(self._segment(address, group, None), address.field)
            if parts and parts[0]:
                return parts
        return []

    def _segment(self, address: Address, group: OrderGroup,
                 ipc: list[str] | None) -> list[str] | None:
        """The segment an address reads: the IPC, one of the order group's, or the
        message's first of that name."""
        if address.segment == "IPC":
            return ipc
        if address.segment in GROUP_SEGMENTS:
            return getattr(group, address.segment.lower())
        return self.msg.segment(address.segment)


def read_patient(msg: Message, patient_id_issuer: str = "", default_issuer: str = "",
                 pid: list[str] | None = None) -> PatientRecord:
    """PID as a PatientRecord; the configured issuer's identifier comes first (the patient ID)."""
    pid = pid if pid is not None else msg.segment("PID")
    if pid is None:
        raise FieldError("PID segment is missing")
    identifiers = [i if i.issuer or not default_issuer else
                   Identifier(i.value, default_issuer, i.type_code) for i in cx_list(msg, pid, 3)]
    if not identifiers:
        # v2.3.1 senders still use PID-2 (external patient ID) for the only identifier.
        identifiers = cx_list(msg, pid, 2)
    if not identifiers:
        raise FieldError("PID-3 patient identifier is empty")
    if patient_id_issuer:
        identifiers.sort(key=lambda i: i.issuer != patient_id_issuer)
    return PatientRecord(
        identifiers=tuple(identifiers),
        name=xpn(msg, pid, 5),
        birth_date=parse_date(msg.field(pid, 7), "PID-7"),
        sex=dicom_sex(msg.field(pid, 8)),
        address=_address(msg.components(pid, 11)),
        phone=msg.field(pid, 13),
    )


def _address(parts: list[str]) -> str:
    """PID-11 (XAD) as street^city^state^postal code, empty parts left out."""
    return "^".join(filter(None, (parts[i] for i in (0, 2, 3, 4) if i < len(parts))))


@dataclass(frozen=True)
class OrderPolicy:
    """How to fill what the order leaves out."""
    patient_id_issuer: str = ""
    study_uid_policy: str = "generate"   # generate | accession | reject
    uid_root: str = "1.2.826.0.1.3680043.10.1254."


def read_orders(msg: Message, groups: list[OrderGroup], mappings: SiteMappings,
                policy: OrderPolicy) -> list[tuple[str, OrderRequest]]:
    """(order control, OrderRequest) per placer order; groups sharing ORC-2 form one order."""
    reader = OrderReader(msg, mappings)
    sender = reader.sender
    issuer = sender.patient_id_issuer if sender and sender.patient_id_issuer is not None \
        else policy.patient_id_issuer
    patient = read_patient(msg, issuer, sender.default_issuer if sender else "")
    orders: dict[tuple[str, str], tuple[str, OrderRequest]] = {}
    for group in groups:
        control, request = group.control, read_order(reader, group, patient, policy)
        key = (request.placer_order_number, request.placer_issuer)
        if key in orders:
            first_control, first = orders[key]
            request = OrderRequest(**{**first.__dict__,
                                      "procedures": first.procedures + request.procedures})
            control = first_control
        orders[key] = (control, request)
    return list(orders.values())


def read_order(reader: OrderReader, group: OrderGroup, patient: PatientRecord,
               policy: OrderPolicy) -> OrderRequest:
    """One ORC group as an OrderRequest with its requested procedure(s) and steps."""
    if group.obr is None:
        raise FieldError("ORC without an OBR segment")
    # Order-level values an OMI carries in IPC are read from its first IPC (IHE RAD-4).
    first_ipc = group.ipcs[0] if group.ipcs else None
    value = lambda name: reader.value(name, group, first_ipc)  # noqa: E731 - reads like the mapping
    placer = value("placer_order_number")
    if not placer:
        raise FieldError("ORC-2/OBR-2 placer order number is empty")
    placer_issuer = reader.msg.field(group.orc, 2, comp=2) or reader.msg.field(group.obr, 2, comp=2)
    filler_issuer = reader.msg.field(group.orc, 3, comp=2) or reader.msg.field(group.obr, 3, comp=2)
    accession, accession_issuer = reader.identifier("accession_number", group, first_ipc)
    procedures = _procedures(reader, group, accession, placer, policy)
    return OrderRequest(
        patient=patient, placer_order_number=placer, placer_issuer=placer_issuer,
        filler_order_number=value("filler_order_number"), filler_issuer=filler_issuer,
        accession_number=accession[:16], accession_issuer=accession_issuer[:64],
        priority=dicom_priority(value("priority")),
        referring_physician=value("referring_physician"),
        reason=value("reason"), procedures=procedures)


def _procedures(reader: OrderReader, group: OrderGroup, accession: str, placer: str,
                policy: OrderPolicy) -> tuple[ProcedureRequest, ...]:
    """One procedure per distinct requested procedure ID; each IPC (or the OBR) is a step."""
    code, meaning, scheme = _coded(reader, group)
    definition = reader.mappings.procedures.get(code) or ProcedureDefinition(code=code)
    description = meaning or definition.meaning
    start = _time(reader, group, "start")
    end = scheduled_end(start, _time(reader, group, "end"), definition.duration_minutes)
    by_id: dict[str, list[StepRequest]] = {}
    uids: dict[str, str] = {}
    accessions: dict[str, tuple[str, str]] = {}
    for ipc in (group.ipcs or [None]):
        value = lambda name: reader.value(name, group, ipc)  # noqa: E731
        # Each IPC may name its own accession (several requested procedures of one order).
        own = reader.identifier("accession_number", group, ipc) if ipc is not None else ("", "")
        procedure_id = (value("requested_procedure_id") or own[0] or accession or placer)[:16]
        by_id.setdefault(procedure_id, []).append(_step(reader, group, ipc, procedure_id,
                                                        definition, description, (start, end)))
        uids.setdefault(procedure_id, value("study_instance_uid"))
        if own[0]:
            accessions.setdefault(procedure_id, own)
    return tuple(ProcedureRequest(
        procedure_id=pid, code_value=code, code_scheme=scheme, code_meaning=description[:64],
        study_instance_uid=uids[pid] or _missing_uid(
            policy, accessions.get(pid, (accession,))[0], pid),
        steps=tuple(steps), accession_number=accessions.get(pid, ("", ""))[0][:16],
        accession_issuer=accessions.get(pid, ("", ""))[1][:64])
        for pid, steps in by_id.items())


def _coded(reader: OrderReader, group: OrderGroup) -> tuple[str, str, str]:
    """The requested procedure code as (value, meaning, scheme) from the first mapped CE."""
    parts = reader.coded("procedure_code", group) + ["", ""]
    return parts[0], parts[1], parts[2]


def _step(reader: OrderReader, group: OrderGroup, ipc: list[str] | None, procedure_id: str,
          definition: ProcedureDefinition, description: str,
          when: tuple[datetime | None, datetime | None]) -> StepRequest:
    value = lambda name: reader.value(name, group, ipc)  # noqa: E731
    modality = value("modality") or definition.modality
    location = value("location")
    titles, station_name = _station(reader, group, ipc, modality, location, definition)
    protocol = value("protocol_code")
    protocol_codes = ((protocol, reader.msg.field(ipc, 6, comp=3), reader.msg.field(ipc, 6, comp=2)),) \
        if protocol and ipc is not None else ()
    return StepRequest(
        step_id=(value("step_id") or procedure_id)[:16], modality=modality[:16],
        station_ae_titles=titles, station_name=station_name[:64], location=location[:64],
        start=when[0], end=when[1], performing_physician=value("performing_physician"),
        # IHE RAD TF-2 4.4: with IPC, the protocol (IPC-6) describes this step.
        description=((protocol_codes[0][2] if protocol_codes else "") or description)[:64],
        protocol_codes=protocol_codes)


def _station(reader: OrderReader, group: OrderGroup, ipc: list[str] | None, modality: str,
             location: str, definition: ProcedureDefinition) -> tuple[tuple[str, ...], str]:
    """Station AE title(s) and name: message, then stations.toml rules, then procedure table."""
    sent = reader.value("station_ae_title", group, ipc)
    name = reader.value("station_name", group, ipc)
    if sent:
        return (sent[:16],), name or definition.station_name
    rule = reader.mappings.station(modality, definition.code, location,
                                   reader.msg.sending_application)
    if rule is not None:
        return rule.station_ae_titles, name or rule.station_name
    return definition.station_ae_titles, name or definition.station_name


def _time(reader: OrderReader, group: OrderGroup, name: str) -> datetime | None:
    """The order group's `name` ("start" or "end") date/time, from the first mapped address."""
    value, address = reader.located(name, group, group.ipcs[0] if group.ipcs else None)
    return parse_ts(value, address) if value else None


def _missing_uid(policy: OrderPolicy, accession: str, procedure_id: str) -> str:
    """The Study Instance UID of a procedure the order sent none for (hl7.study_uid_policy)."""
    if policy.study_uid_policy == "reject":
        raise FieldError("Study Instance UID is missing (ZDS-1 / IPC-3) and the policy is reject")
    if policy.study_uid_policy == "accession":
        if not accession:
            raise FieldError("Study Instance UID is missing and there is no accession number "
                             "to derive it from")
        # A name-based UID (PS3.5 B.2 style): the same accession always yields the same UID.
        root = policy.uid_root if policy.uid_root.endswith(".") else policy.uid_root + "."
        digest = uuid.uuid5(uuid.NAMESPACE_OID, f"{accession}|{procedure_id}").int
        return (root + str(digest))[:64].rstrip(".")
    return ""  # generate: the store asks the UID factory
