"""Orders, requested procedures and scheduled steps."""
from __future__ import annotations

from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.domain.records import OrderRequest
from broker.store.models import Order
from broker.store.order_rows import OrderConflict  # noqa: F401 - re-exported for callers


def find_order(session: Session, placer_order_number: str, placer_issuer: str = "") -> Order | None:
    """The order with this placer order number and issuer, or None."""
    return session.execute(
        select(Order).where(Order.placer_order_number == placer_order_number,
                            Order.placer_issuer == placer_issuer)
    ).scalar_one_or_none()


def create_order(session: Session, request: OrderRequest, new_uid: Callable[[], str],
                 source_channel: str = "", source_message_id: int | None = None) -> Order:
    """Store a new order with its patient, procedures and steps; OrderConflict for a taken
    placer order or accession number (roll the transaction back: the patient may be written)."""
    from broker.store.order_rows import insert_order, patient_id_for  # noqa: I001
    # The patient's match candidates name where the patient came from (the queue shows it).
    patient_id = patient_id_for(session, request.patient, source_channel or "hl7")
    order_id = insert_order(session, request, patient_id, new_uid, source_channel,
                            source_message_id)
    return session.get(Order, order_id)
