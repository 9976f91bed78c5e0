"""The FHIR delivery job: claim due "fhir" rows, write them to the FHIR server, mark them.

As for HL7 (deliver.py), no transaction is open while a request travels: the claim (a lease)
commits first, the results are written in one short transaction afterwards. Every write can be
repeated without harm, which is what makes a resend after a lost answer or a crash safe:
- the ImagingStudy is a conditional update, PUT ImagingStudy?identifier=urn:dicom:uid|urn:oid:
  <uid> (FHIR R4 3.1.0.4.3): created once, found again by its Study Instance UID, and an
  ImagingStudy the EHR registered ahead of the exam becomes `available`;
- the Task likewise, PUT Task?identifier=urn:broker:fhir:task|<ServiceRequest id>;
- a ServiceRequest status is read, then PUT with If-Match on the version read (3.1.0.5), and not
  written when the request already has it (or the placer has ended it itself).
A 4xx answer other than 408/429 is final (the row is dead with the OperationOutcome text); 5xx,
timeouts and refused connections are retried with the [notify] backoff.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from broker.config import NotifySettings
from broker.fhir.client import FhirClient, FhirError, entries
from broker.notify.deliver import drain
from broker.notify.fhir_out import (
    DICOM_UID_SYSTEM, FHIR_KIND, IMAGING_STUDY, REQUEST_STATUS, TASK, TASK_SYSTEM, Planned,
    decode, relative, study_identifier, token, with_references,
)
from broker.notify.outbox import Claimed
from broker.store.fhir import record_version

log = logging.getLogger(__name__)
RETRIED_4XX = (408, 429)  # Request Timeout, Too Many Requests: worth another try
# A ServiceRequest the placer has ended is not written over.
_ENDED = ("completed", "revoked", "entered-in-error")


@dataclass(frozen=True)
class Written:
    """One write's outcome. `unreachable`: the server could not be reached, so the rest of
    the batch waits too; `version`: (type, id, versionId) the broker wrote (its echo is then
    recognised by the intake); `note`: what was done, for the log."""
    ok: bool
    error: str = ""
    permanent: bool = False
    unreachable: bool = False
    version: tuple[str, str, int] | None = None
    note: str = ""


class Unresolved(Exception):
    """What a write refers to cannot be found (yet); `permanent` when looking again won't help."""

    def __init__(self, text: str, permanent: bool = False) -> None:
        super().__init__(text)
        self.permanent = permanent


