"""Connection handling of the DICOM AE: who gets an association slot, and for how long a
connection may stay without one.

pynetdicom counts every live acceptor thread toward AE.maximum_associations, including
connections that never sent an A-ASSOCIATE-RQ (a port scan, random bytes): those threads wait
out the ACSE timeout, so a burst of garbage locks scanners out. Here only associations the
broker admitted (an A-ASSOCIATE-RQ was received, PS3.8 9.2 Sta3) count toward
`max_associations`; pynetdicom's own count is left as a looser cap on all connections.
"""
from __future__ import annotations

import logging
import socket
import ssl
import threading

from pynetdicom import evt
from pynetdicom.association import Association

log = logging.getLogger(__name__)

# A-ASSOCIATE-RJ result, source and reason (PS3.8 9.3.4, Table 9-21).
REJECT_TRANSIENT = 0x02
SOURCE_PRESENTATION = 0x03
REASON_LOCAL_LIMIT = 0x02
REJECT_REASONS = {
    (0x01, 0x01): "no reason given", (0x01, 0x02): "application context name not supported",
    (0x01, 0x03): "calling AE title not recognised",
    (0x01, 0x07): "called AE title not recognised",
    (0x02, 0x01): "no reason given", (0x02, 0x02): "protocol version not supported",
    (0x03, 0x01): "temporary congestion", (0x03, 0x02): "local limit exceeded",
}


class AssociationSlots:
    """Admits at most `limit` associations at once; connections still negotiating hold none."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._held: set[Association] = set()

    def admit(self, assoc: Association) -> bool:
        """Give `assoc` a slot if one is free; False when all are held."""
        with self._lock:
            self._held = {a for a in self._held if _holds_slot(a)}
            if len(self._held) >= self.limit:
                return False
            self._held.add(assoc)
            return True


class HandshakeInReaderContext(ssl.SSLContext):
    """A server TLS context whose handshake runs in the connection's own thread.

    pynetdicom wraps each accepted socket in its single accept loop; with the default
    do_handshake_on_connect the handshake happens there, so one peer that connects and sends
    nothing stops every other connection (a scanner's included) from being accepted. Deferred,
    the handshake runs on the association's first read, bounded by the ACSE timeout like any
    other negotiation (PS3.15 B.1 only asks that TLS precede the A-ASSOCIATE-RQ).
    """

    def wrap_socket(self, sock: socket.socket, *args: object, **kwargs: object) -> ssl.SSLSocket:
        """Wrap as usual, but leave the handshake to the first read or write."""
        kwargs["do_handshake_on_connect"] = False
        return super().wrap_socket(sock, *args, **kwargs)


def _holds_slot(assoc: Association) -> bool:
    """An admitted association keeps its slot until it is released, aborted or rejected."""
    return assoc.is_alive() and not (assoc.is_released or assoc.is_aborted or assoc.is_rejected)


def bound_handlers(slots: AssociationSlots, acse_timeout: float,
                   network_timeout: float | None) -> list[tuple]:
    """The event handlers that apply the slot limit and the timeouts."""
    return [
        (evt.EVT_CONN_OPEN, limit_negotiation_time, [acse_timeout]),
        (evt.EVT_FSM_TRANSITION, close_after_invalid_pdu),
        (evt.EVT_REQUESTED, admit_association, [slots]),
        (evt.EVT_ESTABLISHED, allow_established_time, [network_timeout]),
        (evt.EVT_REJECTED, log_rejected),
    ]


def limit_negotiation_time(event: evt.Event, acse_timeout: float) -> None:
    """EVT_CONN_OPEN: a socket read may block at most the ACSE timeout until negotiation ends.

    pynetdicom's ARTIM timer (PS3.8 9.1.4) closes a connection that sends nothing, but not one
    that sends part of a PDU header and then stalls: its reader blocks in recv() with no
    timeout, and the acceptor thread waits on it for ever. The socket timeout ends that read,
    which pynetdicom treats as the connection closing (Evt17).
    """
    _set_timeout(event, acse_timeout)


def allow_established_time(event: evt.Event, network_timeout: float | None) -> None:
    """EVT_ESTABLISHED: from now on a stalled read may last the network timeout instead."""
    _set_timeout(event, network_timeout)


def close_after_invalid_pdu(event: evt.Event) -> None:
    """EVT_FSM_TRANSITION: after an invalid PDU (Evt19) and our A-ABORT, close the connection.

    PS3.8 9.2 (AA-1, AA-8) sends A-ABORT and waits in Sta13 for the peer to close, until the
    ARTIM timer expires. pynetdicom meanwhile keeps reading the peer's bytes as PDUs, and a
    random header announcing a long PDU blocks that read until the peer closes. A peer that
    sent an invalid PDU speaks no DICOM, and Sta13 discards whatever it sends (AA-6, AA-7):
    shutting the socket down now ends the wait; pynetdicom sees the close (Evt17, AR-5).
    """
    if event.fsm_event != "Evt19":
        return
    requestor = event.assoc.requestor
    log.info("dicom %s:%s: invalid PDU, association aborted and connection closed",
             requestor.address, requestor.port)
    assoc_socket = event.assoc.dul.socket
    sock: socket.socket | None = assoc_socket.socket if assoc_socket is not None else None
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _set_timeout(event: evt.Event, seconds: float | None) -> None:
    """Set the association's socket timeout; a socket closing under us is no error."""
    assoc_socket = event.assoc.dul.socket
    sock: socket.socket | None = assoc_socket.socket if assoc_socket is not None else None
    if sock is None:
        return
    try:
        sock.settimeout(seconds)
    except OSError:
        pass


def admit_association(event: evt.Event, slots: AssociationSlots) -> None:
    """EVT_REQUESTED: reject with local-limit-exceeded (PS3.8 9.3.4) when no slot is free."""
    if slots.admit(event.assoc):
        return
    assoc = event.assoc
    requestor = assoc.requestor
    log.warning("dicom %s:%s calling %s: association rejected: local limit exceeded "
                "(%d associations established)", requestor.address, requestor.port,
                requestor.primitive.calling_ae_title, slots.limit)
    assoc.acse.send_reject(REJECT_TRANSIENT, SOURCE_PRESENTATION, REASON_LOCAL_LIMIT)
    # As pynetdicom does after its own rejections: wait until the A-ASSOCIATE-RJ has left and
    # the connection is closed (Sta1), else the socket closes before the answer is sent.
    assoc.kill()


def log_rejected(event: evt.Event) -> None:
    """EVT_REJECTED: log the peer, its AE title and the reason pynetdicom rejected it for."""
    requestor = event.assoc.requestor
    answer = event.assoc.acceptor.primitive
    reason = "unknown reason"
    if answer is not None:
        reason = REJECT_REASONS.get((answer.result_source, answer.diagnostic), reason)
    request = requestor.primitive
    log.warning("dicom %s:%s calling %s, called %s: association rejected: %s",
                requestor.address, requestor.port, request.calling_ae_title if request else "?",
                request.called_ae_title if request else "?", reason)
