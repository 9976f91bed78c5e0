"""ServiceRequest versions in: read what they refer to, map, store, apply, each version once.

One resource version is one inbound_message row (channel fhir, control id Type/id/_history/v),
so a repeat is recognised by the same unique key as an HL7 resend. The HTTP reads happen
before the write transaction begins; a version at or below the one applied (an out-of-order
delivery, the echo of the broker's own write) is stored as ignored, never applied.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from broker.domain.lifecycle import IllegalTransition, StepEvent
from broker.fhir.client import FhirClient, FhirError, entries
from broker.fhir.mapping import FhirMapping
from broker.fhir.orders import (
    FhirOrder, UnmappableOrder, read_service_request, requester_reference, study_uid,
    subject_reference,
)
from broker.mapping.site import SiteMappings
from broker.store.fhir import applied_version, lock_version
from broker.store.merge import MergeError
from broker.store.messages import finish_message, insert_message
from broker.store.models import InboundMessage
from broker.store.orders import (
    OrderConflict, apply_event, change_order, create_order, find_order,
)

log = logging.getLogger(__name__)
CHANNEL = "fhir"
# meta.tag the broker puts on what it writes to the FHIR server (its Subscription, and later
# its status updates), so that the echo of its own write is recognised.
OWN_TAG_SYSTEM = "urn:broker:fhir"
_REFUSALS = (UnmappableOrder, OrderConflict, IllegalTransition, MergeError)


# Keys of `included` (resources that came with a search) for registered ImagingStudies.
SEARCHED_STUDIES = "ImagingStudy?searched"


def imaging_study_key(service_request_id: str) -> str:
    """The key of the ImagingStudy based on this ServiceRequest in `included`."""
    return f"ImagingStudy?basedon=ServiceRequest/{service_request_id}"


def included_resources(bundle_entries: list[dict]) -> dict[str, dict]:
    """Included resources by reference, ImagingStudies also by the order they are based on."""
    included: dict[str, dict] = {SEARCHED_STUDIES: {"searched": True}}
    for resource in bundle_entries:
        included[f"{resource.get('resourceType')}/{resource.get('id')}"] = resource
        if resource.get("resourceType") == "ImagingStudy":
            for based_on in resource.get("basedOn") or []:
                reference = str(based_on.get("reference", ""))
                if reference.startswith("ServiceRequest/"):
                    included[imaging_study_key(reference.split("/", 1)[1])] = resource
    return included


def version_of(resource: dict) -> int:
    """meta.versionId as an integer (0 when absent or not a number)."""
    text = str((resource.get("meta") or {}).get("versionId", "0"))
    return int(text) if text.isdigit() else 0


def control_id(resource: dict) -> str:
    """The version's key in inbound_message: Type/id/_history/version (FHIR R4 vread URL)."""
    return f"{resource.get('resourceType')}/{resource.get('id')}/_history/{version_of(resource)}"


def is_own_write(resource: dict) -> bool:
    """True when the broker itself wrote this version (its meta.tag)."""
    return any(t.get("system") == OWN_TAG_SYSTEM for t in (resource.get("meta") or {}).get("tag", []))


@dataclass(frozen=True)
class Applied:
    """How one resource version ended."""
    status: str        # PROCESSED, FAILED, SEEN (nothing stored: applied or stored before)
    message_id: int | None = None
    text: str = ""


