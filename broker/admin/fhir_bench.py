"""The mapping bench for FHIR: a pasted ServiceRequest (with its Patient contained, or both in
a Bundle) read as the FHIR intake reads it, each value with the FHIRPath expression and
mappings/fhir.toml line it came from. Nothing is stored, nothing is fetched."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from broker.admin.mapping_bench import BenchResult, item_attributes
from broker.fhir.mapping import FhirMapping, load_fhir_mapping
from broker.fhir.orders import UnmappableOrder, read_service_request
from broker.hl7.intake import IntakeContext
from broker.mapping.procedures import MappingError

# The HL7 mapping's names where fhir.toml spells them otherwise.
_NAMES = {"procedure_code": "procedure_codes"}
_PATIENT = {"name": "family", "identifiers": "identifiers", "issuer": "identifiers",
            "birth_date": "birth_date", "sex": "sex"}


def _resources(data: Any) -> tuple[dict | None, dict | None]:
    """The ServiceRequest and its Patient: from a Bundle, or the request's contained one."""
    if not isinstance(data, dict):
        return None, None
    found = [data] if data.get("resourceType") != "Bundle" else [
        (e or {}).get("resource") or {} for e in data.get("entry", [])]
    request = next((r for r in found if r.get("resourceType") == "ServiceRequest"), None)
    patient = next((r for r in found if r.get("resourceType") == "Patient"), None)
    if request is not None and patient is None:
        patient = next((r for r in request.get("contained", [])
                        if r.get("resourceType") == "Patient"), None)
    return request, patient


class _FhirSources:
    """Where each value of one ServiceRequest came from: the first expression that yields."""

    def __init__(self, mapping: FhirMapping, path: Path, request: dict, patient: dict) -> None:
        self.mapping, self.request, self.patient_resource = mapping, request, patient
        self.lines = path.read_text(encoding="utf-8").splitlines()

    def _line(self, section: str, name: str) -> int:
        start = next((n for n, line in enumerate(self.lines) if line.strip() == f"[{section}]"), 0)
        return next((n + 1 for n in range(start, len(self.lines))
                     if self.lines[n].split("=")[0].strip() == name), 0)

    def _found(self, section: str, name: str, resource: dict, context: dict) -> str:
        table = self.mapping.order if section == "order" else self.mapping.patient
        for expression in table.get(name, ()):
            if [v for v in expression.run(resource, context) if v not in (None, "", [], {})]:
                return f"{expression.text} (fhir.toml:{self._line(section, name)})"
        return ""

    def of(self, name: str, otherwise: str) -> str:
        if name == "order_control":
            return "ServiceRequest.status"
        context = {"patient": self.patient_resource, "requester": {}}
        found = self._found("order", _NAMES.get(name, name), self.request, context)
        return found or f"not mapped from FHIR: {otherwise}"

    def patient(self, name: str) -> str:
        found = self._found("patient", _PATIENT[name], self.patient_resource, {})
        return f"Patient.{found}" if found else "not sent"


def try_fhir(text: str, ctx: IntakeContext, folder: Path) -> BenchResult:
    """Read a pasted ServiceRequest as the FHIR intake would, and describe its worklist item."""
    result = BenchResult(message_type="FHIR ServiceRequest")
    try:
        request, patient = _resources(json.loads(text))
    except ValueError as exc:
        result.errors.append(f"not JSON: {exc}")
        return result
    if request is None:
        result.errors.append("no ServiceRequest (paste one, or a Bundle holding it)")
        return result
    try:
        mapping = load_fhir_mapping(folder / "fhir.toml")
        order = read_service_request(request, patient, mapping, ctx.mappings,
                                     patient_id_issuer=mapping.patient_id_issuer)
    except (UnmappableOrder, MappingError, ValueError) as exc:
        result.errors.append(f"{exc} (the notification would be stored as FAILED)")
        return result
    if order.request is None or order.action == "cancel":
        result.errors.append(f"status {order.status!r}: the broker would "
                             f"{'cancel the order' if order.action == 'cancel' else 'leave it alone'}")
        return result
    src = _FhirSources(mapping, folder / "fhir.toml", request, patient or {})
    for proc in order.request.procedures:
        for step in proc.steps:
            result.items.append(item_attributes(src, ctx, order.action, order.request, proc, step))
    return result
