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
STATUSES = WAITING + ("DELIVERED",)


class OutboxError(ValueError):
    """The notification cannot be retried; the message says why."""


def list_notifications(session: Session, status: str | None = None, limit: int = 100,
                       before_id: int | None = None) -> list[Notification]:
    """Newest first; by default the rows not delivered (pending, failed, dead)."""
    wanted = [status.upper()] if status else list(WAITING)
    stmt = select(Notification).where(Notification.status.in_(wanted))
    if before_id:
        stmt = stmt.where(Notification.id < before_id)
    return list(session.scalars(stmt.order_by(Notification.id.desc()).limit(limit)))


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
    """Put a failed or dead row back in line now (last error kept for reference), audited."""
    row = session.get(Notification, notification_id)
    if row is None:
        raise OutboxError(f"no notification #{notification_id}")
    if row.status not in ("FAILED", "DEAD"):
        raise OutboxError(f"notification #{notification_id} is {row.status.lower()}")
    before = row.status
    # The delivery side's own revival (due now, attempts from zero), so a retried row gets its
    # full allowance of attempts again instead of dying at its first failure.
    outbox.retry(session, notification_id)
    record_event(session, actor, "outbox.retry", "notification", row.id, status_from=before,
                 destination=row.destination)
    return row
