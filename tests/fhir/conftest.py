"""A sekmet-fhir server for the session, and brokers pointed at it."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import pytest

from broker.config import FhirSettings
from broker.service import Broker
from tests.conftest import make_test_settings
from tests.support.dcmtk import findscu
from tests.support.sekmet import TOPIC_URL, SekmetServer

SPS = "ScheduledProcedureStepSequence[0]"


@pytest.fixture(scope="session")
def sekmet() -> Iterator[SekmetServer]:
    """One sekmet-fhir server for the FHIR tests."""
    server = SekmetServer()
    server.start()
    yield server
    server.stop()


def fhir_settings(sekmet: SekmetServer, mode: str = "rest-hook", **values) -> FhirSettings:
    """[fhir] for a broker using `sekmet`; a short catch-up interval keeps the tests quick."""
    base = dict(base_url=sekmet.base_url, mode=mode, poll_seconds=2.0)
    if mode == "backport":
        base["topic"] = TOPIC_URL
    return FhirSettings(**{**base, **values})


@pytest.fixture
def make_broker(tmp_path: Path, sekmet: SekmetServer) -> Iterator[Callable[..., Broker]]:
    """Start brokers on one database (a second call after stop() is a restart)."""
    running: list[Broker] = []

    def start(mode: str = "rest-hook", web_port: int = 0, **values) -> Broker:
        settings = make_test_settings(tmp_path, fhir=fhir_settings(sekmet, mode, **values))
        settings = replace(settings, web=replace(settings.web, port=web_port))
        broker = Broker(settings)
        broker.start()
        running.append(broker)
        return broker

    yield start
    for broker in running:
        broker.stop()
    sekmet.switch_off_subscriptions()  # a stopped broker's would slow the next test's deliveries


def subscription(broker: Broker) -> dict:
    """The broker's Subscription as the FHIR server has it now."""
    from broker.store.fhir import get_state
    with broker.sessions() as session:
        sub_id = get_state(session, "subscription_id")
    return broker.fhir.client.read(f"Subscription/{sub_id}") if sub_id else {}


def wait_active(broker: Broker, timeout: float = 30) -> dict:
    """The broker's Subscription once the server activated it (backport: after the handshake)."""
    return wait_for(lambda: (subscription(broker) or {}).get("status") == "active"
                    and subscription(broker), timeout, "an active subscription")


def wait_for(condition: Callable[[], object], timeout: float = 30, what: str = "condition"):
    """Poll until `condition()` is truthy; its value, or AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def worklist(broker: Broker, accession: str | None = None) -> list:
    """The worklist items findscu gets (for one accession number, or all)."""
    keys = [f"AccessionNumber={accession or ''}", "PatientID", "PatientName",
            "RequestedProcedureID", "StudyInstanceUID", f"{SPS}.ScheduledProcedureStepStartDate",
            f"{SPS}.ScheduledProcedureStepStartTime", f"{SPS}.Modality",
            f"{SPS}.ScheduledStationAETitle"]
    return findscu(broker.listeners.dicom[1], keys)


def wait_on_worklist(broker: Broker, accession: str, timeout: float = 30):
    """The worklist item of `accession`, once the broker serves it."""
    return wait_for(lambda: worklist(broker, accession), timeout, f"{accession} on the worklist")[0]


def wait_off_worklist(broker: Broker, accession: str, timeout: float = 30) -> None:
    wait_for(lambda: not worklist(broker, accession), timeout, f"{accession} off the worklist")
