"""FHIR notifications planned in the transaction of their cause (the outbox kind "fhir").

The same triggers that tell the HL7 destinations call these: an order's progress (a Task or
the ServiceRequest's status, per mappings/fhir.toml [notify] progress) and its study becoming
available (an ImagingStudy). Only database reads happen here; the FHIR server is asked at
delivery (fhir_deliver.py), so nothing here waits on the network inside a transaction.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.clock import utcnow
from broker.fhir.mapping import FhirMapping
from broker.fhir.orders import subject_reference
from broker.notify.fhir_out import (
    FHIR_KIND, IMAGING_STUDY, REQUEST_STATUS, REQUEST_STATUSES, TASK, Links, Planned, StudyFacts,
    encode, imaging_study, relative, task, token,
)
from broker.notify.messages import ORDER_STATUS_CODES, latest_performed, procedure_of
from broker.notify.outbox import enqueue
from broker.store.models import InboundMessage, Notification, Order, PerformedStep

log = logging.getLogger(__name__)
AVAILABLE = "available"


@dataclass(frozen=True)
class FhirNotifier:
    """Plans the writes to one FHIR server (the outbox destination is its base URL)."""
    base_url: str
    mapping: FhirMapping

    @property
    def destination(self) -> str:
        return self.base_url[:64]

    def order_changed(self, session: Session, order: Order) -> None:
        """Queue the order's progress, unless the server was already told this status."""
        code = ORDER_STATUS_CODES.get(order.status)
        mode = self.mapping.progress
        if code is None or mode == "none" or (mode == "status" and code not in REQUEST_STATUSES):
            return
        if last_told(session, self.destination, order.id, ("IP", "CM", "DC")) == code:
            return
        if mode == "task":
            performed = latest_performed(session, order)
            resource = task(code, utcnow(), performed.started_at if performed else None,
                            performed.ended_at if performed else None)
            planned = Planned(TASK, order.id, self.links(session, order), resource)
        else:
            planned = Planned(REQUEST_STATUS, order.id, self.links(session, order),
                              status=REQUEST_STATUSES[code])
        self._enqueue(session, order, planned, code)

    def study_available(self, session: Session, order: Order, study_instance_uid: str,
                        performed: PerformedStep | None = None,
                        counts: tuple[int, int] | None = None) -> None:
        """Queue the ImagingStudy (once per order). `counts`: (series, instances) the PACS
        holds; else the ones the MPPS reported."""
        if last_told(session, self.destination, order.id, (AVAILABLE,)) is not None:
            return
        facts = self.study_facts(session, order, study_instance_uid, performed, counts)
        if not facts.study_instance_uid:
            log.warning("notify fhir: order %s has no Study Instance UID: no ImagingStudy",
                        order.id)
            return
        planned = Planned(IMAGING_STUDY, order.id, self.links(session, order),
                          imaging_study(facts))
        self._enqueue(session, order, planned, AVAILABLE)

    def study_facts(self, session: Session, order: Order, study_instance_uid: str,
                    performed: PerformedStep | None,
                    counts: tuple[int, int] | None) -> StudyFacts:
        """What the broker knows of the study: its order, procedure and latest MPPS."""
        procedure = procedure_of(order, study_instance_uid)
        performed = performed or latest_performed(session, order)
        series = ((performed.summary or {}).get("series") or []) if performed else []
        step = procedure.steps[0] if procedure is not None and procedure.steps else None
        if counts is None and series:
            counts = (len(series), sum(s.get("images", 0) + s.get("non_images", 0)
                                       for s in series))
        accession = (procedure.accession_number if procedure else "") or order.accession_number
        issuer = (procedure.accession_issuer if procedure and procedure.accession_number
                  else order.accession_issuer)
        return StudyFacts(
            study_instance_uid=study_instance_uid or (procedure.study_instance_uid
                                                      if procedure else ""),
            accession_number=accession or "",
            accession_system=self.mapping.system_of(issuer) if accession else "",
            modality=(performed.modality if performed else "") or (step.modality if step else ""),
            started=performed.started_at if performed else None,
            series=counts[0] if counts else None, instances=counts[1] if counts else None,
            description=procedure.code_meaning if procedure else "")

    def links(self, session: Session, order: Order) -> Links:
        """The ServiceRequest and Patient of a FHIR order as stored at intake; for other
        orders the identifiers to search them by. Identifiers without an issuer are left out:
        a value alone could name another patient's record on the server."""
        if order.source_channel == "fhir" and order.source_message_id:
            message = session.get(InboundMessage, order.source_message_id)
            resource = json.loads(message.raw) if message is not None else {}
            if resource.get("id"):
                return Links(service_request=f"ServiceRequest/{resource['id']}",
                             patient=relative(subject_reference(resource, self.mapping),
                                              self.base_url))
        requests = []
        procedure = procedure_of(order, "")
        for number, issuer in ((order.accession_number, order.accession_issuer),
                               (procedure.accession_number if procedure else "",
                                procedure.accession_issuer if procedure else ""),
                               (order.placer_order_number, order.placer_issuer)):
            if number and issuer:
                requests.append(token(self.mapping.system_of(issuer), number))
        patients = [token(self.mapping.system_of(i.issuer), i.value)
                    for i in order.patient.identifiers if i.value and i.issuer]
        return Links(request_identifiers=tuple(dict.fromkeys(requests)),
                     patient_identifiers=tuple(patients))

    def _enqueue(self, session: Session, order: Order, planned: Planned, event: str) -> None:
        log.info("notify fhir: order %s %s queued as %s", order.id, event, planned.write)
        enqueue(session, self.destination, FHIR_KIND, encode(planned),
                ordering_key=f"order:{order.id}", event=event)


def last_told(session: Session, destination: str, order_id: int,
              events: tuple[str, ...]) -> str | None:
    """The newest of `events` queued for the order to this FHIR server, or None."""
    return session.scalars(
        select(Notification.event).where(Notification.ordering_key == f"order:{order_id}",
                                         Notification.destination == destination,
                                         Notification.kind == FHIR_KIND,
                                         Notification.event.in_(events))
        .order_by(Notification.id.desc()).limit(1)).first()