class FhirWriter:
    """Finds what a planned write refers to, then makes the write, with the FHIR client."""

    def __init__(self, client: FhirClient) -> None:
        self.client = client

    def write_batch(self, claimed: list[Claimed]) -> dict[int, Written]:
        """Each row in order; once the server cannot be reached the rest wait (instead of each
        timing out) for their next attempt."""
        results: dict[int, Written] = {}
        last: Written | None = None
        for row in claimed:
            if last is not None and last.unreachable:
                results[row.id] = Written(False, f"not sent: {last.error}", unreachable=True)
                continue
            try:
                last = self.write(row.payload)
            except Exception as exc:  # noqa: BLE001 - one bad row must not stop the rest
                log.exception("notify fhir #%s: writing failed", row.id)
                last = Written(False, f"error: {exc}")
            results[row.id] = last
        return results

    def write(self, payload: bytes) -> Written:
        """Deliver one outbox payload; never raises for a server's answer."""
        try:
            planned = decode(payload)
        except (ValueError, TypeError) as exc:
            return Written(False, f"unreadable FHIR notification: {exc}", permanent=True)
        try:
            return self._write(planned)
        except Unresolved as exc:
            return Written(False, str(exc), permanent=exc.permanent)
        except FhirError as exc:
            if exc.status is None:
                return Written(False, str(exc), unreachable=True)
            if exc.status < 300:
                return Written(True, note="written (the answer was not JSON)")
            retried = exc.status >= 500 or exc.status in RETRIED_4XX
            return Written(False, str(exc), permanent=not retried)

    def _write(self, planned: Planned) -> Written:
        request, patient = self._service_request(planned)
        if planned.write == IMAGING_STUDY:
            patient = patient or self._patient(planned)
            body = with_references(planned, request, patient)
            uid = next(i["value"] for i in body["identifier"] if i["system"] == DICOM_UID_SYSTEM)
            stored = self.client.request("PUT", "ImagingStudy", body=body, params=[
                ("identifier", study_identifier(uid.removeprefix("urn:oid:")))]) or {}
            return Written(True, note=f"ImagingStudy/{stored.get('id', '?')} available"
                           + ("" if request else " (no ServiceRequest found: no basedOn)"))
        if not request:
            return Written(True, note="no ServiceRequest on the server: progress not written")
        if planned.write == TASK:
            body = with_references(planned, request, patient)
            stored = self.client.request("PUT", "Task", body=body, params=[
                ("identifier", token(TASK_SYSTEM, request.rpartition("/")[2]))]) or {}
            return Written(True, note=f"Task/{stored.get('id', '?')} {body['status']}")
        if planned.write == REQUEST_STATUS:
            return self._set_status(request, planned.status)
        raise Unresolved(f"unknown FHIR write {planned.write!r}", permanent=True)

    def _service_request(self, planned: Planned) -> tuple[str, str]:
        """(ServiceRequest reference, its subject) as stored, else searched by identifier;
        ("", "") when none, or more than one, matches."""
        links = planned.links
        if links.service_request:
            return links.service_request, links.patient
        for identifier in links.request_identifiers:
            found = entries(self.client.search("ServiceRequest", [("identifier", identifier)]),
                            "match")
            if len(found) == 1:
                subject = str((found[0].get("subject") or {}).get("reference", ""))
                return f"ServiceRequest/{found[0]['id']}", relative(subject, self.client.base)
            if len(found) > 1:
                log.warning("notify fhir: order %s: %d ServiceRequests share an identifier: "
                            "none is used", planned.order_id, len(found))
        return "", ""

    def _patient(self, planned: Planned) -> str:
        """The Patient of an order that did not come as a ServiceRequest, by identifier; a
        patient not (yet) on the server is retried, an ambiguous one is final."""
        identifiers = planned.links.patient_identifiers
        if not identifiers:
            raise Unresolved("the patient has no identifier with an issuer (PID-3.4): the "
                             "Patient cannot be found safely on the FHIR server", permanent=True)
        for identifier in identifiers:
            found = entries(self.client.search("Patient", [("identifier", identifier)]), "match")
            if len(found) == 1:
                return f"Patient/{found[0]['id']}"
            if len(found) > 1:
                raise Unresolved(f"{len(found)} Patients on the FHIR server carry the patient's "
                                 f"identifier of system {identifier.partition('|')[0]}",
                                 permanent=True)
        systems = ", ".join(dict.fromkeys(i.partition("|")[0] for i in identifiers))
        raise Unresolved(f"no Patient on the FHIR server with the patient's identifiers "
                         f"(systems {systems}); tried again later")

    def _set_status(self, request: str, status: str) -> Written:
        current = self.client.read(request)
        if current is None:
            raise Unresolved(f"{request} is not on the FHIR server", permanent=True)
        if current.get("status") == status or current.get("status") in _ENDED:
            return Written(True, note=f"{request} is {current.get('status')}: left as it is")
        version = str((current.get("meta") or {}).get("versionId", ""))
        headers = {"If-Match": f'W/"{version}"'} if version else {}
        try:
            stored = self.client.request("PUT", request, body={**current, "status": status},
                                         headers=headers) or {}
        except FhirError as exc:
            if exc.status == 412:  # changed since it was read: read it again next time
                return Written(False, f"{exc} (changed meanwhile; read again)")
            raise
        written = str((stored.get("meta") or {}).get("versionId", ""))
        kind, _, rid = request.partition("/")
        return Written(True, note=f"{request} {status}",
                       version=(kind, rid, int(written)) if written.isdigit() else None)


def deliver_fhir_due(sessions: sessionmaker[Session], writer: FhirWriter,
                     settings: NotifySettings) -> int:
    """Deliver the due FHIR notifications; returns how many."""
    return drain(sessions, FHIR_KIND, writer.write_batch, settings, _written)


def _written(session: Session, row_id: int, outcome: Written) -> None:
    if outcome.version is not None:
        record_version(session, *outcome.version)
    log.info("notify fhir #%s: %s", row_id, outcome.note)
