"""mappings/fhir.toml: FHIRPath expressions saying where each order value comes from, validated
at start-up with file and line, and applied to a ServiceRequest and its Patient."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import fhirpathpy
from fhirpathpy.models import models

from broker.mapping.procedures import MappingError

_MODEL = models["r4"]
ORDER_VALUES = ("placer_order_number", "placer_issuer", "filler_order_number", "filler_issuer",
                "accession_number", "accession_issuer", "procedure_codes", "start", "end",
                "priority", "referring_physician", "reason", "study_instance_uid", "location",
                "subject")
PATIENT_VALUES = ("identifiers", "family", "given", "middle", "birth_date", "sex", "phone",
                  "address")
_SECTIONS = {"order", "patient", "patient_id", "procedure", "issuers", "notify"}
# [notify] progress: how the EHR hears an exam's progress when notify.fhir is on.
PROGRESS_MODES = ("task", "status", "none")
# Trial resources: an expression that cannot run on an empty resource is rejected at start-up.
_SAMPLES = {"order": {"resourceType": "ServiceRequest", "id": "x", "status": "active"},
            "patient": {"resourceType": "Patient", "id": "x"}}
_CONTEXT = {"patient": {"resourceType": "Patient"}, "requester": {"resourceType": "Practitioner"}}


@dataclass(frozen=True)
class Expression:
    """One compiled FHIRPath expression with the text it came from."""
    text: str
    run: Callable[[Any, dict], list]

    @property
    def needs_requester(self) -> bool:
        return "%requester" in self.text


@dataclass(frozen=True)
class FhirMapping:
    """The validated contents of mappings/fhir.toml."""
    order: dict[str, tuple[Expression, ...]]
    patient: dict[str, tuple[Expression, ...]]
    issuers: dict[str, str] = field(default_factory=dict)
    patient_id_issuer: str = ""
    default_procedure: str = ""
    progress: str = "task"


    @property
    def needs_requester(self) -> bool:
        """True when an order expression reads %requester (the Practitioner is then read)."""
        return any(e.needs_requester for exprs in self.order.values() for e in exprs)

    def issuer(self, system: str) -> str:
        """The issuer name of an identifier system ([issuers]), else the system itself."""
        return self.issuers.get(system, system)[:64]

    def system_of(self, issuer: str) -> str:
        """The identifier system of an issuer name: [issuers] read backwards, else the issuer
        itself (as issuer() keeps an unlisted system); "" for no issuer."""
        return next((system for system, name in self.issuers.items() if name == issuer), issuer)


def evaluate(expressions: tuple[Expression, ...], resource: dict, context: dict) -> list:
    """The values of the first expression that yields any."""
    for expression in expressions:
        found = [v for v in expression.run(resource, context) if v not in (None, "", [], {})]
        if found:
            return found
    return []


def load_fhir_mapping(path: Path) -> FhirMapping:
    """Read and validate mappings/fhir.toml; every error names the file and line."""
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{path}: {exc}") from None
    lines = text.splitlines()
    for section in data:
        if section not in _SECTIONS:
            raise MappingError(f"{path}:{_line(lines, f'[{section}]')}: unknown section "
                               f"[{section}]")
    order = _expressions(path, lines, data.get("order", {}), "order", ORDER_VALUES)
    patient = _expressions(path, lines, data.get("patient", {}), "patient", PATIENT_VALUES)
    for name in ("placer_order_number", "procedure_codes"):
        if name not in order:
            raise MappingError(f"{path}:{_line(lines, '[order]')}: [order] {name} is required")
    if "identifiers" not in patient:
        raise MappingError(f"{path}:{_line(lines, '[patient]')}: [patient] identifiers is "
                           "required")
    issuers = data.get("issuers", {})
    for system, name in issuers.items():
        if not isinstance(name, str):
            raise MappingError(f"{path}:{_line(lines, system)}: [issuers] {system!r} must be a "
                               "string")
    unknown = set(data.get("notify", {})) - {"progress"}
    if unknown:
        key = sorted(unknown)[0]
        raise MappingError(f"{path}:{_line(lines, key, after='[notify]')}: [notify] unknown "
                           f"value {key!r} (expected progress)")
    progress = _string(path, lines, data, "notify", "progress") or "task"
    if progress not in PROGRESS_MODES:
        raise MappingError(f"{path}:{_line(lines, 'progress', after='[notify]')}: [notify] "
                           f"progress {progress!r} is not one of {', '.join(PROGRESS_MODES)}")
    return FhirMapping(order=order, patient=patient, issuers=dict(issuers),
                       patient_id_issuer=_string(path, lines, data, "patient_id", "issuer"),
                       default_procedure=_string(path, lines, data, "procedure", "default"),
                       progress=progress)


def _string(path: Path, lines: list[str], data: dict, section: str, key: str) -> str:
    value = data.get(section, {}).get(key, "")
    if not isinstance(value, str):
        raise MappingError(f"{path}:{_line(lines, key)}: [{section}] {key} must be a string")
    return value


def _expressions(path: Path, lines: list[str], table: Any, section: str,
                 known: tuple[str, ...]) -> dict[str, tuple[Expression, ...]]:
    if not isinstance(table, dict):
        raise MappingError(f"{path}:{_line(lines, f'[{section}]')}: [{section}] must be a table")
    result: dict[str, tuple[Expression, ...]] = {}
    for name, value in table.items():
        where = f"{path}:{_line(lines, name, after=f'[{section}]')}"
        if name not in known:
            raise MappingError(f"{where}: [{section}] unknown value {name!r} (expected one of "
                               f"{', '.join(known)})")
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise MappingError(f"{where}: [{section}] {name} must be a FHIRPath expression or a "
                               "list of them")
        result[name] = tuple(_compile(where, section, name, t) for t in texts)
    return result


def _compile(where: str, section: str, name: str, text: str) -> Expression:
    """Compile one expression; refuse what the parser had to repair or what cannot run."""
    try:
        parsed = fhirpathpy.parse(text)
        # The parser recovers from syntax errors by dropping or inventing tokens: what it read
        # must be the whole expression.
        read = "".join(parsed["children"][0]["text"].split()) if parsed.get("children") else ""
        if read != "".join(text.split()):
            raise ValueError("not a valid FHIRPath expression")
        run = fhirpathpy.compile(text, _MODEL)
        run(dict(_SAMPLES["patient" if section == "patient" else "order"]), dict(_CONTEXT))
    except Exception as exc:  # noqa: BLE001 - fhirpathpy raises plain Exception and KeyError
        raise MappingError(f"{where}: [{section}] {name}: {text!r}: {exc}") from None
    return Expression(text, run)


def _line(lines: list[str], key: str, after: str | None = None) -> int:
    """The 1-based line where `key` is defined (after the line `after`, when given)."""
    start = 0
    if after is not None:
        start = next((i for i, l in enumerate(lines) if l.strip() == after), 0)
    for number in range(start, len(lines)):
        stripped = lines[number].strip()
        if stripped == key or stripped.split("=")[0].strip().strip('"') == key:
            return number + 1
    return 1


def parse_fhir_datetime(value: str) -> datetime:
    """A FHIR dateTime/instant as naive local time (scheduled times are the site's local time,
    as DICOM DA/TM are); a date alone is its midnight."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone().replace(tzinfo=None)
    return moment
