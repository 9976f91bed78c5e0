"""The durable outbox: rows written with the change that causes them, delivered with backoff.

A worker claims a due row by pushing its next attempt past a lease (so a crash mid-delivery
only delays it), delivers it outside the transaction, then marks it delivered or reschedules
it. Rows of one ordering key go out oldest first: a later row waits for the earlier one.
On PostgreSQL several workers share the table with FOR UPDATE SKIP LOCKED (DESIGN.md, "Scale").
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import Session, aliased

from broker.clock import utcnow
from broker.store.models import Notification

PENDING, DELIVERED, FAILED = "PENDING", "DELIVERED", "FAILED"
# Given up: a permanent refusal or the last attempt failed; kept with its error until retried.
# FAILED is the same for MPPS forwarding rows.
DEAD = "DEAD"
GIVEN_UP = (FAILED, DEAD)
LEASE = timedelta(minutes=5)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: base * 2^(attempts-1), capped; max_attempts 0 retries for ever."""
    base_seconds: float = 30.0
    max_seconds: float = 3600.0
    max_attempts: int = 0

    def delay(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.max_seconds, self.base_seconds * 2 ** max(0, attempts - 1)))


def enqueue(session: Session, destination: str, kind: str, payload: bytes,
            ordering_key: str = "", event: str = "") -> Notification:
    """Add a notification to the session's transaction (committed with its cause)."""
    row = Notification(destination=destination, kind=kind, payload=payload,
                       ordering_key=ordering_key, status=PENDING, next_attempt_at=utcnow(),
                       event=event)
    session.add(row)
    return row


@dataclass(frozen=True)
class Claimed:
    """A claimed row as the sender needs it (no ORM object held across the send)."""
    id: int
    destination: str
    payload: bytes


def claim_batch(session: Session, kinds: tuple[str, ...], limit: int,
                now: datetime | None = None, lease: timedelta = LEASE) -> list[Claimed]:
    """claim_due for a backlog: the same rule, read and leased with two statements."""
    now = now or utcnow()
    stmt = _due(kinds, now).with_only_columns(
        Notification.id, Notification.destination, Notification.payload).limit(limit)
    if session.get_bind().dialect.name != "sqlite":
        stmt = stmt.with_for_update(skip_locked=True, of=Notification)
    rows = [Claimed(*row) for row in session.execute(stmt)]
    if rows:
        session.execute(update(Notification).where(Notification.id.in_([r.id for r in rows]))
                        .values(attempts=Notification.attempts + 1, next_attempt_at=now + lease))
    return rows


def mark_delivered_ids(session: Session, ids: list[int], now: datetime | None = None) -> None:
    """mark_delivered for many rows in one statement."""
    if ids:
        session.execute(update(Notification).where(Notification.id.in_(ids))
                        .values(status=DELIVERED, delivered_at=now or utcnow(), last_error=""))


def _due(kinds: tuple[str, ...], now: datetime):
    earlier = aliased(Notification)
    blocked = exists().where(and_(earlier.ordering_key == Notification.ordering_key,
                                  earlier.destination == Notification.destination,
                                  earlier.ordering_key != "",
                                  earlier.status == PENDING, earlier.id < Notification.id))
    return (select(Notification)
            .where(Notification.status == PENDING, Notification.next_attempt_at <= now,
                   Notification.kind.in_(kinds), ~blocked)
            .order_by(Notification.id))


def claim_due(session: Session, kinds: tuple[str, ...], limit: int = 20,
              now: datetime | None = None, lease: timedelta = LEASE) -> list[Notification]:
    """Claim up to `limit` due rows of `kinds` whose earlier rows of the same key are done."""
    now = now or utcnow()
    earlier = aliased(Notification)
    blocked = exists().where(and_(earlier.ordering_key == Notification.ordering_key,
                                  earlier.destination == Notification.destination,
                                  earlier.ordering_key != "",
                                  earlier.status == PENDING, earlier.id < Notification.id))
    stmt = (select(Notification)
            .where(Notification.status == PENDING, Notification.next_attempt_at <= now,
                   Notification.kind.in_(kinds), ~blocked)
            .order_by(Notification.id).limit(limit))
    if session.get_bind().dialect.name != "sqlite":
        stmt = stmt.with_for_update(skip_locked=True, of=Notification)
    rows = list(session.scalars(stmt))
    for row in rows:
        row.attempts += 1
        row.next_attempt_at = now + lease
    return rows


def mark_delivered(row: Notification, now: datetime | None = None) -> None:
    """The peer accepted the notification."""
    row.status = DELIVERED
    row.delivered_at = now or utcnow()
    row.last_error = ""


def mark_failed(row: Notification, error: str, policy: RetryPolicy, permanent: bool = False,
                now: datetime | None = None, given_up: str = FAILED) -> None:
    """Reschedule after a failure, or give up when permanent or out of attempts (kept, visible)."""
    now = now or utcnow()
    row.last_error = error[:2000]
    if permanent or (policy.max_attempts and row.attempts >= policy.max_attempts):
        row.status = given_up
        return
    row.next_attempt_at = now + policy.delay(row.attempts)


def list_notifications(session: Session, status: str | None = None, limit: int = 100,
                       before_id: int | None = None) -> list[Notification]:
    """Newest first; status pending (not yet failed), failed (retrying), dead, delivered or None."""
    stmt = select(Notification).order_by(Notification.id.desc()).limit(limit)
    if before_id is not None:
        stmt = stmt.where(Notification.id < before_id)
    wanted = (status or "").lower()
    if wanted == "pending":
        stmt = stmt.where(Notification.status == PENDING, Notification.last_error == "")
    elif wanted == "failed":
        stmt = stmt.where(Notification.status == PENDING, Notification.last_error != "")
    elif wanted == "dead":
        stmt = stmt.where(Notification.status.in_(GIVEN_UP))
    elif wanted == "delivered":
        stmt = stmt.where(Notification.status == DELIVERED)
    elif wanted:
        raise ValueError(f"unknown status {status!r}: pending, failed, dead or delivered")
    return list(session.scalars(stmt))


def retry(session: Session, notification_id: int, now: datetime | None = None) -> Notification:
    """Bring a dead (or retrying) notification back: due now, attempts from zero; LookupError."""
    row = session.get(Notification, notification_id)
    if row is None:
        raise LookupError(f"no notification {notification_id}")
    if row.status == DELIVERED:
        raise ValueError(f"notification {notification_id} was delivered")
    _revive(row, now or utcnow())
    return row


def retry_dead(session: Session, now: datetime | None = None) -> int:
    """Bring every dead notification back; returns how many."""
    rows = list(session.scalars(select(Notification).where(Notification.status.in_(GIVEN_UP))
                                .order_by(Notification.id)))
    for row in rows:
        _revive(row, now or utcnow())
    return len(rows)


def _revive(row: Notification, now: datetime) -> None:
    row.status, row.attempts, row.next_attempt_at = PENDING, 0, now
