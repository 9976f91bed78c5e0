"""The delivery job: claim due HL7 notifications, send them, mark them, in three steps.

No transaction is open while a message travels: the claim (a lease) commits first, and the
results of the batch are written in one short transaction afterwards. A crash in between only
delays the rows until their lease ends; they are then sent again with their own control id,
which lets the EHR recognise the resend.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from broker.config import NotifySettings
from broker.notify.mllp_out import Delivery, MllpSender
from broker.notify.outbox import DEAD, RetryPolicy, claim_due, mark_delivered, mark_failed
from broker.notify.triggers import HL7_KIND
from broker.store.models import Notification

log = logging.getLogger(__name__)


def policy_of(settings: NotifySettings) -> RetryPolicy:
    """The [notify] backoff."""
    return RetryPolicy(settings.retry_base_seconds, settings.retry_max_seconds,
                       settings.max_attempts)


def deliver_due(sessions: sessionmaker[Session], sender: MllpSender,
                settings: NotifySettings) -> int:
    """Deliver the due HL7 notifications once; returns how many were delivered."""
    with sessions.begin() as session:
        rows = claim_due(session, (HL7_KIND,), settings.batch_size,
                         lease=timedelta(seconds=settings.lease_seconds))
        claimed = [(row.id, row.destination, row.payload) for row in rows]
    if not claimed:
        return 0
    by_destination: dict[str, list[tuple[int, bytes]]] = {}
    for row_id, destination, payload in claimed:
        by_destination.setdefault(destination, []).append((row_id, payload))
    results: dict[int, Delivery] = {}
    for destination, items in by_destination.items():
        try:
            outcomes = sender.send_batch(destination, [payload for _, payload in items])
        except Exception as exc:  # noqa: BLE001 - one broken destination must not stop the rest
            log.exception("notify: sending to %s failed", destination)
            outcomes = [Delivery(False, f"error: {exc}")] * len(items)
        results.update({row_id: outcome for (row_id, _), outcome in zip(items, outcomes)})
    policy = policy_of(settings)
    delivered = 0
    with sessions.begin() as session:
        for row_id, outcome in results.items():
            row = session.get(Notification, row_id)
            if outcome.ok:
                mark_delivered(row)
                delivered += 1
                continue
            mark_failed(row, outcome.error, policy, permanent=outcome.permanent, given_up=DEAD)
            log.warning("notify #%s to %s: %s (attempt %d, %s)", row_id, row.destination,
                        outcome.error, row.attempts,
                        "dead" if row.status == DEAD else "will retry")
    return delivered
