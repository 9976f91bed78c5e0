"""MPPS SCP (PS3.4 F.7, IHE RAD-6/RAD-7): N-CREATE and N-SET handlers.

Each request is checked against PS3.4 Table F.7.2-1, stored with its effect on the schedule in
one transaction (with its forwarding rows in the outbox), then answered. A refused request is
answered with the status PS3.7 Annex C gives it and the offending tags, logged, and kept as an
inbound_message row so nothing the modality sent is lost.
"""
from __future__ import annotations

import json
import logging
import threading
from contextlib import nullcontext
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import evt
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from broker.clock import utcnow
from broker.config import MppsSettings
from broker.dicom.mpps_attributes import (
    DUPLICATE_SOP_INSTANCE, INVALID_ATTRIBUTE_VALUE, NO_SUCH_SOP_INSTANCE, PROCESSING_FAILURE,
    AttributeProblem, check_create_attributes, check_final_state, check_set_attributes,
    problem_from_value,
)
from broker.dicom.mpps_dataset import (
    build_report, dicom_datetime, discontinuation_reason, summary, text,
)
from broker.domain.mpps import (
    FINAL_PERFORMED, PerformedRefused, PerformedStatus, check_create, check_update, parse_status,
)
from broker.notify.outbox import enqueue
from broker.store.models import InboundMessage
from broker.store.performed import find_performed, start_performed_step, update_performed_step

log = logging.getLogger(__name__)

SUCCESS = 0x0000
FORWARD_KINDS = ("mpps-n-create", "mpps-n-set")
# SQLite has one writer: MPPS transactions from concurrent associations take turns here rather
# than fail on a lock upgrade. PostgreSQL relies on row locks instead.
_sqlite_writer = threading.Lock()


def _writer(sessions: sessionmaker[Session]):
    bind = sessions.kw.get("bind")
    return _sqlite_writer if bind is not None and bind.dialect.name == "sqlite" else nullcontext()


def _status(kind: str, problem: AttributeProblem) -> Dataset:
    """A failure status naming the offending tags (PS3.7 C.4).

    N-SET-RSP carries an Attribute Identifier List (0000,1005); N-CREATE-RSP has no such field
    (PS3.7 10.3.5), so there the tags lead the Error Comment, e.g. "(0040,0241) missing ...".
    """
    status = Dataset()
    status.Status = problem.status
    if kind == "N-SET" and problem.tags:
        status.AttributeIdentifierList = problem.tags
        status.ErrorComment = problem.comment[:64]
    else:
        tags = " ".join(f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in problem.tags)
        status.ErrorComment = f"{tags} {problem.comment}".strip()[:64]
    return status


def handle_n_create(event: evt.Event, sessions: sessionmaker[Session],
                    settings: MppsSettings, notifier: Any = None
                    ) -> tuple[int | Dataset, Dataset | None]:
    """N-CREATE of an MPPS instance (PS3.4 F.7.2.1)."""
    calling = event.assoc.requestor.ae_title
    uid = event.request.AffectedSOPInstanceUID
    assigned = uid is None  # PS3.7 10.1.5.1.4: the SCP assigns the UID the SCU left out
    uid = str(uid) if uid else generate_uid()
    raw, ds = b"", None
    try:
        ds = event.attribute_list
        raw = _raw(uid, ds)
        check_create_attributes(ds)
        try:
            check_create(parse_status(text(ds, "PerformedProcedureStepStatus")))
        except PerformedRefused as exc:
            raise problem_from_value(INVALID_ATTRIBUTE_VALUE, "PerformedProcedureStepStatus",
                                     str(exc)) from None
        report = build_report(ds, uid, calling)
        with _writer(sessions), sessions.begin() as session:
            if find_performed(session, uid) is not None:
                raise AttributeProblem(DUPLICATE_SOP_INSTANCE, "MPPS SOP Instance already exists")
            row = start_performed_step(session, report, f"dicom:{calling}")
            _forward(session, settings, "mpps-n-create", uid, ds)
            if notifier is not None:  # the EHR's status message commits with the change
                notifier.after_mpps(session, row)
            _inbound(session, "N-CREATE", calling, uid, raw, "PROCESSED", "")
            unscheduled = row.unscheduled
    except AttributeProblem as problem:
        return _refuse("N-CREATE", calling, uid, raw, problem, sessions), None
    except IntegrityError:
        # A concurrent N-CREATE of the same instance won the race (unique SOP Instance UID).
        with sessions() as session:
            if find_performed(session, uid) is None:
                log.exception("dicom N-CREATE from %s: store refused MPPS %s", calling, uid)
                return _refuse("N-CREATE", calling, uid, raw, AttributeProblem(
                    PROCESSING_FAILURE, "store refused the MPPS"), sessions), None
        return _refuse("N-CREATE", calling, uid, raw, AttributeProblem(
            DUPLICATE_SOP_INSTANCE, "MPPS SOP Instance already exists"), sessions), None
    except Exception:  # noqa: BLE001 - answer and keep serving; the cause is logged
        log.exception("dicom N-CREATE from %s: cannot process MPPS %s", calling, uid)
        raw = raw or _encoded(event.request, "AttributeList")
        return _refuse("N-CREATE", calling, uid, raw, AttributeProblem(
            PROCESSING_FAILURE, "cannot process the attribute list"), sessions), None
    log.info("dicom N-CREATE from %s: MPPS %s IN PROGRESS%s", calling, uid,
             " (unscheduled)" if unscheduled else "")
    if assigned:
        reply = Dataset()
        reply.AffectedSOPInstanceUID = uid
        return SUCCESS, reply
    return SUCCESS, None


