"""FHIR out against a real FHIR R4 server (sekmet-fhir): an order (FHIR ServiceRequest or HL7)
-> MPPS IN PROGRESS -> COMPLETED (trigger "mpps") -> the server holds one ImagingStudy
`available` and the order's progress (a Task, or the ServiceRequest's status)."""
from __future__ import annotations

import shutil
import socket
import threading
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from broker.cli import main
from broker.config import FhirSettings, NotifySettings
from broker.resources import mappings_dir
from broker.service import Broker
from broker.store.models import InboundMessage, Notification, Order
from tests.conftest import make_test_settings
from tests.fhir.conftest import wait_for
from tests.notify.chain import order_message, perform
from tests.support.dcmtk import findscu
from tests.support.hl7client import send
from tests.support.sekmet import (
    ACCESSION_SYSTEM, V2_0203, SekmetServer, new_key, patient_resource, service_request,
)

# Test-only systems of the HL7 fixture's issuers (PID-3.4 STMARYS, ORC-2.2 CERNER).
STMARYS_SYSTEM, CERNER_SYSTEM = "urn:oid:1.2.3.4.5.7", "urn:oid:1.2.3.4.5.8"
KEYS = ["StudyInstanceUID", "RequestedProcedureID", "PatientID", "PatientName",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepID"]


@pytest.fixture(scope="module")
def sekmet():
    server = SekmetServer()
    server.start()
    yield server
    server.stop()


def _number() -> int:
    """An order number no other test used on the shared server (placer ORDn, accession ACCn)."""
    return 10000 + int(uuid.uuid4().hex[:8], 16) % 89999


def _site(tmp_path, progress: str):
    """A copy of the shipped mappings with the HL7 fixture's issuers and `progress`."""
    folder = tmp_path / "mappings"
    shutil.copytree(mappings_dir(), folder)
    path = folder / "fhir.toml"
    text = path.read_text().replace('progress = "task"', f'progress = "{progress}"')
    path.write_text(text + f'"{STMARYS_SYSTEM}" = "STMARYS"\n"{CERNER_SYSTEM}" = "CERNER"\n')
    return folder


def _broker(tmp_path, sekmet, progress: str = "task", base_url: str = "") -> Broker:
    settings = make_test_settings(tmp_path, fhir=FhirSettings(
        base_url=base_url or sekmet.base_url, mode="poll", poll_seconds=0.5))
    settings = replace(
        settings, hl7=replace(settings.hl7, mappings_dir=str(_site(tmp_path, progress))),
        notify=NotifySettings(fhir=True, trigger="mpps", interval_seconds=0.1,
                              retry_base_seconds=0.2, retry_max_seconds=0.5))
    (tmp_path / "broker.toml").write_text(f'data_dir = "{tmp_path / "data"}"\n')
    broker = Broker(settings)
    broker.start()
    return broker


def _rows(broker) -> list[Notification]:
    with broker.sessions() as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


def _all_delivered(broker, count: int) -> list[Notification]:
    return wait_for(lambda: (rows := _rows(broker)) and len(rows) == count
                    and all(r.status == "DELIVERED" for r in rows) and rows,
                    60, f"{count} delivered notifications")


def _item(broker, accession: str):
    return wait_for(lambda: findscu(broker.listeners.dicom[1],
                                    [f"AccessionNumber={accession}", *KEYS], calling="CT1"),
                    30, f"{accession} on the worklist")[0]


def _fhir_order(broker, sekmet):
    """A Patient and an imaging ServiceRequest on the server; the worklist item the broker
    makes of it."""
    patient = sekmet.create(patient_resource(new_key("M")))
    accession = new_key("A")[:16]
    request = sekmet.create(service_request(patient["id"], new_key("P"), accession,
                                            datetime.now() + timedelta(hours=1)))
    return patient, request, _item(broker, accession)


def _studies(sekmet, uid: str) -> list[dict]:
    return sekmet.search("ImagingStudy", identifier=f"urn:dicom:uid|urn:oid:{uid}")


def _task_history(sekmet, request: dict) -> list[str]:
    """The statuses the broker's Task of `request` went through, oldest first."""
    (found,) = sekmet.search("Task", identifier=f"urn:broker:fhir:task|{request['id']}")
    history = sekmet.read(f"Task/{found['id']}/_history")
    return [e["resource"]["status"] for e in reversed(history["entry"])]


def _outbox_list(tmp_path, capsys) -> list[list[str]]:
    capsys.readouterr()
    assert main(["outbox", "list", "--status", "delivered", "--config",
                 str(tmp_path / "broker.toml")]) == 0
    return [line.split("\t") for line in capsys.readouterr().out.splitlines()]


def test_a_fhir_order_gets_its_imaging_study_and_a_task(tmp_path, sekmet, capsys):
    broker = _broker(tmp_path, sekmet)
    try:
        patient, request, item = _fhir_order(broker, sekmet)
        perform(broker, item, images=3)
        _all_delivered(broker, 3)
    finally:
        broker.stop()
    (study,) = _studies(sekmet, item.StudyInstanceUID)
    assert study["status"] == "available"
    assert study["subject"]["reference"].endswith(f"Patient/{patient['id']}")
    assert [b["reference"].rpartition("ServiceRequest/")[2] for b in study["basedOn"]] == [
        request["id"]]
    assert (study["numberOfSeries"], study["numberOfInstances"]) == (1, 3)
    assert study["modality"][0]["code"] == "CT"
    (accession,) = [i for i in study["identifier"] if i.get("type")]
    assert accession["type"]["coding"][0] == {"system": V2_0203, "code": "ACSN"}
    assert (accession["system"], accession["value"]) == (ACCESSION_SYSTEM, item.AccessionNumber)
    assert _task_history(sekmet, request) == ["in-progress", "completed"]
    listed = _outbox_list(tmp_path, capsys)
    assert [(line[2], line[3]) for line in reversed(listed)] == [
        ("fhir/Task", "IP"), ("fhir/Task", "CM"), ("fhir/ImagingStudy", "available")]


@pytest.mark.parametrize("with_request", [True, False], ids=["request-found", "no-request"])
def test_an_hl7_order_finds_its_patient_and_request_by_identifier(tmp_path, sekmet,
                                                                   with_request):
    broker = _broker(tmp_path, sekmet)
    mrn, n = new_key("H"), _number()
    patient = sekmet.create({**patient_resource(mrn), "identifier": [
        {"system": STMARYS_SYSTEM, "value": mrn}]})
    request = None
    if with_request:  # not an imaging category: the broker's FHIR intake leaves it alone
        body = service_request(patient["id"], f"ORD{n}", f"ACC{n}", datetime.now())
        del body["category"]
        body["identifier"][0]["system"] = CERNER_SYSTEM
        request = sekmet.create(body)
    try:
        raw = order_message(n).replace(b"778899^^^STMARYS", f"{mrn}^^^STMARYS".encode())
        send(broker.listeners.hl7[1], raw)
        item = _item(broker, f"ACC{n}")
        perform(broker, item, images=2)
        _all_delivered(broker, 3)
    finally:
        broker.stop()
    (study,) = _studies(sekmet, item.StudyInstanceUID)
    assert study["subject"]["reference"].endswith(f"Patient/{patient['id']}")
    assert "system" not in [i for i in study["identifier"] if i.get("type")][0]  # no issuer
    if with_request:
        assert study["basedOn"][0]["reference"].endswith(f"ServiceRequest/{request['id']}")
        assert _task_history(sekmet, request) == ["in-progress", "completed"]
    else:
        assert "basedOn" not in study
        assert sekmet.search("Task", patient=f"Patient/{patient['id']}") == []


def test_an_unknown_patient_is_retried_until_the_ehr_registers_it(tmp_path, sekmet):
    broker = _broker(tmp_path, sekmet)
    mrn, n = new_key("U"), _number()
    try:
        send(broker.listeners.hl7[1],
             order_message(n).replace(b"778899^^^STMARYS", f"{mrn}^^^STMARYS".encode()))
        item = _item(broker, f"ACC{n}")
        perform(broker, item, images=1)
        waiting = wait_for(lambda: [r for r in _rows(broker) if r.event == "available"
                                    and r.attempts >= 2], 60, "a retried ImagingStudy")[0]
        assert waiting.status == "PENDING"
        assert "no Patient on the FHIR server" in waiting.last_error
        assert mrn not in waiting.last_error  # the error names the system, not the value
        patient = sekmet.create({**patient_resource(mrn), "identifier": [
            {"system": STMARYS_SYSTEM, "value": mrn}]})
        _all_delivered(broker, 3)
    finally:
        broker.stop()
    (study,) = _studies(sekmet, item.StudyInstanceUID)
    assert study["subject"]["reference"].endswith(f"Patient/{patient['id']}")


def test_a_server_down_for_a_while_gets_each_write_once_in_order(tmp_path, sekmet):
    broker = _broker(tmp_path, sekmet)
    try:
        _, request, item = _fhir_order(broker, sekmet)
        sekmet.stop()
        perform(broker, item, images=2)
        failing = wait_for(lambda: [r for r in _rows(broker) if r.attempts >= 2], 60,
                           "a failed attempt")
        assert all(r.status == "PENDING" for r in _rows(broker))
        assert "ConnectionError" in failing[0].last_error
        sekmet.start()
        _all_delivered(broker, 3)
    finally:
        if sekmet.process is None:
            sekmet.start()
        broker.stop()
    assert len(_studies(sekmet, item.StudyInstanceUID)) == 1
    assert _task_history(sekmet, request) == ["in-progress", "completed"]


class LosingProxy:
    """A TCP relay to the FHIR server that loses the answer to the first request starting with
    `prefix`: the server has done the write, the broker never hears so (then the connection
    closes), as when a network drops between them."""

    def __init__(self, upstream_port: int, prefix: bytes) -> None:
        self.upstream_port, self.prefix, self.armed = upstream_port, prefix, True
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            lose = threading.Event()
            threading.Thread(target=self._requests, args=(client, server, lose),
                             daemon=True).start()
            threading.Thread(target=self._answers, args=(server, client, lose),
                             daemon=True).start()

    def _requests(self, client, server, lose) -> None:
        while data := self._read(client):
            if self.armed and data.startswith(self.prefix):
                self.armed = False
                lose.set()  # before the request leaves: its answer is the next data back
            server.sendall(data)
        self._end(server)

    def _answers(self, server, client, lose) -> None:
        while data := self._read(server):
            if lose.is_set():
                break
            client.sendall(data)
        self._end(client)
        self._end(server)

    @staticmethod
    def _end(sock) -> None:
        # shutdown, not only close: the other relay thread is still reading this socket.
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    @staticmethod
    def _read(sock) -> bytes:
        try:
            return sock.recv(65536)
        except OSError:
            return b""

    def close(self) -> None:
        self.listener.close()


def test_an_answer_lost_after_the_write_does_not_duplicate_the_study(tmp_path, sekmet):
    proxy = LosingProxy(sekmet.port, b"PUT /fhir/ImagingStudy?")
    broker = _broker(tmp_path, sekmet, base_url=f"http://127.0.0.1:{proxy.port}/fhir")
    try:
        _, request, item = _fhir_order(broker, sekmet)
        perform(broker, item, images=2)
        rows = _all_delivered(broker, 3)
    finally:
        broker.stop()
        proxy.close()
    assert not proxy.armed  # the answer was lost once
    assert [(r.event, r.attempts) for r in rows] == [("IP", 1), ("CM", 1), ("available", 2)]
    (study,) = _studies(sekmet, item.StudyInstanceUID)
    history = sekmet.read(f"ImagingStudy/{study['id']}/_history")
    assert len(history["entry"]) == 2  # written twice, one ImagingStudy
    assert _task_history(sekmet, request) == ["in-progress", "completed"]


def test_a_refusal_is_dead_with_its_outcome_and_revived_by_command(tmp_path, sekmet):
    broker = _broker(tmp_path, sekmet)
    try:
        patient, request, item = _fhir_order(broker, sekmet)
        # The EHR registered the study twice: a conditional update cannot pick one (412).
        registered = [sekmet.create({
            "resourceType": "ImagingStudy", "status": "registered",
            "identifier": [{"system": "urn:dicom:uid",
                            "value": f"urn:oid:{item.StudyInstanceUID}"}],
            "subject": {"reference": f"Patient/{patient['id']}"}}) for _ in range(2)]
        perform(broker, item, images=2)
        dead = wait_for(lambda: [r for r in _rows(broker) if r.status == "DEAD"], 60,
                        "a dead notification")
        assert [(r.event, r.attempts) for r in dead] == [("available", 1)]  # never retried
        assert "HTTP 412" in dead[0].last_error and "matched 2 resources" in dead[0].last_error
        sekmet.http.delete(f"{sekmet.base_url}/ImagingStudy/{registered[1]['id']}",
                           timeout=30).raise_for_status()
        assert main(["outbox", "retry", str(dead[0].id), "--config",
                     str(tmp_path / "broker.toml")]) == 0
        _all_delivered(broker, 3)
    finally:
        broker.stop()
    (study,) = _studies(sekmet, item.StudyInstanceUID)
    assert (study["id"], study["status"]) == (registered[0]["id"], "available")
    assert study["basedOn"][0]["reference"].endswith(f"ServiceRequest/{request['id']}")


def test_progress_as_the_service_request_status(tmp_path, sekmet):
    broker = _broker(tmp_path, sekmet, progress="status")
    try:
        _, request, item = _fhir_order(broker, sekmet)
        perform(broker, item, images=1)
        rows = _all_delivered(broker, 2)  # CM and the ImagingStudy; IP leaves it active
        wait_for(lambda: sekmet.read(f"ServiceRequest/{request['id']}")["status"] == "completed",
                 30, "the ServiceRequest completed")
        with broker.sessions() as session:
            order = session.scalars(select(Order).where(
                Order.accession_number == item.AccessionNumber)).one()
            failed = session.scalars(select(InboundMessage).where(
                InboundMessage.status == "FAILED")).all()
    finally:
        broker.stop()
    assert [r.event for r in rows] == ["CM", "available"]
    assert order.status == "COMPLETED" and failed == []  # the echo of its own write is not applied
    assert sekmet.search("Task", identifier=f"urn:broker:fhir:task|{request['id']}") == []
