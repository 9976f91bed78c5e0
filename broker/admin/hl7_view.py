"""A stored message for display: HL7 segment by segment, each field with its number and name;
other bodies as received."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from broker.hl7.message import Hl7ParseError, decode, parse

_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8")


@dataclass(frozen=True)
class FieldView:
    address: str   # PID-5
    name: str      # Patient Name
    value: str


@dataclass(frozen=True)
class SegmentView:
    name: str
    fields: list[FieldView]


@lru_cache(maxsize=4096)
def field_name(segment: str, number: int, version: str) -> str:
    """The standard's name of a field ("Patient Name"), from hl7apy's tables; "" if unknown."""
    from hl7apy.core import Field
    from hl7apy.exceptions import HL7apyException
    version = version if version in _VERSIONS else "2.5"
    try:
        long_name = Field(f"{segment}_{number}", version=version).long_name or ""
    except (HL7apyException, ValueError, KeyError, AttributeError):
        return ""
    return long_name.replace("_", " ").title()


def segments(raw: bytes) -> tuple[list[SegmentView], str]:
    """The message's segments with their non-empty fields, and a parse error ("" if none)."""
    try:
        msg = parse(raw)
    except Hl7ParseError as exc:
        try:
            text = decode(raw)
        except Hl7ParseError:
            text = raw.decode("latin-1")
        lines = [line for line in text.replace("\n", "\r").split("\r") if line]
        return [SegmentView(line[:3], [FieldView("", "", line)]) for line in lines], str(exc)
    shown = []
    for name, fields in msg.segments:
        views = [FieldView(f"{name}-{n}", field_name(name, n, msg.version), value)
                 for n, value in enumerate(fields) if n and value]
        shown.append(SegmentView(name, views))
    return shown, ""


def ack_text(ack: bytes | None) -> str:
    """The ACK sent, one segment a line."""
    if not ack:
        return ""
    return bytes(ack).decode("utf-8", "replace").replace("\r", "\n").strip()


def body_text(raw: bytes) -> str:
    """A non-HL7 body (FHIR JSON) as text, indented when it is JSON."""
    text = bytes(raw).decode("utf-8", "replace")
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text
