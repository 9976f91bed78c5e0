"""The inbound HL7 path: store the raw message and apply it in ONE transaction, then acknowledge.

frame -> prepare (parse, map, AA ACK: no database) -> (resend?) -> insert raw -> SAVEPOINT
apply -> COMMIT -> ACK out. A failed apply rolls back to the savepoint only: the raw message
still commits, as FAILED, and can be reprocessed. The caller sends the ACK only after the commit
returned ("store, then ack"). The first message of a transaction goes without the savepoint:
its failure rolls the whole transaction back and stores the raw message again, as it ended.

`prepare` needs no database (parsing, mapping, building the AA); `process` is the part that
needs the transaction, so a group of prepared messages can share one (hl7.writer).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Protocol

from sqlalchemy.orm import Session, sessionmaker

from broker.clock import local_now, utcnow
from broker.domain.lifecycle import IllegalTransition
from broker.hl7 import ack
from broker.hl7.fields import FieldError
from broker.hl7.message import Hl7ParseError, Message, parse
from broker.mapping.site import SiteMappings
from broker.store.fastsql import savepoint, undo_all
from broker.store.merge import MergeError
from broker.store.models import InboundMessage
from broker.store.order_rows import (
    CORRECT_MESSAGE, FINISH_MESSAGE, FIND_MESSAGE, INSERT_MESSAGE, OrderConflict,
)

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
class StagedHandler:
    """A handler in two steps: `read` maps the message (pure, before the transaction),
    `apply` writes what was read (inside it)."""
    read: Callable[[Message, IntakeContext], Any]
    apply: Callable[[Session, Message, Any, int, IntakeContext], None]


@dataclass
class Prepared:
    """A received message, read as far as possible without the database."""
    raw: bytes
    peer: str
    msg: Message | None = None
    unreadable: str = ""                       # why the bytes are not HL7 at all
    handler: Handler | StagedHandler | None = None
    plan: Any = None                           # what a StagedHandler read
    refusal: Exception | None = None           # raised at apply: Rejected, Failed, FieldError...
    accept_ack: bytes = b""                    # the AA, built ahead for the common outcome
    journal_seq: int | None = None             # its record in the intake journal, if any
    received_at: datetime | None = None        # when the listener took it (the journal's time)


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


class Hl7Intake:
    """Receives raw HL7 messages and answers each with the bytes of its ACK."""

    def __init__(self, session_factory: sessionmaker[Session], ctx: IntakeContext,
                 handlers: dict[str, Handler]) -> None:
        self._sessions = session_factory
        self.ctx = ctx
        self._handlers = handlers

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self._sessions

    def prepare(self, raw: bytes, peer: str = "") -> Prepared:
        """Parse and map `raw` and build its AA; never raises (a problem is kept for `process`)."""
        item = Prepared(raw, peer)
        try:
            item.msg = parse(raw)
        except Hl7ParseError as exc:
            item.unreadable = str(exc)
            return item
        try:
            item.handler = self._handler_for(item.msg)
            if isinstance(item.handler, StagedHandler):
                item.plan = item.handler.read(item.msg, self.ctx)
            item.accept_ack = ack.build_ack(ack.AckHeader.of(item.msg), "AA")
        except Exception as exc:  # noqa: BLE001 - answered and stored by process()
            item.refusal = exc
        return item

    def receive(self, raw: bytes, peer: str = "") -> Outcome:
        """Store, apply and acknowledge one message in its own transaction; never raises for bad input."""
        return self.store(self.prepare(raw, peer))

    def store(self, item: Prepared) -> Outcome:
        """`process` in a transaction of its own."""
        with self._sessions.begin() as session:
            return self.process(session, item)

    def process(self, session: Session, item: Prepared, first: bool = False) -> Outcome:
        """Store and apply one prepared message inside the caller's transaction (the caller
        commits). `first`: the transaction holds nothing else yet, and `session` is held
        across transactions (fastsql.commit_held), so a failure may roll all of it back."""
        msg, peer = item.msg, item.peer
        if msg is None:
            ack_bytes = ack.fallback_ack(item.raw, item.unreadable)
            message_id = self._insert(session, item, "REJECTED", item.unreadable, ack_bytes)
            log.warning("hl7 from %s: unreadable message (stored as #%s): %s", peer, message_id,
                        item.unreadable)
            return Outcome("REJECTED", ack_bytes, message_id)
        # Stored as it will most often end, with its AA: a message that fails is corrected
        # below, in the same transaction, so no reader ever sees the first version.
        message_id = self._insert(session, item, "PROCESSED", "", item.accept_ack)
        if message_id is None:
            return self._resend(session, item)
        status, text, error, unexpected = self._apply(session, message_id, item, first)
        if status == "PROCESSED" and item.accept_ack:
            ack_bytes = item.accept_ack
        else:
            ack_bytes = ack.build_ack(ack.AckHeader.of(msg), _CODES[status], text, error)
            if first and status != "PROCESSED":  # rolled back with the apply: store it again
                message_id = self._insert(session, item, status, text, ack_bytes)
            else:
                CORRECT_MESSAGE.run(session, {"b_id": message_id, "b_status": status,
                                              "b_error": text, "b_ack": ack_bytes})
        if unexpected is not None:
            _log_unexpected(message_id, msg, unexpected)
        self._log(item, message_id, status, text)
        return Outcome(status, ack_bytes, message_id)

    @staticmethod
    def _resend(session: Session, item: Prepared) -> Outcome:
        """The outcome of the stored copy of a message sent again: it is not applied twice."""
        msg = item.msg
        previous_id, previous_status, previous_ack = FIND_MESSAGE.first(session, {
            "b_channel": CHANNEL, "b_sender": msg.sender, "b_control_id": msg.control_id})
        log.info("hl7 from %s: resend of control id %s (message #%s): not applied again",
                 item.peer, msg.control_id, previous_id)
        return Outcome(previous_status, bytes(previous_ack) if previous_ack else
                       ack.build_ack(ack.AckHeader.of(msg), "AA"), previous_id, duplicate=True)

    def reprocess(self, message_id: int) -> Outcome:
        """Apply a stored message again (after a fix to data or mappings)."""
        with self._sessions.begin() as session:
            row = session.get(InboundMessage, message_id)
            if row is None:
                raise KeyError(f"no inbound message #{message_id}")
            if row.status == "PROCESSED":
                raise ValueError(f"message #{message_id} was already processed")
            item = self.prepare(row.raw, "reprocess")
            if item.msg is None:
                raise ValueError(f"message #{message_id} is not readable HL7: {item.unreadable}")
            status, text, error, unexpected = self._apply(session, row.id, item)
            if unexpected is not None:
                _log_unexpected(message_id, item.msg, unexpected)
            ack_bytes = ack.build_ack(ack.AckHeader.of(item.msg), _CODES[status], text, error)
            FINISH_MESSAGE.run(session, {"b_id": message_id, "b_status": status, "b_error": text,
                                         "b_ack": ack_bytes, "b_at": utcnow()})
            self._log(item, message_id, status, text)
            return Outcome(status, ack_bytes, message_id)

    def _apply(self, session: Session, message_id: int, item: Prepared, whole: bool = False
               ) -> tuple[str, str, tuple[str, str] | None, Exception | None]:
        """Run the handler: (status, error text, ACK error condition, the exception when it
        was a bug). A failure undoes the apply: back to a savepoint, or with `whole` (nothing
        else in the transaction) the whole transaction, raw row included."""
        try:
            with undo_all(session) if whole else savepoint(session):
                self._run(session, message_id, item)
        except Rejected as exc:
            return "REJECTED", str(exc), exc.error, None
        except Failed as exc:
            return "FAILED", str(exc), exc.error, None
        except Exception as exc:  # noqa: BLE001 - an unexpected bug must still be answered and kept
            error = next((e for kind, e in _FAILURES if isinstance(exc, kind)), None)
            if error is not None:
                return "FAILED", str(exc), error, None
            return ("FAILED", "internal error while processing the message", ack.ERR_APPLICATION,
                    exc)
        return "PROCESSED", "", None, None

    def _run(self, session: Session, message_id: int, item: Prepared) -> None:
        if item.refusal is not None:
            raise item.refusal
        if isinstance(item.handler, StagedHandler):
            item.handler.apply(session, item.msg, item.plan, message_id, self.ctx)
        else:
            item.handler(session, item.msg, message_id, self.ctx)

    @staticmethod
    def _log(item: Prepared, message_id: int, status: str, text: str) -> None:
        log.info("hl7 from %s: %s control id %s -> %s (message #%s)%s", item.peer,
                 item.msg.message_type, item.msg.control_id, _CODES[status], message_id,
                 f": {text}" if text else "")

    def _handler_for(self, msg: Message) -> Handler | StagedHandler:
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

    @staticmethod
    def _insert(session: Session, item: Prepared, status: str, error: str,
                ack_bytes: bytes | None) -> int | None:
        """The new row's id; None when a copy (same sender and control id) is stored already."""
        msg, now = item.msg, utcnow()
        return INSERT_MESSAGE.scalar(session, dict(
            channel=CHANNEL, sender=msg.sender if msg else "",
            control_id=(msg.control_id or None) if msg else None,
            message_type=msg.message_type[:32] if msg else "", peer=item.peer[:64], raw=item.raw,
            received_at=item.received_at or now, status=status, error=error, ack=ack_bytes,
            processed_at=now, attempts=1, journal_seq=item.journal_seq))


def _log_unexpected(message_id: int, msg: Message, exc: Exception) -> None:
    log.error("hl7 message #%s (control id %s): processing failed", message_id,
              msg.control_id, exc_info=exc)
