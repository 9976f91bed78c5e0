"""The delivery job: claim due HL7 notifications, send them, mark them, in three steps.

No transaction is open while a message travels: the claim (a lease) commits first, and the
results of the batch are written in one short transaction afterwards. A crash in between only
delays the rows until their lease ends; they are then sent again with their own control id,
which lets the EHR recognise the resend.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broker.config import NotifySettings
from broker.notify.mllp_out import Delivery, MllpSender
from broker.notify.outbox import DEAD, RetryPolicy, claim_batch, mark_delivered_ids, mark_failed
from broker.notify.triggers import HL7_KIND
from broker.store.models import Notification

log = logging.getLogger(__name__)


def policy_of(settings: NotifySettings) -> RetryPolicy:
    """The [notify] backoff."""
    return RetryPolicy(settings.retry_base_seconds, settings.retry_max_seconds,
                       settings.max_attempts)


def deliver_due(sessions: sessionmaker[Session], sender: MllpSender,
                settings: NotifySettings) -> int:
    """Deliver the due HL7 notifications, batch after batch while some get through: a backlog
    drains at the destination's pace, and an order's next message (held back until the one
    before it is delivered) leaves at once, not a job interval later. Returns how many."""
    delivered = 0
    while True:
        count, claimed = deliver_batch(sessions, sender, settings)
        delivered += count
        if not claimed or not count:
            return delivered


def deliver_batch(sessions: sessionmaker[Session], sender: MllpSender,
                  settings: NotifySettings) -> tuple[int, int]:
    """Claim, send and mark one batch; returns (delivered, claimed)."""
    with sessions.begin() as session:
        claimed = claim_batch(session, (HL7_KIND,), settings.batch_size,
                              lease=timedelta(seconds=settings.lease_seconds))
    if not claimed:
        return 0, 0
    by_destination: dict[str, list[tuple[int, bytes]]] = {}
    for row in claimed:
        by_destination.setdefault(row.destination, []).append((row.id, row.payload))
    results: dict[int, Delivery] = {}
    for destination, items in by_destination.items():
        try:
            outcomes = sender.send_batch(destination, [payload for _, payload in items])
        except Exception as exc:  # noqa: BLE001 - one broken destination must not stop the rest
            log.exception("notify: sending to %s failed", destination)
            outcomes = [Delivery(False, f"error: {exc}")] * len(items)
        results.update({row_id: outcome for (row_id, _), outcome in zip(items, outcomes)})
    policy = policy_of(settings)
    with sessions.begin() as session:
        done = [row_id for row_id, outcome in results.items() if outcome.ok]
        mark_delivered_ids(session, done)
        delivered = len(done)
        failed = [row_id for row_id, outcome in results.items() if not outcome.ok]
        rows = session.scalars(select(Notification).where(Notification.id.in_(failed))) \
            if failed else []
        for row in rows:
            row_id, outcome = row.id, results[row.id]
            mark_failed(row, outcome.error, policy, permanent=outcome.permanent, given_up=DEAD)
            log.warning("notify #%s to %s: %s (attempt %d, %s)", row_id, row.destination,
                        outcome.error, row.attempts,
                        "dead" if row.status == DEAD else "will retry")
    return delivered, len(claimed)
