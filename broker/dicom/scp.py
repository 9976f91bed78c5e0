"""The broker's DICOM AE: composition root for Verification, Modality Worklist C-FIND and MPPS."""
from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from typing import Iterator

from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom import _config as pynetdicom_config
from pynetdicom.sop_class import ModalityWorklistInformationFind, Verification
from pynetdicom.sop_class import ModalityPerformedProcedureStep
from pynetdicom.transport import ThreadedAssociationServer
from sqlalchemy.orm import Session, sessionmaker

from broker.clock import local_now
from broker.config import DicomSettings, MppsSettings, WorklistSettings
from broker.dicom import connections, ian, mpps
from broker.dicom.items import build_item, compile_plan
from broker.dicom.query_match import STATUS_UNABLE_TO_PROCESS, InvalidQuery
from broker.dicom.worklist import QueryContext, find_rows

log = logging.getLogger(__name__)

TRANSFER_SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]  # Explicit, Implicit VR LE

# Linux only: elsewhere the delayed-ACK stall rearm_quickack avoids is left as it is.
QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)

# PS3.4 C.4.1.1.4 / K.4.1.1.4 C-FIND statuses; the failure ones live with InvalidQuery.
STATUS_PENDING = 0xFF00
STATUS_CANCEL = 0xFE00


def build_ae(settings: DicomSettings) -> AE:
    """An AE offering Verification and MWL FIND as SCP, with the configured limits."""
    quiet_pynetdicom()
    ae = AE(ae_title=settings.ae_title)
    # Only admitted associations count toward max_associations (connections.AssociationSlots);
    # pynetdicom also counts connections still negotiating, so its limit is the looser cap.
    ae.maximum_associations = settings.max_associations + settings.max_pending_connections
    # PS3.8 9.1.4: the ARTIM timer bounds how long a connection may wait for its A-ASSOCIATE-RQ.
    ae.acse_timeout = settings.acse_timeout_seconds
    ae.require_called_aet = True
    if settings.allowed_calling_ae_titles:
        ae.require_calling_aet = list(settings.allowed_calling_ae_titles)
    for sop_class in (Verification, ModalityWorklistInformationFind):
        ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
    ae.add_supported_context(ModalityPerformedProcedureStep, TRANSFER_SYNTAXES)  # PS3.4 F.7
    ae.add_supported_context(ian.InstanceAvailabilityNotification, TRANSFER_SYNTAXES)  # PS3.4 R
    return ae


def quiet_pynetdicom() -> None:
    """Stop pynetdicom formatting every identifier and PDU for its debug log.

    It builds those lines whatever the log level: per C-FIND response that costs more than the
    response itself, and the lines hold patient data the broker keeps out of its logs.
    """
    pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False
    pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False
    pynetdicom_config.LOG_HANDLER_LEVEL = "none"


def start_dicom_server(settings: DicomSettings, worklist: WorklistSettings,
                       session_factory: sessionmaker[Session],
                       mpps_settings: MppsSettings | None = None, *,
                       find_sessions: sessionmaker[Session] | None = None,
                       notifier=None) -> ThreadedAssociationServer:
    """Start serving in background threads; returns the server (its address, shutdown()).

    `find_sessions` serves worklist queries (a read-only factory, say); MPPS always writes
    through `session_factory`, which also serves queries when none is given.
    """
    ae = build_ae(settings)
    handlers = [
        (evt.EVT_CONN_OPEN, set_nodelay),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_FIND, handle_find, [find_sessions or session_factory, worklist]),
        (evt.EVT_ABORTED, log_aborted),
    ]
    handlers += connections.bound_handlers(connections.AssociationSlots(settings.max_associations),
                                           ae.acse_timeout, ae.network_timeout)
    if QUICKACK is not None:
        handlers.append((evt.EVT_DATA_SENT, rearm_quickack))
    handlers += ian.with_ian(mpps.bound_handlers(session_factory, mpps_settings or MppsSettings(),
                                                 notifier), session_factory, notifier)
    server = ae.start_server((settings.host, settings.port), block=False, evt_handlers=handlers,
                             ssl_context=tls_context(settings))
    if settings.allowed_calling_addresses:
        server.verify_request = address_filter(settings.allowed_calling_addresses)
    return server


