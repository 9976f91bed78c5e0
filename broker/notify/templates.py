"""Outbound HL7 message templates (mappings/notify.toml): loaded, validated, rendered.

A template is a list of segment lines with {name} placeholders from a closed set of values
(FIELDS); each value is HL7-escaped (HL7 v2.5.1 2.7) so a patient name with a '^' or '|' in it
cannot break the message. Every error names the file and line.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from broker.mapping.procedures import MappingError

FILE_NAME = "notify.toml"
FIELDS = frozenset("""
control_id timestamp sending_application sending_facility receiving_application
receiving_facility patient_id patient_id_issuer patient_family_name patient_given_name
patient_birth_date patient_sex placer_order_number placer_issuer filler_order_number
filler_issuer accession_number order_status result_status procedure_code procedure_meaning
procedure_scheme requested_procedure_id scheduled_step_id study_instance_uid modality
exam_started exam_ended series_count instance_count
""".split())
STATUS_MESSAGES = ("orm_o01", "omi_o23", "none")
AVAILABLE_MESSAGES = ("oru_r01", "orm_cm", "none")
_DEFAULT_KEYS = ("sending_application", "sending_facility", "receiving_application",
                 "receiving_facility")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"),
            ("\r", "\\X0D\\"), ("\n", "\\X0A\\"))


@dataclass(frozen=True)
class Profile:
    """What one destination is sent: the status message and the study-available message."""
    status: str = "orm_o01"
    available: str = "oru_r01"


@dataclass(frozen=True)
class Templates:
    """Every message template and destination profile of the file."""
    messages: dict[str, tuple[str, ...]]
    profiles: dict[str, Profile]
    defaults: dict[str, str] = field(default_factory=dict)

    def profile(self, destination: str) -> Profile:
        """The destination's own table, else the "*" one."""
        return self.profiles.get(destination) or self.profiles.get("*") or Profile()

    def render(self, name: str, values: Mapping[str, str]) -> bytes:
        """The message `name` with `values` (escaped) and the file's defaults, as UTF-8 bytes."""
        merged = {**self.defaults, **values}
        lines = [_PLACEHOLDER.sub(lambda m: escape(str(merged.get(m.group(1), ""))), line)
                 for line in self.messages[name]]
        return "\r".join(lines).encode("utf-8") + b"\r"


def escape(value: str) -> str:
    """HL7 escape sequences for the delimiters a value may contain."""
    for raw, escaped in _ESCAPES:
        value = value.replace(raw, escaped)
    return value


def load_templates(folder: Path | None, fallback: Path) -> Templates:
    """The site's notify.toml when its folder has one, else the shipped one; validated."""
    path = folder / FILE_NAME if folder is not None and (folder / FILE_NAME).is_file() \
        else fallback / FILE_NAME
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{path}: {exc}") from None
    unknown = set(data) - {"defaults", "destination", "message"}
    if unknown:
        key = sorted(unknown)[0]
        raise MappingError(f"{path}:{_line_of(text, key)}: unknown table {key!r}")
    messages = {name: _check_message(path, text, name, table)
                for name, table in data.get("message", {}).items()}
    profiles = {dest: _check_profile(path, text, dest, table, messages)
                for dest, table in data.get("destination", {}).items()}
    defaults = data.get("defaults", {})
    for key, value in defaults.items():
        if key not in _DEFAULT_KEYS or not isinstance(value, str):
            raise MappingError(f"{path}:{_line_of(text, key)}: defaults.{key}: expected one of "
                               f"{', '.join(_DEFAULT_KEYS)} as a string")
    return Templates(messages, profiles, dict(defaults))


def _check_message(path: Path, text: str, name: str, table: object) -> tuple[str, ...]:
    where = f"{path}:{_line_of(text, f'[message.{name}]')}"
    if not isinstance(table, dict) or set(table) != {"segments"} or not isinstance(
            table["segments"], list) or not table["segments"]:
        raise MappingError(f"{where}: message.{name}: expected exactly a non-empty segments list")
    segments = table["segments"]
    for line in segments:
        if not isinstance(line, str) or not re.match(r"^[A-Z][A-Z0-9]{2}\|", line):
            raise MappingError(f"{where}: message.{name}: {str(line)[:30]!r} is not a segment line")
        for placeholder in _PLACEHOLDER.findall(line):
            if placeholder not in FIELDS:
                raise MappingError(f"{path}:{_line_of(text, '{' + placeholder + '}')}: "
                                   f"message.{name}: unknown value {{{placeholder}}}")
    if not segments[0].startswith("MSH|^~\\&|") or "{control_id}" not in segments[0]:
        raise MappingError(f"{where}: message.{name}: the first segment must be MSH with "
                           "encoding characters ^~\\& and {control_id} in MSH-10")
    return tuple(segments)


def _check_profile(path: Path, text: str, destination: str, table: object,
                   messages: dict[str, tuple[str, ...]]) -> Profile:
    where = f"{path}:{_line_of(text, destination)}"
    if not isinstance(table, dict) or not set(table) <= {"status", "available"}:
        raise MappingError(f"{where}: destination {destination!r}: only status and available")
    profile = Profile(**table)
    for key, allowed in (("status", STATUS_MESSAGES), ("available", AVAILABLE_MESSAGES)):
        value = getattr(profile, key)
        if value not in allowed:
            raise MappingError(f"{where}: destination {destination!r}: {key} {value!r} is not "
                               f"one of {', '.join(allowed)}")
        needed = "none" if value == "orm_cm" else value  # orm_cm sends the status message
        if needed != "none" and needed not in messages:
            raise MappingError(f"{where}: destination {destination!r}: no [message.{needed}]")
    if profile.available == "orm_cm" and profile.status == "none":
        raise MappingError(f"{where}: destination {destination!r}: orm_cm needs a status message")
    return profile


def _line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    return 1
