"""The delivery job: claim due HL7 notifications, send them, mark them, in three steps.

No transaction is open while a message travels: the claim (a lease) commits first, and the
results of the batch are written in one short transaction afterwards. A crash in between only
delays the rows until their lease ends; they are then sent again with their own control id,
which lets the EHR recognise the resend.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import Callable, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broker.config import NotifySettings
from broker.notify.mllp_out import Delivery, MllpSender
from broker.notify.outbox import (
    DEAD, Claimed, RetryPolicy, claim_batch, mark_delivered_ids, mark_failed,
)
from broker.notify.triggers import HL7_KIND
from broker.store.models import Notification

log = logging.getLogger(__name__)


class Outcome(Protocol):
    """What a sender says of one row (mllp_out.Delivery, fhir_deliver.Written)."""
    ok: bool
    error: str
    permanent: bool


# Sends a batch of claimed rows (no transaction open); returns each row's outcome by id.
Send = Callable[[list[Claimed]], dict[int, Outcome]]
# Called in the marking transaction for each delivered row (e.g. to note what was written).
OnDelivered = Callable[[Session, int, Outcome], None]


def policy_of(settings: NotifySettings) -> RetryPolicy:
    """The [notify] backoff."""
    return RetryPolicy(settings.retry_base_seconds, settings.retry_max_seconds,
                       settings.max_attempts)


def drain(sessions: sessionmaker[Session], kind: str, send: Send, settings: NotifySettings,
          on_delivered: OnDelivered | None = None) -> int:
    """Deliver the due rows of `kind`, batch after batch while some get through: a backlog
    drains at the destination's pace, and an order's next message (held back until the one
    before it is delivered) leaves at once, not a job interval later. Returns how many."""
    delivered = 0
    while True:
        count, claimed = deliver_batch(sessions, kind, send, settings, on_delivered)
        delivered += count
        if not claimed or not count:
            return delivered


def deliver_batch(sessions: sessionmaker[Session], kind: str, send: Send,
                  settings: NotifySettings,
                  on_delivered: OnDelivered | None = None) -> tuple[int, int]:
    """Claim, send and mark one batch; returns (delivered, claimed)."""
    with sessions.begin() as session:
        claimed = claim_batch(session, (kind,), settings.batch_size,
                              lease=timedelta(seconds=settings.lease_seconds))
    if not claimed:
        return 0, 0
    results = send(claimed)
    policy = policy_of(settings)
    with sessions.begin() as session:
        done = [row_id for row_id, outcome in results.items() if outcome.ok]
        mark_delivered_ids(session, done)
        for row_id in done if on_delivered else ():
            on_delivered(session, row_id, results[row_id])
        failed = [row_id for row_id, outcome in results.items() if not outcome.ok]
        rows = session.scalars(select(Notification).where(Notification.id.in_(failed))) \
            if failed else []
        for row in rows:
            outcome = results[row.id]
            mark_failed(row, outcome.error, policy, permanent=outcome.permanent, given_up=DEAD)
            log.warning("notify %s #%s to %s: %s (attempt %d, %s)", kind, row.id,
                        row.destination, outcome.error, row.attempts,
                        "dead" if row.status == DEAD else "will retry")
    return len(done), len(claimed)


def deliver_due(sessions: sessionmaker[Session], sender: MllpSender,
                settings: NotifySettings) -> int:
    """Deliver the due HL7 notifications over MLLP; returns how many."""
    return drain(sessions, HL7_KIND, partial(send_hl7, sender), settings)


def send_hl7(sender: MllpSender, claimed: list[Claimed]) -> dict[int, Delivery]:
    """Each destination's rows in order over its connection."""
    by_destination: dict[str, list[Claimed]] = {}
    for row in claimed:
        by_destination.setdefault(row.destination, []).append(row)
    results: dict[int, Delivery] = {}
    for destination, rows in by_destination.items():
        try:
            outcomes = sender.send_batch(destination, [row.payload for row in rows])
        except Exception as exc:  # noqa: BLE001 - one broken destination must not stop the rest
            log.exception("notify: sending to %s failed", destination)
            outcomes = [Delivery(False, f"error: {exc}")] * len(rows)
        results.update({row.id: outcome for row, outcome in zip(rows, outcomes)})
    return results
