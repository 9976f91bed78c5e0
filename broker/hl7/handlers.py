"""Inbound message handlers, one per message type, registered in HANDLERS."""
from __future__ import annotations

from sqlalchemy.orm import Session

from broker.hl7.intake import Failed, Handler, IntakeContext
from broker.hl7.message import Message
from broker.hl7.orders import order_groups, read_order
from broker.hl7.fields import FieldError
from broker.store.orders import create_order


def handle_order(session: Session, msg: Message, message_id: int, ctx: IntakeContext) -> None:
    """ORM^O01: apply each ORC/OBR group by its order control code."""
    groups = order_groups(msg)
    if not groups:
        raise FieldError("ORC segment is missing")
    for group in groups:
        if group.control != "NW":
            raise Failed(f"order control {group.control!r} is not supported")
        request = read_order(msg, group, ctx.procedures, ctx.patient_id_issuer)
        create_order(session, request, ctx.new_uid, source_channel="hl7",
                     source_message_id=message_id)


HANDLERS: dict[str, Handler] = {
    "ORM^O01": handle_order,
}
