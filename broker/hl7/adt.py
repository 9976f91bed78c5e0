"""ADT handlers (IHE RAD-1 / RAD-12): register and update, merge (A40), identifier change (A47),
arrival (A10). Patients are created and updated only through broker.store.patients.upsert_patient.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.domain.records import Identifier, PatientRecord
from broker.hl7 import ack
from broker.hl7.fields import FieldError, cx_list, parse_ts
from broker.hl7.intake import Failed, Handler, IntakeContext
from broker.hl7.message import Message
from broker.hl7.orders import read_patient
from broker.store.merge import merge_patients
from broker.store.models import PatientIdentifier
from broker.store.orders import arrive_patient
from broker.store.patients import find_by_identifiers, surviving, upsert_patient


def _patient(msg: Message, ctx: IntakeContext, pid: list[str] | None = None) -> PatientRecord:
    sender = ctx.mappings.sender(msg.sending_application, msg.sending_facility)
    issuer = sender.patient_id_issuer if sender and sender.patient_id_issuer is not None \
        else ctx.patient_id_issuer
    return read_patient(msg, issuer, sender.default_issuer if sender else "", pid)


def _pairs(msg: Message) -> list[tuple[list[str], list[str]]]:
    """(PID, MRG) per patient group: A40 and A47 may carry several (HL7 v2.5.1 3.3.40)."""
    pairs, pid = [], None
    for name, fields in msg.segments:
        if name == "PID":
            pid = fields
        elif name == "MRG" and pid is not None:
            pairs.append((pid, fields))
    if not pairs:
        raise FieldError("PID/MRG segments are missing")
    return pairs


def _prior_ids(msg: Message, ctx: IntakeContext, mrg: list[str] | None = None) -> list[Identifier]:
    mrg = mrg if mrg is not None else msg.segment("MRG")
    if mrg is None:
        raise FieldError("MRG segment is missing")
    ids = cx_list(msg, mrg, 1)
    if not ids:
        raise FieldError("MRG-1 prior patient identifier is empty")
    sender = ctx.mappings.sender(msg.sending_application, msg.sending_facility)
    default = sender.default_issuer if sender else ""
    return [i if i.issuer or not default else Identifier(i.value, default, i.type_code) for i in ids]


def handle_register(session: Session, msg: Message, message_id: int, ctx: IntakeContext) -> None:
    """A01/A04/A05/A08/A31: create the patient or update the demographics."""
    upsert_patient(session, _patient(msg, ctx))


def handle_merge(session: Session, msg: Message, message_id: int, ctx: IntakeContext) -> None:
    """A40: each MRG-1 patient is merged into its PID-3 patient; orders follow at once."""
    for pid, mrg in _pairs(msg):
        prior = PatientRecord(identifiers=tuple(_prior_ids(msg, ctx, mrg)))
        merged = find_by_identifiers(session, prior)
        if merged is None:
            raise Failed("A40: the prior patient (MRG-1) is not known", ack.ERR_UNKNOWN_KEY)
        survivor = upsert_patient(session, _patient(msg, ctx, pid))
        session.flush()
        if survivor.id == merged.id:
            continue  # already merged (a replay after reprocessing, or both IDs on one record)
        merge_patients(session, survivor.id, merged.id, actor=f"hl7:{msg.sender}",
                       reason=f"ADT^A40 control id {msg.control_id}")


def handle_identifier_change(session: Session, msg: Message, message_id: int,
                             ctx: IntakeContext) -> None:
    """A47: the identifier in MRG-1 becomes the one in PID-3 (same patient, new value)."""
    for pid, mrg in _pairs(msg):
        old = _prior_ids(msg, ctx, mrg)[0]
        ids = _patient(msg, ctx, pid).identifiers
        # The new identifier is the one of the same assigning authority, else the first.
        _change_identifier(session, old, next((i for i in ids if i.issuer == old.issuer), ids[0]))


def _change_identifier(session: Session, old: Identifier, new: Identifier) -> None:
    row = session.scalar(select(PatientIdentifier).where(
        PatientIdentifier.value == old.value, PatientIdentifier.issuer == old.issuer))
    if row is None:
        raise Failed(f"A47: identifier in MRG-1 (issuer {old.issuer!r}) is not known",
                     ack.ERR_UNKNOWN_KEY)
    clash = session.scalar(select(PatientIdentifier).where(
        PatientIdentifier.value == new.value, PatientIdentifier.issuer == new.issuer))
    if clash is not None and clash.id != row.id:
        if surviving(session, clash.patient).id != surviving(session, row.patient).id:
            raise Failed("A47: the new identifier already belongs to another patient; "
                         "send A40 to merge", ack.ERR_DUPLICATE_KEY)
        return
    row.value, row.issuer = new.value, new.issuer
    row.type_code = new.type_code or row.type_code
    session.flush()


def handle_arrival(session: Session, msg: Message, message_id: int, ctx: IntakeContext) -> None:
    """A10: the patient's scheduled steps of the day become ARRIVED."""
    patient = find_by_identifiers(session, _patient(msg, ctx))
    if patient is None:
        raise Failed("A10: the patient (PID-3) is not known", ack.ERR_UNKNOWN_KEY)
    evn = msg.segment("EVN")
    occurred = parse_ts(msg.field(evn, 6) or msg.field(evn, 2), "EVN-6") if evn else None
    arrive_patient(session, patient, (occurred or ctx.now()).date())


ADT_HANDLERS: dict[str, Handler] = {
    **{f"ADT^{event}": handle_register for event in ("A01", "A04", "A05", "A08", "A31")},
    "ADT^A40": handle_merge,
    "ADT^A47": handle_identifier_change,
    "ADT^A10": handle_arrival,
}
