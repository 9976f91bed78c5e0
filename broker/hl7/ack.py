"""HL7 acknowledgements (AA / AE / AR), built with hl7apy."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message as Hl7apyMessage

from broker.hl7.message import Message

SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8")
_counter = itertools.count(1)


@dataclass(frozen=True)
class AckHeader:
    """What an ACK echoes from the message it answers."""
    sending_application: str = ""
    sending_facility: str = ""
    control_id: str = ""
    trigger_event: str = ""
    processing_id: str = "P"
    version: str = "2.5.1"

    @classmethod
    def of(cls, message: Message) -> AckHeader:
        version = message.version if message.version in SUPPORTED_VERSIONS else "2.5.1"
        return cls(message.get("MSH", 3), message.get("MSH", 4), message.control_id,
                   message.get("MSH", 9, comp=2), message.get("MSH", 11) or "P", version)


# HL7 table 0357 message error condition codes.
ERR_UNSUPPORTED_MESSAGE_TYPE = ("200", "Unsupported message type")
ERR_UNSUPPORTED_EVENT = ("201", "Unsupported event code")
ERR_UNSUPPORTED_VERSION = ("203", "Unsupported version id")
ERR_UNKNOWN_KEY = ("204", "Unknown key identifier")
ERR_DUPLICATE_KEY = ("205", "Duplicate key identifier")
ERR_APPLICATION = ("207", "Application internal error")
ERR_REQUIRED_FIELD = ("101", "Required field missing")
ERR_SEGMENT_SEQUENCE = ("100", "Segment sequence error")


def build_ack(header: AckHeader, code: str, text: str = "",
              error: tuple[str, str] | None = None, now: datetime | None = None,
              app: str = "BROKER", facility: str = "") -> bytes:
    """An ACK with MSA-1 `code` answering `header`; AE/AR carry an ERR segment saying why."""
    msg = Hl7apyMessage("ACK", version=header.version, validation_level=VALIDATION_LEVEL.TOLERANT)
    msh = msg.msh
    msh.msh_3 = app
    if facility:
        msh.msh_4 = facility
    if header.sending_application:
        msh.msh_5 = _safe(header.sending_application)
    if header.sending_facility:
        msh.msh_6 = _safe(header.sending_facility)
    msh.msh_7 = (now or datetime.now()).strftime("%Y%m%d%H%M%S")
    msh.msh_9 = f"ACK^{header.trigger_event}^ACK" if header.trigger_event else "ACK"
    msh.msh_10 = f"ACK{next(_counter):010d}"
    msh.msh_11 = _safe(header.processing_id)
    msg.msa.msa_1 = code
    if header.control_id:
        msg.msa.msa_2 = _safe(header.control_id)
    if text:
        msg.msa.msa_3 = _safe(text)[:80]
    if error is not None:
        err_code, err_text = error
        msg.add_segment("ERR")
        if header.version >= "2.5":
            msg.err.err_3 = f"{err_code}^{err_text}^HL70357"
            msg.err.err_4 = "E"
            if text:
                msg.err.err_8 = _safe(text)
        else:
            # v2.3.1/2.4 ERR-1 (ELD): segment^sequence^field^code&text&table.
            msg.err.err_1 = f"^^^{err_code}&{err_text}&HL70357"
    return msg.to_er7().encode("ascii", "replace")


def _safe(text: str) -> str:
    """Escape HL7 delimiters and keep the ACK ASCII, whatever the sender's text held."""
    text = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    text = text.replace("&", "\\T\\").replace("~", "\\R\\")
    return text.encode("ascii", "replace").decode("ascii").replace("\r", " ").replace("\n", " ")


def fallback_ack(raw: bytes, text: str) -> bytes:
    """An AR for bytes that could not be read as HL7 at all (no usable MSH)."""
    return build_ack(AckHeader(), "AR", text, ERR_SEGMENT_SEQUENCE)