def handle_n_set(event: evt.Event, sessions: sessionmaker[Session],
                 settings: MppsSettings, notifier: Any = None
                 ) -> tuple[int | Dataset, Dataset | None]:
    """N-SET of an MPPS instance (PS3.4 F.7.2.2)."""
    calling = event.assoc.requestor.ae_title
    uid = str(event.request.RequestedSOPInstanceUID)
    raw = b""
    try:
        modification = event.modification_list
        raw = _raw(uid, modification)
        with _writer(sessions), sessions.begin() as session:
            row = find_performed(session, uid, lock=True)
            if row is None:
                raise AttributeProblem(NO_SUCH_SOP_INSTANCE, "no such MPPS SOP Instance")
            try:
                check_update(PerformedStatus(row.status))
            except PerformedRefused as exc:
                raise AttributeProblem(PROCESSING_FAILURE, str(exc)) from None
            check_set_attributes(modification)
            new_status = _new_status(modification, PerformedStatus(row.status))
            merged = Dataset.from_json(row.dataset)
            for elem in modification:
                merged[elem.tag] = elem  # PS3.7 10.1.3: N-SET replaces whole attributes
            if new_status in FINAL_PERFORMED:
                check_final_state(merged, new_status is PerformedStatus.COMPLETED)
            update_performed_step(
                session, row, new_status, merged.to_json_dict(), summary(merged),
                f"dicom:{calling}",
                ended_at=dicom_datetime(text(merged, "PerformedProcedureStepEndDate"),
                                        text(merged, "PerformedProcedureStepEndTime")),
                discontinuation_reason=discontinuation_reason(merged))
            _forward(session, settings, "mpps-n-set", uid, modification)
            if notifier is not None:
                notifier.after_mpps(session, row)
            _inbound(session, "N-SET", calling, uid, raw, "PROCESSED", "")
    except AttributeProblem as problem:
        return _refuse("N-SET", calling, uid, raw, problem, sessions), None
    except Exception:  # noqa: BLE001 - answer and keep serving; the cause is logged
        log.exception("dicom N-SET from %s: cannot process MPPS %s", calling, uid)
        raw = raw or _encoded(event.request, "ModificationList")
        return _refuse("N-SET", calling, uid, raw, AttributeProblem(
            PROCESSING_FAILURE, "cannot process the modification list"), sessions), None
    log.info("dicom N-SET from %s: MPPS %s %s", calling, uid, new_status.value)
    return SUCCESS, None


def _new_status(modification: Dataset, current: PerformedStatus) -> PerformedStatus:
    if "PerformedProcedureStepStatus" not in modification:
        return current
    try:
        return parse_status(text(modification, "PerformedProcedureStepStatus"))
    except PerformedRefused as exc:
        raise problem_from_value(INVALID_ATTRIBUTE_VALUE, "PerformedProcedureStepStatus",
                                 str(exc)) from None


def _raw(uid: str, ds: Dataset) -> bytes:
    """What was received, as kept in inbound_message: the instance UID and the DICOM JSON."""
    return json.dumps({"sop_instance_uid": uid, "dataset": ds.to_json_dict()}).encode()


def _encoded(request: Any, name: str) -> bytes:
    """The data set bytes as received, kept when they could not even be decoded."""
    stream = getattr(request, name, None)
    return stream.getvalue() if stream is not None else b""


def _forward(session: Session, settings: MppsSettings, kind: str, uid: str, ds: Dataset) -> None:
    """One outbox row per configured peer, ordered per MPPS so N-SET never overtakes N-CREATE."""
    if not settings.forward_to:
        return
    payload = json.dumps({"sop_instance_uid": uid, "dataset": ds.to_json_dict()}).encode()
    for peer in settings.forward_to:
        enqueue(session, peer, kind, payload, ordering_key=f"mpps:{uid}")


def _inbound(session: Session, kind: str, calling: str, uid: str, raw: bytes, status: str,
             error: str) -> None:
    session.add(InboundMessage(channel="dicom", sender=calling, control_id=None,
                               message_type=f"MPPS {kind}", raw=raw,
                               status=status, error=error, processed_at=utcnow(), attempts=1))


def _refuse(kind: str, calling: str, uid: str, raw: bytes, problem: AttributeProblem,
            sessions: sessionmaker[Session]) -> Dataset:
    """Log the refusal, keep what was received, and build the failure status."""
    log.warning("dicom %s from %s: MPPS %s refused: %s", kind, calling, uid, problem)
    try:
        with _writer(sessions), sessions.begin() as session:
            _inbound(session, kind, calling, uid, raw, "REJECTED", str(problem))
    except Exception:  # noqa: BLE001 - the answer still goes out
        log.exception("dicom %s from %s: could not keep the refused request", kind, calling)
    return _status(kind, problem)


def bound_handlers(sessions: sessionmaker[Session], settings: MppsSettings,
                   notifier: Any = None) -> list[Any]:
    """The N-CREATE and N-SET handler entries for start_dicom_server's handler list;
    `notifier` (broker.notify.triggers.Notifier) queues the EHR's notifications."""
    return [(evt.EVT_N_CREATE, handle_n_create, [sessions, settings, notifier]),
            (evt.EVT_N_SET, handle_n_set, [sessions, settings, notifier])]
