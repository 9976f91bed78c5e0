"""Inbound messages (HL7, DICOM, FHIR): stored raw before they are answered, with their outcome."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from broker.clock import utcnow
from broker.store.models import InboundMessage, unprocessed_message

_table = InboundMessage.__table__
# INSERT .. ON CONFLICT DO NOTHING RETURNING id, per dialect, built once: the check for a
# resend and the insert in one statement, which on PostgreSQL also waits out a concurrent
# insert of the same copy instead of failing on it.
_INSERTS = {name: build(_table).on_conflict_do_nothing(
                index_elements=["channel", "sender", "control_id"]).returning(_table.c.id)
            for name, build in (("sqlite", sqlite_insert), ("postgresql", postgresql_insert))}
_FINISH = update(_table).where(_table.c.id == bindparam("message_id")).values(
    status=bindparam("status"), error=bindparam("error"), ack=bindparam("ack"),
    processed_at=bindparam("processed_at"), attempts=_table.c.attempts + 1)


@dataclass(frozen=True)
class StoredOutcome:
    """What an earlier copy of a message ended as."""
    id: int
    status: str
    ack: bytes | None


def insert_message(session: Session, *, channel: str, sender: str, control_id: str | None,
                   message_type: str, peer: str, raw: bytes,
                   received_at: datetime | None = None) -> int | None:
    """Store a received message as RECEIVED; its id, or None when a copy with the same
    (channel, sender, control id) is stored already (a resend)."""
    statement = _INSERTS[session.get_bind().dialect.name]
    return session.execute(statement, dict(
        channel=channel, sender=sender, control_id=control_id or None,
        message_type=message_type[:32], peer=peer[:64], raw=raw,
        received_at=received_at or utcnow(), status="RECEIVED", error="", attempts=0)).scalar()


def find_copy(session: Session, channel: str, sender: str, control_id: str) -> StoredOutcome:
    """The stored copy of a message that was sent again."""
    row = session.execute(select(InboundMessage.id, InboundMessage.status, InboundMessage.ack)
                          .where(InboundMessage.channel == channel,
                                 InboundMessage.sender == sender,
                                 InboundMessage.control_id == control_id)).one()
    return StoredOutcome(row.id, row.status, row.ack)


def finish_message(session: Session, message_id: int, status: str, error: str,
                   ack: bytes | None) -> None:
    """Record how processing a stored message ended (one more attempt)."""
    session.execute(_FINISH, dict(message_id=message_id, status=status, error=error, ack=ack,
                                  processed_at=utcnow()))


@dataclass(frozen=True)
class MessageSummary:
    """One stored inbound message as lists show it (no patient data)."""
    id: int
    received_at: datetime
    channel: str
    sender: str
    control_id: str
    message_type: str
    status: str
    attempts: int
    error: str


def list_messages(session: Session, status: str | None = None, sender: str | None = None,
                  limit: int = 50, before_id: int | None = None,
                  channel: str | None = None) -> list[MessageSummary]:
    """The newest stored messages, optionally by status, sender and channel; page with `before_id`."""
    stmt = select(InboundMessage).order_by(InboundMessage.id.desc()).limit(limit)
    if status:
        wanted = status.upper()
        stmt = stmt.where(InboundMessage.status == wanted)
        # Others are searched in ix_inbound_message_unprocessed, whose term SQLite needs to see;
        # PROCESSED, nearly every row, is found going back by id.
        if wanted != "PROCESSED":
            stmt = stmt.where(unprocessed_message(InboundMessage.status))
    if sender:
        stmt = stmt.where(InboundMessage.sender == sender)
    if channel:
        stmt = stmt.where(InboundMessage.channel == channel)
    if before_id:
        stmt = stmt.where(InboundMessage.id < before_id)
    return [MessageSummary(r.id, r.received_at, r.channel, r.sender, r.control_id or "",
                           r.message_type, r.status, r.attempts, r.error)
            for r in session.scalars(stmt)]
