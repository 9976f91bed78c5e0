"""The inbound HL7 path: store the raw message, apply it, acknowledge.

frame -> parse -> (duplicate?) -> store raw (commit) -> map + apply (one transaction) -> ACK.
A failure after the raw commit answers AE and leaves the message stored for reprocessing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from broker.clock import utcnow
from broker.domain.lifecycle import IllegalTransition
from broker.hl7 import ack
from broker.hl7.fields import FieldError
from broker.hl7.message import Hl7ParseError, Message, parse
from broker.mapping.procedures import ProcedureDefinition
from broker.store.models import InboundMessage
from broker.store.orders import OrderConflict

log = logging.getLogger(__name__)
CHANNEL = "hl7"


@dataclass(frozen=True)
class IntakeContext:
    procedures: dict[str, ProcedureDefinition]
    new_uid: Callable[[], str]
    patient_id_issuer: str = ""


class Rejected(Exception):
    """The message cannot be accepted at all (AR): unsupported type or version."""

    def __init__(self, text: str, error: tuple[str, str]) -> None:
        super().__init__(text)
        self.error = error


class Failed(Exception):
    """The message was read but could not be applied (AE); it stays stored for reprocessing."""

    def __init__(self, text: str, error: tuple[str, str] = ack.ERR_APPLICATION) -> None:
        super().__init__(text)
        self.error = error


class Handler(Protocol):
    def __call__(self, session: Session, msg: Message, message_id: int,
                 ctx: IntakeContext) -> None: ...


@dataclass(frozen=True)
class Outcome:
    status: str        # PROCESSED, FAILED, REJECTED
    ack: bytes
    message_id: int | None
    duplicate: bool = False


class Hl7Intake:
    """Receives raw HL7 messages and answers each with the bytes of its ACK."""

    def __init__(self, session_factory: sessionmaker[Session], ctx: IntakeContext,
                 handlers: dict[str, Handler]) -> None:
        self._sessions = session_factory
        self._ctx = ctx
        self._handlers = handlers

    def receive(self, raw: bytes, peer: str = "") -> Outcome:
        """Store, apply and acknowledge one message; never raises for bad input."""
        try:
            msg = parse(raw)
        except Hl7ParseError as exc:
            message_id = self._store_unreadable(raw, peer, str(exc))
            log.warning("hl7 from %s: unreadable message (stored as #%s): %s", peer, message_id, exc)
            return Outcome("REJECTED", ack.fallback_ack(raw, str(exc)), message_id)
        header = ack.AckHeader.of(msg)
        previous = self._previous(msg)
        if previous is not None:
            log.info("hl7 from %s: resend of control id %s (message #%s): not applied again",
                     peer, msg.control_id, previous.id)
            return Outcome(previous.status, previous.ack or ack.build_ack(header, "AA"),
                           previous.id, duplicate=True)
        message_id = self._store(raw, msg, peer)
        if message_id is None:  # a concurrent resend won the insert
            previous = self._previous(msg)
            return Outcome(previous.status, previous.ack or ack.build_ack(header, "AA"),
                           previous.id, duplicate=True)
        return self._apply(message_id, msg, header, peer)

    def reprocess(self, message_id: int) -> Outcome:
        """Apply a stored message again (after a fix to data or mappings)."""
        with self._sessions() as session:
            row = session.get(InboundMessage, message_id)
            if row is None:
                raise KeyError(f"no inbound message #{message_id}")
            if row.status == "PROCESSED":
                raise ValueError(f"message #{message_id} was already processed")
            raw = row.raw
        msg = parse(raw)
        return self._apply(message_id, msg, ack.AckHeader.of(msg), "reprocess")

    def _apply(self, message_id: int, msg: Message, header: ack.AckHeader, peer: str) -> Outcome:
        status, text, error = "PROCESSED", "", None
        try:
            handler = self._handler_for(msg)
            with self._sessions.begin() as session:
                handler(session, msg, message_id, self._ctx)
        except Rejected as exc:
            status, text, error = "REJECTED", str(exc), exc.error
        except Failed as exc:
            status, text, error = "FAILED", str(exc), exc.error
        except FieldError as exc:
            status, text, error = "FAILED", str(exc), ack.ERR_REQUIRED_FIELD
        except OrderConflict as exc:
            status, text, error = "FAILED", str(exc), ack.ERR_DUPLICATE_KEY
        except IllegalTransition as exc:
            status, text, error = "FAILED", str(exc), ack.ERR_APPLICATION
        except Exception:  # noqa: BLE001 - an unexpected bug must still be answered and kept
            log.exception("hl7 message #%s (control id %s): processing failed", message_id,
                          msg.control_id)
            status, text, error = "FAILED", "internal error while processing the message", \
                ack.ERR_APPLICATION
        code = {"PROCESSED": "AA", "FAILED": "AE", "REJECTED": "AR"}[status]
        ack_bytes = ack.build_ack(header, code, text, error)
        with self._sessions.begin() as session:
            row = session.get(InboundMessage, message_id)
            row.status, row.error, row.ack = status, text, ack_bytes
            row.processed_at = utcnow()
            row.attempts += 1
        log.info("hl7 from %s: %s control id %s -> %s (message #%s)%s", peer, msg.message_type,
                 msg.control_id, code, message_id, f": {text}" if text else "")
        return Outcome(status, ack_bytes, message_id)

    def _handler_for(self, msg: Message) -> Handler:
        if msg.version not in ack.SUPPORTED_VERSIONS:
            raise Rejected(f"HL7 version {msg.version!r} is not supported", ack.ERR_UNSUPPORTED_VERSION)
        handler = self._handlers.get(msg.message_type)
        if handler is None:
            raise Rejected(f"message type {msg.message_type} is not supported",
                           ack.ERR_UNSUPPORTED_MESSAGE_TYPE)
        return handler

    def _previous(self, msg: Message) -> InboundMessage | None:
        if not msg.control_id:
            return None
        with self._sessions() as session:
            return session.execute(select(InboundMessage).where(
                InboundMessage.channel == CHANNEL, InboundMessage.sender == msg.sender,
                InboundMessage.control_id == msg.control_id)).scalar_one_or_none()

    def _store(self, raw: bytes, msg: Message, peer: str) -> int | None:
        try:
            with self._sessions.begin() as session:
                row = InboundMessage(channel=CHANNEL, sender=msg.sender,
                                     control_id=msg.control_id or None,
                                     message_type=msg.message_type, peer=peer, raw=raw)
                session.add(row)
                session.flush()
                return row.id
        except IntegrityError:
            return None

    def _store_unreadable(self, raw: bytes, peer: str, error: str) -> int:
        with self._sessions.begin() as session:
            row = InboundMessage(channel=CHANNEL, sender="", control_id=None, peer=peer, raw=raw,
                                 status="REJECTED", error=error, processed_at=utcnow(), attempts=1)
            session.add(row)
            session.flush()
            return row.id
