"""Inbound order handlers (ORM^O01, OMI^O23, OMG^O19), the HANDLERS registry, and the
intake built with them for the site's settings.

ORC-1 order control (HL7 table 0119) maps to a domain transition: NW create, XO change,
CA / DC cancel, HD hold, RL release, SC status change with ORC-5 (table 0038).
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from broker.clock import uid_factory
from broker.config import Settings
from broker.domain.lifecycle import StepEvent
from broker.domain.records import OrderRequest
from broker.hl7 import ack
from broker.hl7.adt import ADT_HANDLERS
from broker.hl7.fields import FieldError
from broker.hl7.intake import Failed, Handler, Hl7Intake, IntakeContext
from broker.hl7.message import Message
from broker.hl7.orders import OrderPolicy, order_groups, read_orders
from broker.mapping.site import SiteMappings, load_site_mappings
from broker.resources import mappings_dir
from broker.store.orders import (
    UnknownOrder, apply_event, change_order, existing_order, store_order,
)

_EVENTS = {"CA": StepEvent.CANCEL, "DC": StepEvent.CANCEL, "HD": StepEvent.HOLD,
           "RL": StepEvent.RELEASE}
# ORC-5 order status (table 0038) of an SC message -> the step event it reports.
_STATUS_EVENTS = {"CA": StepEvent.CANCEL, "DC": StepEvent.CANCEL, "HD": StepEvent.HOLD,
                  "IP": StepEvent.START, "CM": StepEvent.COMPLETE}
CONTROLS = ("NW", "XO", "CA", "DC", "SC", "HD", "RL")


def read_order_message(msg: Message, ctx: IntakeContext) -> list[tuple[str, OrderRequest]]:
    """Each placer order of the message with its order control code (no database)."""
    groups = order_groups(msg)
    if not groups:
        raise FieldError("ORC segment is missing")
    for group in groups:
        if group.control not in CONTROLS:
            raise Failed(f"order control {group.control!r} is not supported "
                         f"(expected one of {', '.join(CONTROLS)})", ack.ERR_TABLE_VALUE)
    policy = OrderPolicy(ctx.patient_id_issuer, ctx.study_uid_policy, ctx.uid_root)
    return read_orders(msg, groups, ctx.mappings, policy)


def handle_order(session: Session, msg: Message, message_id: int, ctx: IntakeContext) -> None:
    """ORM^O01 / OMI^O23 / OMG^O19: apply each placer order by its order control code."""
    try:
        for control, request in read_order_message(msg, ctx):
            _apply(session, msg, control, request, message_id, ctx)
    except UnknownOrder as exc:
        raise Failed(str(exc), ack.ERR_UNKNOWN_KEY) from None


def _apply(session: Session, msg: Message, control: str, request: OrderRequest, message_id: int,
           ctx: IntakeContext) -> None:
    if control == "NW":  # a taken placer or accession number: OrderConflict
        store_order(session, request, ctx.new_uid, source_channel="hl7",
                    source_message_id=message_id)
        return
    order = existing_order(session, request.placer_order_number, request.placer_issuer)
    if control == "XO":
        change_order(session, order, request, ctx.new_uid)
    elif control == "SC":
        status = msg.field(_orc_of(msg, request.placer_order_number), 5).upper()
        if status == "SC":
            if order.status == "HOLD":
                apply_event(session, order, StepEvent.RELEASE)
            return
        event = _STATUS_EVENTS.get(status)
        if event is None:
            raise Failed(f"ORC-5 order status {status!r} is not supported with SC",
                         ack.ERR_TABLE_VALUE)
        if event is StepEvent.COMPLETE and order.status == "SCHEDULED":
            apply_event(session, order, StepEvent.START)
        apply_event(session, order, event)
    else:
        apply_event(session, order, _EVENTS[control])


def _orc_of(msg: Message, placer: str) -> list[str] | None:
    for orc in msg.segments_named("ORC"):
        if msg.field(orc, 2) == placer:
            return orc
    return msg.segment("ORC")


HANDLERS: dict[str, Handler] = {
    "ORM^O01": handle_order,
    "OMI^O23": handle_order,
    "OMG^O19": handle_order,
    **ADT_HANDLERS,
}


def site_mappings(settings: Settings) -> SiteMappings:
    """The site's mapping files (hl7.mappings_dir or the shipped ones), validated."""
    folder = Path(settings.hl7.mappings_dir) if settings.hl7.mappings_dir else mappings_dir()
    return load_site_mappings(folder)


def build_intake(settings: Settings, sessions: sessionmaker[Session]) -> Hl7Intake:
    """The HL7 intake with the site's mappings, validated now so bad files stop start-up."""
    hl7 = settings.hl7
    return Hl7Intake(sessions, IntakeContext(
        mappings=site_mappings(settings), new_uid=uid_factory(settings.uid.root),
        patient_id_issuer=hl7.patient_id_issuer, study_uid_policy=hl7.study_uid_policy,
        uid_root=settings.uid.root, allowed_senders=hl7.allowed_senders), HANDLERS)
