"""The broker's DICOM AE: composition root for Verification, Modality Worklist C-FIND and MPPS."""
from __future__ import annotations

import logging
import socket
from typing import Iterator

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import ModalityWorklistInformationFind, Verification
from pynetdicom.sop_class import ModalityPerformedProcedureStep
from pynetdicom.transport import ThreadedAssociationServer
from sqlalchemy.orm import Session, sessionmaker

from broker.config import DicomSettings, MppsSettings, WorklistSettings
from broker.dicom import mpps
from broker.dicom.matching import InvalidQuery
from broker.dicom.worklist import find_items, full_item, needs_unicode, project

log = logging.getLogger(__name__)

TRANSFER_SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]  # Explicit, Implicit VR LE

# PS3.4 C.4.1.1.4 / K.4.1.1.4 C-FIND statuses.
STATUS_PENDING = 0xFF00
STATUS_CANCEL = 0xFE00
STATUS_IDENTIFIER_MISMATCH = 0xA900
STATUS_UNABLE_TO_PROCESS = 0xC000
STATUS_PROCESSING_FAILURE = 0xC001


def build_ae(settings: DicomSettings) -> AE:
    """An AE offering Verification and MWL FIND as SCP, with the configured limits."""
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_associations = settings.max_associations
    ae.require_called_aet = True
    if settings.allowed_calling_ae_titles:
        ae.require_calling_aet = list(settings.allowed_calling_ae_titles)
    for sop_class in (Verification, ModalityWorklistInformationFind):
        ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
    ae.add_supported_context(ModalityPerformedProcedureStep, TRANSFER_SYNTAXES)  # PS3.4 F.7
    return ae


def start_dicom_server(settings: DicomSettings, worklist: WorklistSettings,
                       session_factory: sessionmaker[Session],
                       mpps_settings: MppsSettings | None = None) -> ThreadedAssociationServer:
    """Start serving in background threads; returns the server (its address, shutdown())."""
    ae = build_ae(settings)
    handlers = [
        (evt.EVT_CONN_OPEN, set_nodelay),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_FIND, handle_find, [session_factory, worklist]),
        (evt.EVT_REJECTED, log_rejected),
        (evt.EVT_ABORTED, log_aborted),
    ]
    handlers += mpps.bound_handlers(session_factory, mpps_settings or MppsSettings())
    return ae.start_server((settings.host, settings.port), block=False, evt_handlers=handlers)


def set_nodelay(event: evt.Event) -> None:
    """Disable Nagle on the association socket: without it each C-FIND waits ~40-100 ms."""
    sock = event.assoc.dul.socket.socket if event.assoc.dul.socket else None
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def handle_echo(event: evt.Event) -> int:
    return 0x0000


def log_rejected(event: evt.Event) -> None:
    requestor = event.assoc.requestor
    log.warning("dicom %s:%s calling %s: association rejected", requestor.address,
                requestor.port, requestor.ae_title)


def log_aborted(event: evt.Event) -> None:
    requestor = event.assoc.requestor
    log.info("dicom %s:%s calling %s: association aborted", requestor.address, requestor.port,
             requestor.ae_title)


def handle_find(event: evt.Event, session_factory: sessionmaker[Session],
                settings: WorklistSettings) -> Iterator[tuple[int, Dataset | None]]:
    """MWL C-FIND: one SQL query, then one pending response per matching step."""
    calling = event.assoc.requestor.ae_title
    try:
        identifier = event.identifier
        with session_factory() as session:
            rows = list(find_items(session, identifier, settings))
    except InvalidQuery as exc:
        log.warning("dicom C-FIND from %s: invalid query: %s", calling, exc)
        yield _failure(STATUS_PROCESSING_FAILURE, str(exc)), None
        return
    except Exception as exc:  # noqa: BLE001 - a malformed identifier must not kill the server
        log.warning("dicom C-FIND from %s: cannot process identifier: %s", calling, exc)
        yield _failure(STATUS_UNABLE_TO_PROCESS, f"cannot process identifier: {exc}"), None
        return
    log.info("dicom C-FIND from %s: %d matches", calling, len(rows))
    charset = identifier.get("SpecificCharacterSet")
    for row in rows:
        if event.is_cancelled:
            yield STATUS_CANCEL, None
            return
        item = project(full_item(row), identifier)
        if needs_unicode(item):
            item.SpecificCharacterSet = "ISO_IR 192"
        elif charset:
            item.SpecificCharacterSet = charset
        yield STATUS_PENDING, item


def _failure(code: int, text: str) -> Dataset:
    """A failure status with an Error Comment (PS3.7 C.4.1.1.4) the operator can read."""
    status = Dataset()
    status.Status = code
    status.ErrorComment = text[:64]
    return status
