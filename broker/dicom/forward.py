"""Forwarding MPPS messages to DICOM peers (a PACS, a RIS) from the outbox, with retries.

The broker acts as MPPS SCU towards each configured peer (IHE RAD-6/RAD-7 forwarded). A peer
that cannot be reached is retried with backoff; a peer that answers with a failure status has
refused the message, which stays in the outbox as FAILED with the peer's reason.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep
from sqlalchemy.orm import Session, sessionmaker

from broker.config import MppsSettings, parse_peer
from broker.dicom.mpps import FORWARD_KINDS
from broker.notify.outbox import RetryPolicy, claim_due, mark_delivered, mark_failed
from broker.store.models import Notification

log = logging.getLogger(__name__)

DUPLICATE_SOP_INSTANCE = 0x0111


@dataclass(frozen=True)
class Delivery:
    ok: bool
    error: str = ""
    permanent: bool = False


def send_mpps(row: Notification, calling_ae_title: str, timeout: float = 30.0) -> Delivery:
    """Send one outbox row (an N-CREATE or N-SET) to its peer over a new association."""
    peer = parse_peer(row.destination)
    if peer is None:
        return Delivery(False, f"bad destination {row.destination!r}", permanent=True)
    title, host, port = peer
    message = json.loads(row.payload)
    ds = Dataset.from_json(message["dataset"])
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate(host, port, ae_title=title)
    if not assoc.is_established:
        return Delivery(False, f"association with {row.destination} failed")
    try:
        if row.kind == "mpps-n-create":
            status, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep,
                                            message["sop_instance_uid"])
        else:
            status, _ = assoc.send_n_set(ds, ModalityPerformedProcedureStep,
                                         message["sop_instance_uid"])
    finally:
        if assoc.is_established:
            assoc.release()
    if "Status" not in status:
        return Delivery(False, f"no response from {row.destination}")
    code = int(status.Status)
    # 0x0111 on an N-CREATE: an earlier attempt reached the peer before the connection dropped.
    if code == 0 or (code & 0xF000) == 0xB000 or (
            code == DUPLICATE_SOP_INSTANCE and row.kind == "mpps-n-create"):
        return Delivery(True)
    comment = status.get("ErrorComment", "")
    return Delivery(False, f"{row.destination} answered 0x{code:04X} {comment}".strip(),
                    permanent=True)


def forward_due(sessions: sessionmaker[Session], settings: MppsSettings, limit: int = 20) -> int:
    """Deliver the due MPPS rows of the outbox once; returns how many were delivered."""
    policy = RetryPolicy(settings.retry_base_seconds, settings.retry_max_seconds,
                         settings.max_attempts)
    with sessions.begin() as session:
        claimed = [(row.id, row) for row in claim_due(session, FORWARD_KINDS, limit)]
        session.flush()  # the lease and attempt count are committed before anything is sent
        session.expunge_all()
    delivered = 0
    for row_id, row in claimed:
        try:
            result = send_mpps(row, settings.forward_calling_ae_title)
        except Exception as exc:  # noqa: BLE001 - a broken peer must not stop the others
            log.exception("mpps forward #%s to %s failed", row_id, row.destination)
            result = Delivery(False, f"error: {exc}")
        with sessions.begin() as session:
            current = session.get(Notification, row_id)
            if result.ok:
                mark_delivered(current)
                delivered += 1
            else:
                mark_failed(current, result.error, policy, permanent=result.permanent)
                log.warning("mpps forward #%s to %s: %s (attempt %d, %s)", row_id, row.destination,
                            result.error, current.attempts,
                            "given up" if current.status == "FAILED" else "will retry")
    return delivered
