"""The notification outbox as an admin sees it: rows waiting, failing or dead, and a retry.

The delivery side (claiming, backoff) lives in broker.notify; this reads and resets rows only.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broker.clock import utcnow
from broker.notify import outbox
from broker.store.audit import record_event
from broker.store.models import Notification

WAITING = ("PENDING", "FAILED", "DEAD")


class OutboxError(ValueError):
    """The notification cannot be retried or discarded; the message says why."""


def listed(session: Session, status: str | None = None, limit: int = 100,
           before_id: int | None = None) -> list[dict]:
    """Newest first (notify.outbox's views), each row as the pages and the API show it."""
    rows = outbox.list_notifications(session, status, limit, before_id)
    held = outbox.held_by(session, rows)
    return [dict(id=r.id, destination=r.destination, kind=r.kind, event=r.event,
                 status=outbox.view_of(r, held), held_by=held.get(r.id), attempts=r.attempts,
                 next_attempt_at=r.next_attempt_at, last_error=r.last_error,
                 created_at=r.created_at) for r in rows]


def outbox_depth(session: Session) -> dict[str, int]:
    """Rows per status, delivered ones left out (they only grow)."""
    return dict(session.execute(select(Notification.status, func.count())
                                .where(Notification.status.in_(WAITING))
                                .group_by(Notification.status)).all())


def oldest_pending_age(session: Session, now: datetime | None = None) -> float:
    """Seconds since the oldest row still waiting to be delivered was written; 0 when none."""
    oldest = session.scalar(select(func.min(Notification.created_at))
                            .where(Notification.status.in_(("PENDING", "FAILED"))))
    return max(0.0, ((now or utcnow()) - oldest).total_seconds()) if oldest else 0.0


def retry_notification(session: Session, notification_id: int, actor: str) -> Notification:
    """Put a failed or dead row back in line now, audited with its last error."""
    row = _waiting(session, notification_id, ("failed", "dead", "discarded"), "retried")
    before, error = outbox.view_of(row), row.last_error
    # The delivery side's own revival (due now, attempts from zero), so a retried row gets its
    # full allowance of attempts again instead of dying at its first failure.
    outbox.retry(session, notification_id)
    record_event(session, actor, "outbox.retry", "notification", row.id, status_from=before,
                 destination=row.destination, last_error=error[:200])
    return row


def discard_notification(session: Session, notification_id: int, actor: str) -> Notification:
    """Give a dead row up for good, so the ones held behind it go; audited."""
    row = _waiting(session, notification_id, ("dead",), "discarded")
    outbox.discard(session, notification_id)
    record_event(session, actor, "outbox.discard", "notification", row.id,
                 destination=row.destination, last_error=row.last_error[:200])
    return row


def _waiting(session: Session, notification_id: int, views: tuple[str, ...],
             verb: str) -> Notification:
    row = session.get(Notification, notification_id)
    if row is None:
        raise OutboxError(f"no notification #{notification_id}")
    view = outbox.view_of(row)
    if view not in views:
        raise OutboxError(f"notification #{notification_id} is {view}: it cannot be {verb}")
    return row
