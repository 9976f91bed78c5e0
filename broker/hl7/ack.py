"""HL7 acknowledgements (AA / AE / AR), built with hl7apy.

hl7apy costs ~3.7 ms to build one ACK, more than the rest of the intake together. So each ACK
shape (version, MSA-1 code, ERR condition, trigger present, text present) is built by hl7apy
once, with marker values in the fields that change per message, and kept as a template; an ACK
is then the template with each marker replaced, in one pass, by the escaped value.
"""
from __future__ import annotations

import itertools
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message as Hl7apyMessage

from broker.hl7.message import Header, Message, read_header

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
    def of(cls, message: Message | Header) -> AckHeader:
        """What an ACK to this message (or to a frame with only its MSH readable) echoes."""
        version = message.version if message.version in SUPPORTED_VERSIONS else "2.5.1"
        return cls(message.sending_application, message.sending_facility, message.control_id,
                   message.trigger_event, message.processing_id or "P", version)


# HL7 table 0357 message error condition codes.
ERR_UNSUPPORTED_MESSAGE_TYPE = ("200", "Unsupported message type")
ERR_UNSUPPORTED_EVENT = ("201", "Unsupported event code")
ERR_UNSUPPORTED_PROCESSING_ID = ("202", "Unsupported processing id")
ERR_UNSUPPORTED_VERSION = ("203", "Unsupported version id")
ERR_UNKNOWN_KEY = ("204", "Unknown key identifier")
ERR_DUPLICATE_KEY = ("205", "Duplicate key identifier")
ERR_APPLICATION_RECORD_LOCKED = ("206", "Application record locked")
ERR_APPLICATION = ("207", "Application internal error")
ERR_REQUIRED_FIELD = ("101", "Required field missing")
ERR_DATA_TYPE = ("102", "Data type error")
ERR_TABLE_VALUE = ("103", "Table value not found")
ERR_SEGMENT_SEQUENCE = ("100", "Segment sequence error")

# Markers hl7apy accepts as ST/ID/TS values and that cannot occur in its own output.
_SLOTS = ("RECAPP", "RECFAC", "STAMP", "TRIGGER", "CONTROLID", "PROCID", "REFID", "TEXT",
          "ERRTEXT")
_MARK = re.compile(r"ZQ(" + "|".join(_SLOTS) + r")QZ")
_templates: dict[tuple, list[str]] = {}
_lock = threading.Lock()


def _hl7apy_template(version: str, code: str, error: tuple[str, str] | None,
                     trigger: bool, text: bool, app: str, facility: str) -> list[str]:
    """Build one ACK shape with hl7apy; returns literal parts and slot names, alternating."""
    msg = Hl7apyMessage("ACK", version=version, validation_level=VALIDATION_LEVEL.TOLERANT)
    msh = msg.msh
    msh.msh_3 = app
    if facility:
        msh.msh_4 = facility
    msh.msh_5 = "ZQRECAPPQZ"
    msh.msh_6 = "ZQRECFACQZ"
    msh.msh_7 = "ZQSTAMPQZ"
    msh.msh_9 = "ACK^ZQTRIGGERQZ^ACK" if trigger else "ACK"
    msh.msh_10 = "ZQCONTROLIDQZ"
    msh.msh_11 = "ZQPROCIDQZ"
    msg.msa.msa_1 = code
    msg.msa.msa_2 = "ZQREFIDQZ"
    if text:
        msg.msa.msa_3 = "ZQTEXTQZ"
    if error is not None:
        err_code, err_text = error
        msg.add_segment("ERR")
        if version >= "2.5":
            msg.err.err_3 = f"{err_code}^{err_text}^HL70357"
            msg.err.err_4 = "E"
            if text:
                msg.err.err_8 = "ZQERRTEXTQZ"
        else:
            # v2.3.1/2.4 ERR-1 (ELD): segment^sequence^field^code&text&table.
            msg.err.err_1 = f"^^^{err_code}&{err_text}&HL70357"
    return _MARK.split(msg.to_er7())


def build_ack(header: AckHeader, code: str, text: str = "",
              error: tuple[str, str] | None = None, now: datetime | None = None,
              app: str = "BROKER", facility: str = "") -> bytes:
    """An ACK with MSA-1 `code` answering `header`; AE/AR carry an ERR segment saying why."""
    key = (header.version, code, error, bool(header.trigger_event), bool(text), app, facility)
    parts = _templates.get(key)
    if parts is None:
        with _lock:
            parts = _templates.get(key) or _hl7apy_template(
                header.version, code, error, bool(header.trigger_event), bool(text), app, facility)
            _templates[key] = parts
    safe_text = _safe(text) if text else ""
    values = {
        "RECAPP": _safe(header.sending_application),
        "RECFAC": _safe(header.sending_facility),
        "STAMP": now.strftime("%Y%m%d%H%M%S") if now is not None else _stamp(),
        "TRIGGER": _safe(header.trigger_event),
        "CONTROLID": f"ACK{next(_counter):010d}",
        "PROCID": _safe(header.processing_id),
        "REFID": _safe(header.control_id),
        "TEXT": safe_text[:80],
        "ERRTEXT": safe_text,
    }
    out = [part if i % 2 == 0 else values[part] for i, part in enumerate(parts)]
    return "".join(out).encode("ascii", "replace")


def _stamp() -> str:
    """The local time now as an HL7 TS, to the second."""
    return time.strftime("%Y%m%d%H%M%S")


_NEEDS_ESCAPE = re.compile(r"[\\|^&~\r\n]")


def _safe(text: str) -> str:
    """Escape HL7 delimiters and keep the ACK ASCII, whatever the sender's text held."""
    if text.isalnum() and text.isascii():
        return text  # the usual application name, control id or event code
    if text.isascii() and not _NEEDS_ESCAPE.search(text):
        return text  # nothing to escape
    text = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    text = text.replace("&", "\\T\\").replace("~", "\\R\\")
    return text.encode("ascii", "replace").decode("ascii").replace("\r", " ").replace("\n", " ")


def fallback_ack(raw: bytes, text: str, code: str = "AR",
                 error: tuple[str, str] = ERR_SEGMENT_SEQUENCE) -> bytes:
    """An answer to bytes that could not be read as a message: it still names the control id
    and the sender when the MSH segment can be read (senders match ACKs by MSA-2)."""
    header = read_header(raw)
    return build_ack(AckHeader.of(header) if header else AckHeader(), code, text, error)
