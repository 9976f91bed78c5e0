"""The durable outbox: rows written with the change that causes them, delivered with backoff.

A worker claims a due row by pushing its next attempt past a lease (so a crash mid-delivery
only delays it), delivers it outside the transaction, then marks it delivered or reschedules
it. Rows of one ordering key go out oldest first: a later row waits for the earlier one, also
while that one is dead (never CM before IP), until an admin retries or discards it.
On PostgreSQL several workers share the table with FOR UPDATE SKIP LOCKED (DESIGN.md, "Scale").
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.orm import Session, aliased

from broker.clock import utcnow
from broker.store.models import Notification

PENDING, DELIVERED, FAILED = "PENDING", "DELIVERED", "FAILED"
# Given up: a permanent refusal or the last attempt failed; kept with its error until retried.
# FAILED is the same for MPPS forwarding rows.
DEAD = "DEAD"
GIVEN_UP = (FAILED, DEAD)
# An admin chose not to send a dead row: the rows behind it go on.
DISCARDED = "DISCARDED"
# What `broker outbox list --status` and the admin pages show (see view_of).
VIEWS = ("pending", "failed", "dead", "held", "delivered", "discarded")
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


def _earlier(statuses: tuple[str, ...]):
    """An earlier row of the same ordering key and destination has one of `statuses`."""
    earlier = aliased(Notification)
    return exists().where(and_(earlier.ordering_key == Notification.ordering_key,
                               earlier.destination == Notification.destination,
                               earlier.ordering_key != "", earlier.status.in_(statuses),
                               earlier.id < Notification.id))


def _due(kinds: tuple[str, ...], now: datetime):
    return (select(Notification)
            .where(Notification.status == PENDING, Notification.next_attempt_at <= now,
                   Notification.kind.in_(kinds), ~_earlier((PENDING,) + GIVEN_UP))
            .order_by(Notification.id))


def claim_due(session: Session, kinds: tuple[str, ...], limit: int = 20,
              now: datetime | None = None, lease: timedelta = LEASE) -> list[Notification]:
    """Claim up to `limit` due rows of `kinds` whose earlier rows of the same key are done."""
    now = now or utcnow()
    stmt = _due(kinds, now).limit(limit)
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
    """Newest first: one of VIEWS, or by default every row not delivered or discarded."""
    stmt = select(Notification).order_by(Notification.id.desc()).limit(limit)
    if before_id is not None:
        stmt = stmt.where(Notification.id < before_id)
    wanted = (status or "").lower()
    held = _earlier(GIVEN_UP)
    conditions = {
        "": Notification.status.in_((PENDING,) + GIVEN_UP),
        "pending": and_(Notification.status == PENDING, Notification.last_error == "",
                        ~held),
        "failed": and_(Notification.status == PENDING, Notification.last_error != ""),
        "dead": Notification.status.in_(GIVEN_UP),
        "held": and_(Notification.status == PENDING, held),
        "delivered": Notification.status == DELIVERED,
        "discarded": Notification.status == DISCARDED,
    }
    if wanted not in conditions:
        raise ValueError(f"unknown status {status!r}: one of {', '.join(VIEWS)}")
    return list(session.scalars(stmt.where(conditions[wanted])))


def held_by(session: Session, rows: list[Notification]) -> dict[int, int]:
    """For each waiting row held back by a dead one: the id of the first dead row before it."""
    waiting = [row.id for row in rows if row.status == PENDING and row.ordering_key]
    if not waiting:
        return {}
    later, earlier = aliased(Notification), aliased(Notification)
    stmt = (select(later.id, func.min(earlier.id))
            .join(earlier, and_(earlier.ordering_key == later.ordering_key,
                                earlier.destination == later.destination,
                                earlier.id < later.id, earlier.status.in_(GIVEN_UP)))
            .where(later.id.in_(waiting)).group_by(later.id))
    return dict(session.execute(stmt).all())


def view_of(row: Notification, held: dict[int, int] | None = None) -> str:
    """The row's state in words: one of VIEWS."""
    if row.status in GIVEN_UP:
        return "dead"
    if row.status == PENDING:
        if held and row.id in held:
            return "held"
        return "failed" if row.last_error else "pending"
    return row.status.lower()


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


def discard(session: Session, notification_id: int) -> Notification:
    """Give up a dead notification for good, so the rows held behind it go; LookupError."""
    row = session.get(Notification, notification_id)
    if row is None:
        raise LookupError(f"no notification {notification_id}")
    if row.status not in GIVEN_UP:
        raise ValueError(f"notification {notification_id} is {view_of(row)}: only a dead one "
                         "can be discarded")
    row.status = DISCARDED
    return row


def _revive(row: Notification, now: datetime) -> None:
    # The error goes with the old attempts: the row is simply pending again.
    row.status, row.attempts, row.next_attempt_at, row.last_error = PENDING, 0, now, ""
