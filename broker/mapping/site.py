"""The site's HL7 mapping files, loaded and validated together (IHE RAD TF-2 4.4 field mapping).

mappings/hl7_fields.toml  where each order value is read: addresses like "OBR-18" or "ORC-7.4",
                          tried in order; a [version."2.5.1"] table overlays the defaults.
mappings/senders.toml     per-sender overrides (key "MSH-3" or "MSH-3|MSH-4"): field addresses,
                          patient ID issuer, default PID-3 assigning authority.
mappings/stations.toml    rules for the scheduled station AE title(s): first match wins.
mappings/procedures.toml  the procedure-code table (procedures.py).
Every error names the file and line.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.mapping.procedures import MappingError, ProcedureDefinition, load_procedures

# The values an order mapping yields; each is read from the first non-empty address.
ORDER_FIELDS = (
    "placer_order_number", "filler_order_number", "accession_number", "requested_procedure_id",
    "step_id", "modality", "study_instance_uid", "start", "end", "priority", "procedure_code",
    "referring_physician", "reason", "location", "performing_physician", "station_ae_title",
    "station_name", "protocol_code",
)
_ADDRESS = re.compile(r"^([A-Z][A-Z0-9]{2})-(\d{1,3})(?:\.(\d{1,2}))?(?:\.(\d{1,2}))?$")
_SENDER_KEYS = {"fields", "patient_id_issuer", "default_issuer"}
_RULE_MATCH = ("modality", "procedure_code", "location", "sender")
_RULE_SET = {"station_ae_titles": list, "station_name": str}


@dataclass(frozen=True)
class Address:
    """A 1-based HL7 address: segment, field, component, subcomponent."""
    segment: str
    field: int
    component: int = 1
    subcomponent: int = 0  # 0: the whole component

    def __str__(self) -> str:
        text = f"{self.segment}-{self.field}"
        if self.component != 1 or self.subcomponent:
            text += f".{self.component}"
        return text + (f".{self.subcomponent}" if self.subcomponent else "")


def parse_address(text: str) -> Address:
    """'OBR-18', 'ORC-7.4', 'PID-3.4.1' as an Address; ValueError when malformed."""
    found = _ADDRESS.match(text.strip())
    if not found:
        raise ValueError(f"{text!r} is not an HL7 address like OBR-18 or ORC-7.4")
    seg, fld, comp, sub = found.groups()
    return Address(seg, int(fld), int(comp or 1), int(sub or 0))


@dataclass(frozen=True)
class SenderOverride:
    fields: dict[str, tuple[Address, ...]] = field(default_factory=dict)
    patient_id_issuer: str | None = None
    default_issuer: str = ""


@dataclass(frozen=True)
class StationRule:
    match: dict[str, str]
    station_ae_titles: tuple[str, ...] = ()
    station_name: str = ""

    def matches(self, values: dict[str, str]) -> bool:
        return all(values.get(key, "").upper() == want.upper() for key, want in self.match.items())


@dataclass(frozen=True)
class SiteMappings:
    """Everything the HL7 order and patient mapping reads from mappings/."""
    procedures: dict[str, ProcedureDefinition] = field(default_factory=dict)
    fields: dict[str, tuple[Address, ...]] = field(default_factory=dict)
    version_fields: dict[str, dict[str, tuple[Address, ...]]] = field(default_factory=dict)
    senders: dict[str, SenderOverride] = field(default_factory=dict)
    station_rules: tuple[StationRule, ...] = ()

    def sender(self, app: str, facility: str) -> SenderOverride | None:
        """The override for "APP|FACILITY", else for "APP", else None."""
        return self.senders.get(f"{app}|{facility}") or self.senders.get(app)

    def addresses(self, name: str, version: str, sender: SenderOverride | None) -> tuple[Address, ...]:
        """Where to read `name` for a message of `version` from `sender`."""
        if sender is not None and name in sender.fields:
            return sender.fields[name]
        for key in (version, version[:3]):
            table = self.version_fields.get(key)
            if table and name in table:
                return table[name]
        return self.fields.get(name, ())

    def station_for(self, values: dict[str, str]) -> StationRule | None:
        """The first station rule matching the order's modality/procedure/location/sender."""
        return next((rule for rule in self.station_rules if rule.matches(values)), None)

    def station(self, modality: str, procedure_code: str, location: str,
                sender: str) -> StationRule | None:
        """station_for() of these values."""
        return self.station_for(dict(zip(_RULE_MATCH, (modality, procedure_code, location,
                                                       sender))))


