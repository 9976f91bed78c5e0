"""Process-wide Prometheus instruments (prometheus-client): the listeners observe, the web
app's /metrics exposes them with the database gauges (broker/admin/metrics.py)."""
from __future__ import annotations

import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from broker.hl7.message import read_header

REGISTRY = CollectorRegistry(auto_describe=True)
HL7_MESSAGES = Counter("broker_hl7_messages", "HL7 messages answered, by type and outcome",
                       ["type", "outcome"], registry=REGISTRY)
ACK_SECONDS = Histogram("broker_hl7_ack_seconds",
                        "Time from a complete HL7 frame to its ACK being ready (stored and committed)",
                        buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
                        registry=REGISTRY)
DIMSE_REQUESTS = Counter("broker_dicom_requests", "DICOM requests answered, by service",
                         ["service"], registry=REGISTRY)
DIMSE_SECONDS = Histogram("broker_dicom_request_seconds",
                          "Time from a DICOM request to its final response, by service",
                          ["service"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
                          registry=REGISTRY)
# DIMSE request names -> the service label (PS3.7 9.1 / 10.1).
_SERVICES = {"C_FIND_RQ": "C-FIND", "C_ECHO_RQ": "C-ECHO", "N_CREATE_RQ": "MPPS N-CREATE",
             "N_SET_RQ": "MPPS N-SET"}
_PENDING = (0xFF00, 0xFF01)  # C-FIND pending statuses: more responses follow


def observe_ack(raw: bytes, outcome: str, seconds: float) -> None:
    """Count one answered HL7 message and the time its ACK took."""
    header = read_header(raw)
    HL7_MESSAGES.labels(header.message_type if header and header.message_type else "?",
                        outcome).inc()
    ACK_SECONDS.observe(seconds)


class DimseWatch:
    """Times each DICOM request from its arrival to its final response (pynetdicom's
    EVT_DIMSE_RECV / EVT_DIMSE_SENT notification events, bound next to the service handlers)."""

    def __init__(self) -> None:
        self._started: dict[tuple[int, int], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def received(self, event: Any) -> None:
        service = _SERVICES.get(type(event.message).__name__)
        if service is None:
            return
        key = (id(event.assoc), int(event.message.command_set.MessageID))
        with self._lock:
            self._started[key] = (service, time.perf_counter())

    def sent(self, event: Any) -> None:
        command = event.message.command_set
        if "MessageIDBeingRespondedTo" not in command or int(getattr(command, "Status", 0)) in _PENDING:
            return
        with self._lock:
            found = self._started.pop((id(event.assoc), int(command.MessageIDBeingRespondedTo)), None)
        if found is not None:
            service, started = found
            DIMSE_REQUESTS.labels(service).inc()
            DIMSE_SECONDS.labels(service).observe(time.perf_counter() - started)


def watch_dicom(server: Any) -> None:
    """Bind the request timer to a running pynetdicom association server."""
    from pynetdicom import evt
    watch = DimseWatch()
    server.bind(evt.EVT_DIMSE_RECV, watch.received)
    server.bind(evt.EVT_DIMSE_SENT, watch.sent)