class FhirIntake:
    """Applies ServiceRequest versions read from the FHIR server."""

    def __init__(self, sessions: sessionmaker[Session], readers: sessionmaker[Session],
                 client: FhirClient, mapping: FhirMapping, site: SiteMappings,
                 new_uid: Callable[[], str], patient_id_issuer: str = "") -> None:
        self.sessions = sessions
        self.readers = readers
        self.client = client
        self.mapping = mapping
        self.site = site
        self.new_uid = new_uid
        self.patient_id_issuer = patient_id_issuer

    def seen(self, resource: dict) -> bool:
        """True when this version (or a newer one) was applied, or this version is stored."""
        with self.readers() as session:
            if applied_version(session, resource["resourceType"], resource["id"]) >= \
                    version_of(resource):
                return True
            return session.scalar(select(InboundMessage.id).where(
                InboundMessage.channel == CHANNEL, InboundMessage.sender == self.client.base[:255],
                InboundMessage.control_id == control_id(resource))) is not None

    def apply(self, resource: dict, included: dict[str, dict] | None = None,
              peer: str = "") -> Applied:
        """Read, map, store and apply one ServiceRequest version; FhirError when the server
        cannot be read (nothing stored: the catch-up search tries again)."""
        if resource.get("resourceType") != "ServiceRequest" or not resource.get("id"):
            return Applied("SEEN", text="not a ServiceRequest")
        if is_own_write(resource) or self.seen(resource):
            return Applied("SEEN")
        reading = self._read(resource, included or {})
        with self.sessions.begin() as session:
            message_id = insert_message(
                session, channel=CHANNEL, sender=self.client.base[:255],
                control_id=control_id(resource), message_type="ServiceRequest", peer=peer,
                raw=json.dumps(resource, separators=(",", ":")).encode())
            if message_id is None:
                return Applied("SEEN")
            return self._apply_stored(session, message_id, resource, reading)

    def reprocess(self, message_id: int) -> Applied:
        """Apply a stored FAILED ServiceRequest version again, re-reading its Patient."""
        with self.readers() as session:
            row = session.get(InboundMessage, message_id)
            if row is None:
                raise KeyError(f"no inbound message #{message_id}")
            if row.status == "PROCESSED":
                raise ValueError(f"message #{message_id} was already processed")
            resource = json.loads(row.raw)
        reading = self._read(resource, {})
        with self.sessions.begin() as session:
            return self._apply_stored(session, message_id, resource, reading)

    def _read(self, resource: dict, included: dict[str, dict]) -> FhirOrder | UnmappableOrder:
        """The order the version asks for, reading its subject (and requester) as needed."""
        subject = subject_reference(resource, self.mapping)
        patient = included.get(subject) if subject else None
        if patient is None and subject.startswith(("Patient/", "http")):
            patient = self.client.read(subject)  # FhirError propagates: try again later
        requester = None
        reference = requester_reference(resource)
        if reference and self.mapping.needs_requester:
            requester = included.get(reference)
            if requester is None:
                try:
                    requester = self.client.read(reference)
                except FhirError as exc:
                    log.warning("fhir: requester %s not read: %s", reference, exc)
        try:
            return read_service_request(resource, patient, self.mapping, self.site, requester,
                                        self.patient_id_issuer,
                                        self._imaging_study(resource, included))
        except UnmappableOrder as exc:
            return exc

    def _imaging_study(self, resource: dict, included: dict[str, dict]) -> dict | None:
        """The ImagingStudy registered for the order (ImagingStudy.basedOn), when the
        ServiceRequest carries no Study Instance UID itself and is to be scheduled."""
        if study_uid(resource, self.mapping) or resource.get("status") not in ("active", "on-hold"):
            return None
        key = imaging_study_key(resource["id"])
        if key in included:  # the catch-up search brought them (_revinclude)
            return included[key]
        if included.get(SEARCHED_STUDIES):
            return None
        found = entries(self.client.search("ImagingStudy", [
            ("basedon", f"ServiceRequest/{resource['id']}")]), "match")
        return found[0] if found else None

    def _apply_stored(self, session: Session, message_id: int, resource: dict,
                      reading: FhirOrder | UnmappableOrder) -> Applied:
        version = version_of(resource)
        row = lock_version(session, resource["resourceType"], resource["id"])
        name = f"ServiceRequest/{resource['id']} version {version}"
        if row.version >= version:
            # FHIR R4 does not promise delivery in order: an older version must not undo a newer.
            text = f"version {version} is not newer than applied version {row.version}: ignored"
            finish_message(session, message_id, "PROCESSED", text, None)
            log.info("fhir %s: %s (message #%s)", name, text, message_id)
            return Applied("PROCESSED", message_id, text)
        status, text = "PROCESSED", ""
        try:
            if isinstance(reading, UnmappableOrder):
                raise reading
            text = self._apply_order_retrying(session, reading, message_id)
        except _REFUSALS as exc:
            status, text = "FAILED", str(exc)
        except Exception:  # noqa: BLE001 - a bug must still leave the version stored
            log.exception("fhir %s (message #%s): processing failed", name, message_id)
            status, text = "FAILED", "internal error while processing the ServiceRequest"
        if status == "PROCESSED":
            row.version = version
            row.last_updated = str((resource.get("meta") or {}).get("lastUpdated", ""))[:40]
            row.message_id = message_id
        finish_message(session, message_id, status, text, None)
        log.info("fhir %s (status %s) -> %s (message #%s)%s", name, resource.get("status"),
                 status, message_id, f": {text}" if text else "")
        return Applied(status, message_id, text)

    def _apply_order_retrying(self, session: Session, reading: FhirOrder,
                              message_id: int) -> str:
        """_apply_order in a savepoint; on PostgreSQL another process may insert the same new
        patient at the same moment: the clash rolls back the savepoint and, the other
        transaction having committed, a second try finds that patient."""
        for attempt in range(3):
            try:
                with session.begin_nested():
                    return self._apply_order(session, reading, message_id)
            except DBAPIError:
                if attempt == 2:
                    raise
                log.info("fhir message #%s: database clash, applying again", message_id)
        raise AssertionError("unreachable")

    def _apply_order(self, session: Session, reading: FhirOrder, message_id: int) -> str:
        """Create, change, hold or cancel the order as the ServiceRequest status asks."""
        if reading.action == "ignore" or reading.request is None:
            return f"status {reading.status!r}: nothing to do"
        request = reading.request
        order = find_order(session, request.placer_order_number, request.placer_issuer)
        if reading.action == "cancel":
            if order is None:
                return "order not known: nothing to cancel"
            apply_event(session, order, StepEvent.CANCEL)
            return ""
        if order is None:
            order = create_order(session, request, self.new_uid, source_channel=CHANNEL,
                                 source_message_id=message_id)
        else:
            if order.status == "HOLD" and reading.action == "schedule":
                apply_event(session, order, StepEvent.RELEASE)
            # A change of time, code or patient updates the order as an HL7 XO would.
            change_order(session, order, request, self.new_uid)
        if reading.action == "hold" and order.status != "HOLD":
            apply_event(session, order, StepEvent.HOLD)
        return ""
