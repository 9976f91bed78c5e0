"""The inbound HL7 path, one transaction per message, then the ACK.

parse -> store the raw message -> apply it in a SAVEPOINT -> write its outcome and ACK ->
(the caller commits) -> the ACK is sent.

A message that fails to apply is rolled back to the savepoint only: the raw message still
commits, as FAILED or REJECTED with its AE/AR, and can be reprocessed. The ACK leaves only after
the commit returned ("store, then acknowledge", DESIGN.md). A resend of a stored message (same
sender and MSH-10) is answered with the first ACK and not applied again.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Protocol

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from broker.clock import local_now
from broker.domain.lifecycle import IllegalTransition
from broker.hl7 import ack
from broker.hl7.fields import FieldError
from broker.hl7.message import CharsetError, Header, Hl7ParseError, Message, parse, read_header
from broker.mapping.site import SiteMappings
from broker.store.merge import MergeError
from broker.store.messages import find_copy, finish_message, insert_message
from broker.store.models import InboundMessage
from broker.store.orders import OrderConflict

log = logging.getLogger(__name__)
CHANNEL = "hl7"


@dataclass(frozen=True)
class IntakeContext:
    """What handlers need besides the message: mappings, policies, UID and clock sources."""
    mappings: SiteMappings
    new_uid: Callable[[], str]
    patient_id_issuer: str = ""
    # Missing Study Instance UID: "generate" under the UID root, "accession" (derived), "reject".
    study_uid_policy: str = "generate"
    uid_root: str = "1.2.826.0.1.3680043.10.1254."
    # Senders allowed by MSH-3 / MSH-3|MSH-4 ("APP" or "APP|FACILITY"); empty: any.
    allowed_senders: tuple[str, ...] = ()
    now: Callable[[], datetime] = field(default=local_now)


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

    @property
    def code(self) -> str:
        """MSA-1 of the ACK."""
        return _CODES.get(self.status, "AA")


_CODES = {"PROCESSED": "AA", "FAILED": "AE", "REJECTED": "AR"}

# Domain and store refusals -> (ACK error condition, HL7 table 0357).
_FAILURES: tuple[tuple[type[Exception], tuple[str, str]], ...] = (
    (FieldError, ack.ERR_REQUIRED_FIELD),
    (OrderConflict, ack.ERR_DUPLICATE_KEY),
    (IllegalTransition, ack.ERR_APPLICATION),
    (MergeError, ack.ERR_UNKNOWN_KEY),
)


@dataclass(frozen=True)
class _Result:
    status: str
    text: str = ""
    error: tuple[str, str] | None = None
    bug: Exception | None = None   # an unexpected exception, logged with its traceback


class Hl7Intake:
    """Stores, applies and answers raw HL7 messages."""

    def __init__(self, session_factory: sessionmaker[Session], ctx: IntakeContext,
                 handlers: dict[str, Handler]) -> None:
        self.sessions = session_factory
        self.ctx = ctx
        self._handlers = handlers

    def receive(self, raw: bytes, peer: str = "") -> Outcome:
        """Store, apply and answer one message in a transaction of its own."""
        with self.sessions.begin() as session:
            return self.process(session, raw, peer)

    def process(self, session: Session, raw: bytes, peer: str, *,
                raise_database_errors: bool = False) -> Outcome:
        """Store and apply one message inside the caller's transaction; the caller commits,
        then sends the outcome's ACK. Never raises for bad input.

        `raise_database_errors`: a database error while applying (on PostgreSQL, another
        process inserting the same new patient at the same moment) is raised for the caller
        to retry the message in a fresh transaction, instead of failing the message."""
        try:
            msg = parse(raw)
        except Hl7ParseError as exc:
            return self._store_unreadable(session, raw, peer, exc)
        message_id = insert_message(session, channel=CHANNEL, sender=msg.sender,
                                    control_id=msg.control_id, message_type=msg.message_type,
                                    peer=peer, raw=raw)
        if message_id is None:
            return self._resend(session, msg, peer)
        result = self._apply(session, message_id, msg, raise_database_errors)
        return self._finish(session, message_id, msg, peer, result)

    def reprocess(self, message_id: int, charset: str | None = None) -> Outcome:
        """Apply a stored FAILED/REJECTED message again: its changes and its new outcome
        commit together, or neither does. `charset` (an MSH-18 value such as "8859/1")
        reads bytes a sender labelled with the wrong character set."""
        with self.sessions.begin() as session:
            row = session.get(InboundMessage, message_id)
            if row is None:
                raise KeyError(f"no inbound message #{message_id}")
            if row.status == "PROCESSED":
                raise ValueError(f"message #{message_id} was already processed")
            try:
                msg = parse(row.raw, charset)
            except Hl7ParseError as exc:
                raise ValueError(f"message #{message_id} is not readable HL7: {exc}") from None
            result = self._apply(session, message_id, msg)
            return self._finish(session, message_id, msg, "reprocess", result)

    def _finish(self, session: Session, message_id: int, msg: Message, peer: str,
                result: _Result) -> Outcome:
        ack_bytes = ack.build_ack(ack.AckHeader.of(msg), _CODES[result.status], result.text,
                                  result.error)
        finish_message(session, message_id, result.status, result.text, ack_bytes)
        if result.bug is not None:
            log.error("hl7 message #%s (control id %s): processing failed", message_id,
                      msg.control_id, exc_info=result.bug)
        log.info("hl7 from %s: %s control id %s -> %s (message #%s)%s", peer, msg.message_type,
                 msg.control_id, _CODES[result.status], message_id,
                 f": {result.text}" if result.text else "")
        return Outcome(result.status, ack_bytes, message_id)

    def _store_unreadable(self, session: Session, raw: bytes, peer: str,
                          exc: Hl7ParseError) -> Outcome:
        """Bytes that are not a readable message: stored and answered all the same, naming
        the control id when the MSH segment can be read. Bytes in the wrong character set
        are FAILED (AE), to be reprocessed with the right one; anything else is REJECTED."""
        header = read_header(raw)
        message_id = insert_message(
            session, channel=CHANNEL, sender=header.sender if header else "",
            control_id=header.control_id if header else None,
            message_type=header.message_type if header else "", peer=peer, raw=raw)
        if message_id is None:
            return self._resend(session, header, peer)
        status, error = (("FAILED", ack.ERR_DATA_TYPE) if isinstance(exc, CharsetError) else
                         ("REJECTED", ack.ERR_SEGMENT_SEQUENCE))
        ack_bytes = ack.fallback_ack(raw, str(exc), _CODES[status], error)
        finish_message(session, message_id, status, str(exc), ack_bytes)
        log.warning("hl7 from %s: unreadable message, control id %s (stored as #%s): %s", peer,
                    header.control_id if header else "?", message_id, exc)
        return Outcome(status, ack_bytes, message_id)

    @staticmethod
    def _resend(session: Session, msg: Message | Header, peer: str) -> Outcome:
        copy = find_copy(session, CHANNEL, msg.sender, msg.control_id)
        log.info("hl7 from %s: resend of control id %s (message #%s): not applied again",
                 peer, msg.control_id, copy.id)
        answer = copy.ack or ack.build_ack(ack.AckHeader.of(msg), "AA")
        return Outcome(copy.status, bytes(answer), copy.id, duplicate=True)

    def _apply(self, session: Session, message_id: int, msg: Message,
               raise_database_errors: bool = False) -> _Result:
        """Run the message's handler in a savepoint; a failure rolls back only its changes."""
        try:
            with session.begin_nested():
                self._handler_for(msg)(session, msg, message_id, self.ctx)
        except Rejected as exc:
            return _Result("REJECTED", str(exc), exc.error)
        except Failed as exc:
            return _Result("FAILED", str(exc), exc.error)
        except DBAPIError:
            if raise_database_errors:
                raise
            log.warning("hl7 message #%s (control id %s): database error while applying",
                        message_id, msg.control_id, exc_info=True)
            return _Result("FAILED", "database error while processing the message",
                           ack.ERR_APPLICATION_RECORD_LOCKED)
        except Exception as exc:  # noqa: BLE001 - an unexpected bug must still be answered and kept
            error = next((e for kind, e in _FAILURES if isinstance(exc, kind)), None)
            if error is not None:
                return _Result("FAILED", str(exc), error)
            return _Result("FAILED", "internal error while processing the message",
                           ack.ERR_APPLICATION, bug=exc)
        return _Result("PROCESSED")

    def _handler_for(self, msg: Message) -> Handler:
        allowed = self.ctx.allowed_senders
        if allowed and msg.sending_application not in allowed and msg.sender not in allowed:
            raise Rejected(f"sender {msg.sender!r} is not allowed", ack.ERR_UNKNOWN_KEY)
        if msg.version not in ack.SUPPORTED_VERSIONS:
            raise Rejected(f"HL7 version {msg.version!r} is not supported", ack.ERR_UNSUPPORTED_VERSION)
        if msg.processing_id not in ("P", "T", "D", ""):
            raise Rejected(f"processing id {msg.processing_id!r} is not supported",
                           ack.ERR_UNSUPPORTED_PROCESSING_ID)
        handler = self._handlers.get(msg.message_type)
        if handler is None:
            known = {key.split("^")[0] for key in self._handlers}
            error = (ack.ERR_UNSUPPORTED_EVENT if msg.message_type.split("^")[0] in known
                     else ack.ERR_UNSUPPORTED_MESSAGE_TYPE)
            raise Rejected(f"message type {msg.message_type} is not supported", error)
        return handler
