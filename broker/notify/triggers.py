"""What causes a notification to the EHR, written in the transaction of its cause.

- an order's status changes through MPPS (IHE RAD-6/RAD-7): ORC-5 IP, CM or DC (RAD-3 style);
- its study becomes available: at the final MPPS (trigger "mpps"), once the PACS holds the
  instances the MPPS referenced (trigger "pacs", see pacs_check.py), or when the PACS says so
  (an IAN, IHE RAD-49, or its HTTP hook; trigger "ian").
Each destination is told each thing once: the triggers look at what it was already sent.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from broker.clock import utcnow
from broker.config import NotifySettings
from broker.notify.messages import ORDER_STATUS_CODES, new_control_id, order_values
from broker.notify.outbox import enqueue
from broker.notify.templates import Templates
from broker.store.models import (
    Notification, Order, PerformedStep, PerformedStepLink, RequestedProcedure, ScheduledStep,
    StudyCheck,
)

if TYPE_CHECKING:
    from broker.notify.fhir_triggers import FhirNotifier

log = logging.getLogger(__name__)

HL7_KIND = "hl7"
AVAILABLE = "available"
WAITING, CHECKED, MISSING, REPORTED = "WAITING", "AVAILABLE", "MISSING", "REPORTED"


@dataclass(frozen=True)
class Notifier:
    """The triggers of one configuration: destinations, their message profiles, the trigger;
    `fhir` plans the FHIR server's writes when [notify] fhir is on."""
    settings: NotifySettings
    templates: Templates
    fhir: FhirNotifier | None = None

    @property
    def enabled(self) -> bool:
        """True when anyone is to be told: an HL7 destination or the FHIR server."""
        return bool(self.settings.hl7_to) or self.fhir is not None

    def after_mpps(self, session: Session, performed: PerformedStep) -> None:
        """An MPPS N-CREATE or N-SET was stored: status messages, then the study's trigger."""
        if not self.enabled:
            return
        orders = linked_orders(session, performed)
        for order in orders:
            self.order_changed(session, order)
        if performed.status != "COMPLETED":
            return
        for order in orders:
            if order.status == "COMPLETED":
                self._exam_completed(session, order, performed)

    def order_changed(self, session: Session, order: Order) -> None:
        """Tell every destination the order's status, unless it already knows it."""
        code = ORDER_STATUS_CODES.get(order.status)
        if code is None:
            return
        for destination in self.settings.hl7_to:
            profile = self.templates.profile(destination)
            if profile.status == "none" or (code == "CM" and profile.available == "orm_cm"):
                continue  # orm_cm: the CM waits for the images (study_available)
            if last_told(session, destination, order.id, ("IP", "CM", "DC")) != code:
                self._send(session, destination, profile.status, order, code)
        if self.fhir is not None:
            self.fhir.order_changed(session, order)

    def study_available(self, session: Session, order: Order, study_instance_uid: str,
                        performed: PerformedStep | None = None,
                        counts: tuple[int, int] | None = None) -> None:
        """Tell every destination the study is in the PACS (ORU^R01, or the ORM CM), and the
        FHIR server (an ImagingStudy; `counts`: the series and instances the PACS holds)."""
        if self.fhir is not None:
            self.fhir.study_available(session, order, study_instance_uid, performed, counts)
        for destination in self.settings.hl7_to:
            profile = self.templates.profile(destination)
            if profile.available == "oru_r01":
                if last_told(session, destination, order.id, (AVAILABLE,)) is None:
                    self._send(session, destination, "oru_r01", order, AVAILABLE,
                               study_instance_uid, performed)
            elif profile.available == "orm_cm":
                if last_told(session, destination, order.id, ("IP", "CM", "DC")) != "CM":
                    self._send(session, destination, profile.status, order, "CM",
                               study_instance_uid, performed)

    def pacs_reports_study(self, session: Session, study_instance_uid: str,
                           accession_number: str, source: str) -> int:
        """The PACS says it holds a study (IAN, or its stable-study hook); returns the orders
        it concerns. A study with no MPPS is matched by Study Instance UID or accession."""
        checks = list(session.scalars(select(StudyCheck).where(
            StudyCheck.study_instance_uid == study_instance_uid,
            StudyCheck.status.in_((WAITING, MISSING)))))
        for check in checks:
            if self.settings.trigger == "pacs" and source != "ian":
                # A stable study is not proof of every image the MPPS named: check it now.
                check.status, check.next_check_at = WAITING, utcnow()
                check.give_up_at = utcnow() + timedelta(seconds=self.settings.pacs_give_up_seconds)
            else:
                check.status, check.last_result = CHECKED, f"reported by {source}"
                order = session.get(Order, check.order_id) if check.order_id else None
                if order is not None:
                    self.study_available(session, order, study_instance_uid)
        if checks:
            return len(checks)
        orders = find_orders(session, study_instance_uid, accession_number)
        for order in orders:
            if _exam_running(session, order):
                # The MPPS has not finished yet: kept until it does (trigger "ian").
                session.add(StudyCheck(study_instance_uid=study_instance_uid,
                                       accession_number=accession_number, order_id=order.id,
                                       status=REPORTED, last_result=f"reported by {source}"))
                continue
            session.add(StudyCheck(study_instance_uid=study_instance_uid,
                                   accession_number=accession_number, order_id=order.id,
                                   status=CHECKED, last_result=f"reported by {source}"))
            self.study_available(session, order, study_instance_uid)
        if not orders:
            log.warning("%s: study %s matches no order", source, study_instance_uid)
        return len(orders)

    def _exam_completed(self, session: Session, order: Order, performed: PerformedStep) -> None:
        study = performed.study_instance_uid or _study_of(order)
        trigger = self.settings.trigger
        reported = session.scalars(select(StudyCheck).where(
            StudyCheck.study_instance_uid == study, StudyCheck.order_id == order.id,
            StudyCheck.status == REPORTED)).first()
        if trigger == "mpps" or (trigger == "ian" and reported is not None):
            if reported is not None:
                reported.status = CHECKED
            self.study_available(session, order, study, performed)
            return
        series = (performed.summary or {}).get("series", [])
        now = utcnow()
        session.add(StudyCheck(
            study_instance_uid=study, accession_number=order.accession_number or "",
            order_id=order.id, performed_step_id=performed.id, expected_series=len(series),
            expected_instances=sum(s.get("images", 0) + s.get("non_images", 0) for s in series),
            status=WAITING, next_check_at=now,
            give_up_at=now + timedelta(seconds=self.settings.pacs_give_up_seconds)))

    def _send(self, session: Session, destination: str, template: str, order: Order,
              event: str, study_instance_uid: str = "",
              performed: PerformedStep | None = None) -> Notification:
        values = order_values(session, order, study_instance_uid, performed)
        values["control_id"] = new_control_id()
        if event in ("IP", "CM", "DC"):
            values["order_status"] = event
        payload = self.templates.render(template, values)
        log.info("notify %s: order %s %s queued as %s (control id %s)", destination, order.id,
                 event, template, values["control_id"])
        return enqueue(session, destination, HL7_KIND, payload, ordering_key=f"order:{order.id}",
                       event=event)