def load_site_mappings(folder: Path) -> SiteMappings:
    """Read and validate every mapping file of `folder`; MappingError names file and line."""
    procedures = load_procedures(folder / "procedures.toml")
    fields_path = folder / "hl7_fields.toml"
    fields: dict[str, tuple[Address, ...]] = {}
    versions: dict[str, dict[str, tuple[Address, ...]]] = {}
    if fields_path.is_file():
        text, data = _read(fields_path)
        fields = _field_table(fields_path, text, data.get("fields", {}), "[fields]")
        for version, table in data.get("version", {}).items():
            versions[version] = _field_table(fields_path, text, table, f'[version."{version}"]')
        for key in data:
            if key not in ("fields", "version"):
                raise MappingError(f"{fields_path}:{_line_of(text, key)}: unknown table {key!r}")
    senders = _load_senders(folder / "senders.toml")
    rules = _load_stations(folder / "stations.toml")
    return SiteMappings(procedures, fields, versions, senders, rules)


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{path}: {exc}") from None


def _field_table(path: Path, text: str, table: Any, where: str) -> dict[str, tuple[Address, ...]]:
    if not isinstance(table, dict):
        raise MappingError(f"{path}:{_line_of(text, where)}: {where} must be a table")
    result: dict[str, tuple[Address, ...]] = {}
    for name, value in table.items():
        line = f"{path}:{_line_of(text, name + ' ', after=where)}"
        if name not in ORDER_FIELDS:
            raise MappingError(f"{line}: unknown field {name!r} (known: {', '.join(ORDER_FIELDS)})")
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise MappingError(f"{line}: {name} must be an address or a list of addresses")
        try:
            result[name] = tuple(parse_address(i) for i in items)
        except ValueError as exc:
            raise MappingError(f"{line}: {name}: {exc}") from None
    return result


def _load_senders(path: Path) -> dict[str, SenderOverride]:
    if not path.is_file():
        return {}
    text, data = _read(path)
    result = {}
    for key, entry in data.get("senders", {}).items():
        header = f'[senders."{key}"]'
        line = f"{path}:{_line_of(text, header)}"
        if not isinstance(entry, dict):
            raise MappingError(f"{line}: sender {key!r} must be a table")
        unknown = set(entry) - _SENDER_KEYS
        if unknown:
            raise MappingError(f"{line}: sender {key!r}: unknown key {sorted(unknown)[0]!r}")
        for name in ("patient_id_issuer", "default_issuer"):
            if name in entry and not isinstance(entry[name], str):
                raise MappingError(f"{line}: sender {key!r}: {name} must be a string")
        fields = _field_table(path, text, entry.get("fields", {}), f'[senders."{key}".fields]')
        result[key] = SenderOverride(fields, entry.get("patient_id_issuer"),
                                     entry.get("default_issuer", ""))
    return result


def _load_stations(path: Path) -> tuple[StationRule, ...]:
    if not path.is_file():
        return ()
    text, data = _read(path)
    rules = []
    rule_lines = [n for n, line in enumerate(text.splitlines(), 1) if line.strip() == "[[rule]]"]
    for index, entry in enumerate(data.get("rule", [])):
        line = f"{path}:{rule_lines[index] if index < len(rule_lines) else 1}"
        match = {k: v for k, v in entry.items() if k in _RULE_MATCH}
        for key, value in entry.items():
            expected = str if key in _RULE_MATCH else _RULE_SET.get(key)
            if expected is None:
                raise MappingError(f"{line}: station rule: unknown key {key!r}")
            if not isinstance(value, expected):
                raise MappingError(f"{line}: station rule: {key} must be {expected.__name__}")
        if not match:
            raise MappingError(f"{line}: station rule matches nothing (give one of {', '.join(_RULE_MATCH)})")
        titles = tuple(entry.get("station_ae_titles", ()))
        for title in titles:
            if not isinstance(title, str) or not 0 < len(title) <= 16 or "\\" in title:
                raise MappingError(f"{line}: station rule: bad station AE title {title!r}")
        rules.append(StationRule(match, titles, entry.get("station_name", "")))
    return tuple(rules)


def _line_of(text: str, needle: str, after: str = "") -> int:
    lines = text.splitlines()
    start = 0
    if after:
        start = next((n for n, line in enumerate(lines) if line.strip().startswith(after)), 0)
    for number in range(start, len(lines)):
        if lines[number].strip().startswith(needle.strip()) or needle in lines[number]:
            return number + 1
    return 1
