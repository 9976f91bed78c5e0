"""Inbound order handlers (ORM^O01, OMI^O23, OMG^O19) and the HANDLERS registry.

ORC-1 order control (HL7 table 0119) maps to a domain transition: NW create, XO change,
CA / DC cancel, HD hold, RL release, SC status change with ORC-5 (table 0038).
"""
from __future__ import annotations

from functools import lru_cache

from sqlalchemy.orm import Session

from broker.domain.lifecycle import StepEvent
from broker.domain.records import OrderRequest
from broker.hl7 import ack
from broker.hl7.adt import ADT_HANDLERS
from broker.hl7.fields import FieldError
from broker.hl7.intake import Failed, Handler, IntakeContext, StagedHandler
from broker.hl7.message import Message
from broker.hl7.orders import OrderPolicy, order_groups, read_orders
from broker.store.order_updates import UnknownOrder, apply_event, change_order, existing_order
from broker.store.order_rows import insert_order, patient_id_for

_EVENTS = {"CA": StepEvent.CANCEL, "DC": StepEvent.CANCEL, "HD": StepEvent.HOLD,
           "RL": StepEvent.RELEASE}
# ORC-5 order status (table 0038) of an SC message -> the step event it reports.
_STATUS_EVENTS = {"CA": StepEvent.CANCEL, "DC": StepEvent.CANCEL, "HD": StepEvent.HOLD,
                  "IP": StepEvent.START, "CM": StepEvent.COMPLETE}
CONTROLS = ("NW", "XO", "CA", "DC", "SC", "HD", "RL")
# One (immutable) policy per configuration, not one per message.
_policy = lru_cache(maxsize=16)(OrderPolicy)


def read_order_message(msg: Message, ctx: IntakeContext) -> list[tuple[str, OrderRequest]]:
    """Each placer order of the message with its order control code (no database)."""
    groups = order_groups(msg)
    if not groups:
        raise FieldError("ORC segment is missing")
    for group in groups:
        if group.control not in CONTROLS:
            raise Failed(f"order control {group.control!r} is not supported "
                         f"(expected one of {', '.join(CONTROLS)})", ack.ERR_TABLE_VALUE)
    policy = _policy(ctx.patient_id_issuer, ctx.study_uid_policy, ctx.uid_root)
    return read_orders(msg, groups, ctx.mappings, policy)


def apply_order_message(session: Session, msg: Message,
                        orders: list[tuple[str, OrderRequest]], message_id: int,
                        ctx: IntakeContext) -> None:
    """Apply each placer order by its order control code."""
    try:
        for control, request in orders:
            _apply(session, msg, control, request, message_id, ctx)
    except UnknownOrder as exc:
        raise Failed(str(exc), ack.ERR_UNKNOWN_KEY) from None


handle_order = StagedHandler(read_order_message, apply_order_message)


def _apply(session: Session, msg: Message, control: str, request: OrderRequest, message_id: int,
           ctx: IntakeContext) -> None:
    if control == "NW":  # a taken placer or accession number: OrderConflict
        insert_order(session, request, patient_id_for(session, request.patient), ctx.new_uid,
                     source_channel="hl7", source_message_id=message_id)
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


HANDLERS: dict[str, Handler | StagedHandler] = {
    "ORM^O01": handle_order,
    "OMI^O23": handle_order,
    "OMG^O19": handle_order,
    **ADT_HANDLERS,
}