def last_told(session: Session, destination: str, order_id: int,
              events: tuple[str, ...]) -> str | None:
    """The newest of `events` queued for the order to this destination, or None."""
    return session.scalars(
        select(Notification.event).where(Notification.ordering_key == f"order:{order_id}",
                                         Notification.destination == destination,
                                         Notification.kind == HL7_KIND,
                                         Notification.event.in_(events))
        .order_by(Notification.id.desc()).limit(1)).first()


def linked_orders(session: Session, performed: PerformedStep) -> list[Order]:
    """The orders whose steps this MPPS covers, in id order."""
    return list(session.scalars(
        select(Order).join(RequestedProcedure, RequestedProcedure.order_id == Order.id)
        .join(ScheduledStep, ScheduledStep.requested_procedure_id == RequestedProcedure.id)
        .join(PerformedStepLink, PerformedStepLink.scheduled_step_id == ScheduledStep.id)
        .where(PerformedStepLink.performed_step_id == performed.id)
        .distinct().order_by(Order.id)))


def find_orders(session: Session, study_instance_uid: str, accession_number: str) -> list[Order]:
    """Orders holding the study (by Study Instance UID), else by accession number."""
    by_uid = list(session.scalars(
        select(Order).join(RequestedProcedure, RequestedProcedure.order_id == Order.id)
        .where(RequestedProcedure.study_instance_uid == study_instance_uid)
        .distinct().order_by(Order.id))) if study_instance_uid else []
    if by_uid or not accession_number:
        return by_uid
    # Each requested procedure may carry its own accession (IHE RAD-4 IPC-1), else the order's.
    return list(session.scalars(
        select(Order).outerjoin(RequestedProcedure, RequestedProcedure.order_id == Order.id)
        .where(or_(Order.accession_number == accession_number,
                   RequestedProcedure.accession_number == accession_number))
        .distinct().order_by(Order.id)))


def _exam_running(session: Session, order: Order) -> bool:
    step_ids = [s.id for p in order.procedures for s in p.steps]
    return bool(step_ids) and session.scalars(
        select(PerformedStep.id).join(PerformedStepLink,
                                      PerformedStepLink.performed_step_id == PerformedStep.id)
        .where(PerformedStepLink.scheduled_step_id.in_(step_ids),
               PerformedStep.status == "IN PROGRESS").limit(1)).first() is not None


def _study_of(order: Order) -> str:
    return order.procedures[0].study_instance_uid if order.procedures else ""