def tls_context(settings: DicomSettings) -> ssl.SSLContext | None:
    """A server TLS context (PS3.15 B.1) when a certificate is configured, else None."""
    if not settings.tls_cert_file:
        return None
    context = connections.HandshakeInReaderContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    if settings.tls_ca_file:
        context.load_verify_locations(settings.tls_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def address_filter(allowed: tuple[str, ...]):
    """socketserver's verify_request: close connections from peers outside the allowlist."""
    networks = [ipaddress.ip_network(a, strict=False) for a in allowed]

    def verify_request(request: object, client_address: tuple[str, int]) -> bool:
        address = ipaddress.ip_address(client_address[0])
        if any(address in network for network in networks):
            return True
        log.warning("dicom %s:%s: connection refused, address not allowed", *client_address[:2])
        return False
    return verify_request


def set_nodelay(event: evt.Event) -> None:
    """EVT_CONN_OPEN: TCP_NODELAY, so our small PDUs leave without waiting for the peer's ACK."""
    sock = _tcp_socket(event)
    if sock is not None:
        _set_option(sock, socket.TCP_NODELAY)


def rearm_quickack(event: evt.Event) -> None:
    """EVT_DATA_SENT: acknowledge the peer's next write at once (TCP_QUICKACK).

    Many scanners, DCMTK's findscu among them, write a C-FIND request as several small writes
    with Nagle's algorithm on: each write after the first waits until we acknowledge the one
    before. Linux delays that ACK (by 40 ms or more) once we have answered quickly, as it does
    after every PDU we send; setting TCP_QUICKACK after each send turns that off again
    (figures in bench/mwl_query.py).
    """
    sock = _tcp_socket(event)
    if sock is not None and QUICKACK is not None:
        _set_option(sock, QUICKACK)


def _tcp_socket(event: evt.Event) -> socket.socket | None:
    """The association's TCP socket, None once it is closed."""
    assoc_socket = event.assoc.dul.socket
    return assoc_socket.socket if assoc_socket is not None else None


def _set_option(sock: socket.socket, option: int) -> None:
    """Set a boolean IPPROTO_TCP option; a socket closing under us is no error."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, 1)
    except OSError:
        pass


def handle_echo(event: evt.Event) -> int:
    """C-ECHO (PS3.4 A.4): always Success."""
    return 0x0000


def log_aborted(event: evt.Event) -> None:
    """Log an aborted association with the peer and its AE title."""
    requestor = event.assoc.requestor
    log.info("dicom %s:%s calling %s: association aborted", requestor.address, requestor.port,
             requestor.ae_title)


def handle_find(event: evt.Event, session_factory: sessionmaker[Session],
                settings: WorklistSettings) -> Iterator[tuple[int, Dataset | None]]:
    """MWL C-FIND: one SQL query, then one pending response per matching step."""
    requestor = event.assoc.requestor
    peer = f"{requestor.address}:{requestor.port} calling {requestor.ae_title}"
    context = QueryContext(settings, requestor.ae_title.strip(), local_now().date())
    try:
        identifier = event.identifier
        with session_factory() as session:
            rows = find_rows(session, identifier, context)
        charset = _query_charset(identifier)
        implicit = event.context.transfer_syntax == ImplicitVRLittleEndian
        plan = compile_plan(identifier)
    except InvalidQuery as exc:
        log.warning("dicom C-FIND from %s: invalid query (0x%04X): %s", peer, exc.status, exc)
        yield _failure(exc.status, str(exc)), None
        return
    except Exception as exc:  # noqa: BLE001 - a malformed identifier must not kill the server
        # The exception text may quote query values (patient data): its type only, detail at DEBUG.
        log.warning("dicom C-FIND from %s: cannot process identifier (%s)", peer,
                    exc.__class__.__name__)
        log.debug("dicom C-FIND from %s: identifier error", peer, exc_info=True)
        yield _failure(STATUS_UNABLE_TO_PROCESS, f"cannot process identifier: {exc}"), None
        return
    log.info("dicom C-FIND from %s: %d matches", peer, len(rows))
    for row in rows:
        if event.is_cancelled:  # C-CANCEL (PS3.7 9.3.2.3): stop with status Cancel
            log.info("dicom C-FIND from %s: cancelled", peer)
            yield STATUS_CANCEL, None
            return
        yield STATUS_PENDING, build_item(row, plan, charset, implicit)


def _query_charset(identifier: Dataset) -> list[str]:
    """The identifier's SpecificCharacterSet as a list of terms ([] when absent)."""
    value = identifier.get("SpecificCharacterSet")
    if not value:
        return []
    return [str(v).strip() for v in value] if not isinstance(value, str) else [value.strip()]


def _failure(code: int, text: str) -> Dataset:
    """A failure status with an Error Comment (PS3.7 C.4.1.1.4) the operator can read."""
    status = Dataset()
    status.Status = code
    status.ErrorComment = text.encode("ascii", "replace").decode()[:64]
    return status
