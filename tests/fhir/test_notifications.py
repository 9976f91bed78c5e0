"""The notification endpoint as a FHIR server sees it: the secret, bad bodies, versions out of
order, a backport event gap, and a ServiceRequest that cannot be mapped."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import pytest
import requests
from sqlalchemy import select

from broker.cli import main
from broker.fhir.subscription import SECRET_HEADER, shared_secret
from broker.store.models import InboundMessage
from tests.fhir.conftest import wait_active, wait_for, wait_on_worklist, worklist
from tests.support.sekmet import new_key, patient_resource, service_request


def _notify(broker, body: bytes | dict | None, path: str = "", secret: str | None = None,
            method: str = "POST") -> requests.Response:
    host, port = broker.listeners.web
    data = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
    headers = {"Content-Type": "application/fhir+json"}
    if secret is None:
        secret = shared_secret(broker.sessions)
    if secret:
        headers[SECRET_HEADER] = secret
    return requests.request(method, f"http://{host}:{port}/fhir/notify{path}", data=data,
                            headers=headers, timeout=10)


def _fhir_rows(broker, message_type: str | None = None) -> list[InboundMessage]:
    with broker.sessions() as session:
        stmt = select(InboundMessage).where(InboundMessage.channel == "fhir")
        if message_type:
            stmt = stmt.where(InboundMessage.message_type == message_type)
        return list(session.scalars(stmt.order_by(InboundMessage.id)))


@pytest.mark.parametrize("secret", ["", "not-the-secret"])
def test_missing_or_wrong_secret_gets_401_and_nothing_is_stored(make_broker, secret, caplog):
    broker = make_broker("poll", poll_seconds=600.0)
    answer = _notify(broker, None, secret=secret)
    assert answer.status_code == 401
    assert answer.json()["resourceType"] == "OperationOutcome"
    assert _fhir_rows(broker) == []
    assert "wrong X-Broker-Secret" in caplog.text


def test_unreadable_body_gets_400_and_is_stored(make_broker):
    broker = make_broker("poll", poll_seconds=600.0)
    answer = _notify(broker, b"{not json")
    assert answer.status_code == 400
    rows = _fhir_rows(broker, "notification")
    assert [(r.status, r.raw) for r in rows] == [("REJECTED", b"{not json")]


def test_an_older_version_delivered_late_is_ignored(make_broker, sekmet):
    broker = make_broker("poll", poll_seconds=600.0)
    wait_for(lambda: broker.fhir.status().get("watermark"), 30, "the first catch-up")
    patient = sekmet.create(patient_resource(new_key("M")))
    accession = new_key("A")
    first = datetime.now().replace(microsecond=0) + timedelta(hours=1)
    v1 = sekmet.create(service_request(patient["id"], new_key("P"), accession, first))
    late = first + timedelta(hours=2)
    v2 = sekmet.update({**v1, "occurrenceDateTime": late.astimezone().isoformat()})
    # Delivered out of order, as a server delivering on several threads may: v2, then v1.
    for version in (v2, v1):
        answer = _notify(broker, version, f"/ServiceRequest/{v1['id']}", method="PUT")
        assert answer.status_code == 200
    wait_for(lambda: len(_fhir_rows(broker, "notification")) == 2
             and all(r.status == "PROCESSED" for r in _fhir_rows(broker)), 30, "both handled")
    # Both notifications are stored; only version 2 was applied: version 1 came too late.
    rows = _fhir_rows(broker, "ServiceRequest")
    assert [(r.control_id, r.status) for r in rows] == [
        (f"ServiceRequest/{v1['id']}/_history/2", "PROCESSED")]
    step = wait_on_worklist(broker, accession).ScheduledProcedureStepSequence[0]
    assert step.ScheduledProcedureStepStartTime.startswith(late.strftime("%H%M%S"))
    # A repeat of the version applied is stored as a notification and applied no more.
    assert _notify(broker, v2, f"/ServiceRequest/{v1['id']}", method="PUT").status_code == 200
    wait_for(lambda: len(_fhir_rows(broker, "notification")) == 3
             and all(r.status != "RECEIVED" for r in _fhir_rows(broker)), 30, "handled")
    assert len(_fhir_rows(broker, "ServiceRequest")) == 1


def _backport_event(number: int, since: int, focus: str | None = None) -> dict:
    parts = [{"name": "event-number", "valueString": str(number)}]
    if focus:
        parts.append({"name": "focus", "valueReference": {"reference": focus}})
    status = {"resourceType": "Parameters", "parameter": [
        {"name": "subscription", "valueReference": {"reference": "Subscription/x"}},
        {"name": "status", "valueCode": "active"},
        {"name": "type", "valueCode": "event-notification"},
        {"name": "events-since-subscription-start", "valueString": str(since)},
        {"name": "notification-event", "part": parts}]}
    return {"resourceType": "Bundle", "type": "history", "entry": [{"resource": status}]}


def test_backport_id_only_event_reads_the_focus(make_broker, sekmet):
    broker = make_broker("poll", poll_seconds=600.0)
    wait_for(lambda: broker.fhir.status().get("watermark"), 30, "the first catch-up")
    patient = sekmet.create(patient_resource(new_key("M")))
    accession = new_key("A")
    order = sekmet.create(service_request(patient["id"], new_key("P"), accession,
                                          datetime.now() + timedelta(hours=1)))
    focus = f"{sekmet.base_url}/ServiceRequest/{order['id']}"
    assert _notify(broker, _backport_event(1, 1, focus)).status_code == 200
    wait_on_worklist(broker, accession)


def test_backport_event_gap_triggers_a_catch_up_search(make_broker, sekmet):
    broker = make_broker("poll", poll_seconds=600.0)
    wait_for(lambda: broker.fhir.status().get("watermark"), 30, "the first catch-up")
    patient = sekmet.create(patient_resource(new_key("M")))
    accession = new_key("A")
    sekmet.create(service_request(patient["id"], new_key("P"), accession,
                                  datetime.now() + timedelta(hours=1)))
    # Event 1 never arrived; event 2 is about something else, with an empty payload.
    heartbeat = _backport_event(2, 2)
    assert _notify(broker, heartbeat).status_code == 200
    wait_on_worklist(broker, accession)
    assert broker.fhir.status()["last_event"] == "2"


def test_empty_rest_hook_ping_searches_what_changed(make_broker, sekmet):
    broker = make_broker("poll", poll_seconds=600.0)
    wait_for(lambda: broker.fhir.status().get("watermark"), 30, "the first catch-up")
    patient = sekmet.create(patient_resource(new_key("M")))
    accession = new_key("A")
    sekmet.create(service_request(patient["id"], new_key("P"), accession,
                                  datetime.now() + timedelta(hours=1)))
    assert _notify(broker, None).status_code == 200
    wait_on_worklist(broker, accession)


def test_unmappable_order_is_stored_failed_and_reprocessable(make_broker, sekmet, tmp_path,
                                                             monkeypatch, capsys):
    broker = make_broker(poll_seconds=600.0)
    sub = wait_active(broker)
    accession = new_key("A")
    patient_id = new_key("missing").lower()
    order = sekmet.create(service_request(patient_id, new_key("P"), accession,
                                          datetime.now() + timedelta(hours=1)))
    failed = wait_for(lambda: [r for r in _fhir_rows(broker, "ServiceRequest")
                               if r.status == "FAILED"], 30, "the FAILED row")[0]
    assert f"subject Patient/{patient_id} does not resolve" in failed.error
    assert failed.control_id == f"ServiceRequest/{order['id']}/_history/1"
    # The notification itself was answered 200: the subscription stays active.
    assert wait_active(broker)["meta"]["versionId"] == sub["meta"]["versionId"]

    for key, value in {"BROKER_DATA_DIR": str(tmp_path / "data"),
                       "BROKER_FHIR_BASE_URL": sekmet.base_url}.items():
        monkeypatch.setenv(key, value)
    assert main(["messages", "list", "--channel", "fhir", "--status", "FAILED"]) == 0
    assert f"{failed.id:>7}" in capsys.readouterr().out

    sekmet.update({**patient_resource(new_key("M")), "id": patient_id})  # the subject exists now
    assert main(["messages", "reprocess", str(failed.id)]) == 0
    assert f"message #{failed.id}: PROCESSED" in capsys.readouterr().out
    wait_on_worklist(broker, accession)


def test_unknown_procedure_code_is_stored_failed_with_its_reason(make_broker, sekmet):
    broker = make_broker(poll_seconds=600.0)
    wait_active(broker)
    patient = sekmet.create(patient_resource(new_key("M")))
    sekmet.create(service_request(patient["id"], new_key("P"), new_key("A"),
                                  datetime.now() + timedelta(hours=1), code="NOSUCHCODE"))
    failed = wait_for(lambda: [r for r in _fhir_rows(broker, "ServiceRequest")
                               if r.status == "FAILED"], 30, "the FAILED row")[0]
    assert "procedure code NOSUCHCODE is not in procedures.toml" in failed.error


def test_fhir_status_and_sync_commands(make_broker, sekmet, tmp_path, monkeypatch, capsys):
    broker = make_broker(poll_seconds=600.0)
    sub = wait_active(broker)
    for key, value in {"BROKER_DATA_DIR": str(tmp_path / "data"),
                       "BROKER_FHIR_BASE_URL": sekmet.base_url}.items():
        monkeypatch.setenv(key, value)
    assert main(["fhir", "status"]) == 0
    out = capsys.readouterr().out
    assert f"subscription id    {sub['id']}" in out
    assert "subscription status active" in out
    assert "lag seconds" in out
    assert "secret" not in out
    assert main(["fhir", "sync"]) == 0
    assert "catch-up:" in capsys.readouterr().out


def _imaging_study(sekmet, order: dict, patient: dict, uid: str) -> dict:
    return sekmet.create({"resourceType": "ImagingStudy", "status": "registered",
                          "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}],
                          "subject": {"reference": f"Patient/{patient['id']}"},
                          "basedOn": [{"reference": f"ServiceRequest/{order['id']}"}]})


@pytest.mark.parametrize("path", ["catch-up", "notification"])
def test_study_uid_of_the_registered_imaging_study(make_broker, sekmet, path):
    broker = make_broker("poll", poll_seconds=600.0)
    wait_for(lambda: broker.fhir.status().get("watermark"), 30, "the first catch-up")
    patient = sekmet.create(patient_resource(new_key("M")))
    accession = new_key("A")
    order = sekmet.create(service_request(patient["id"], new_key("P"), accession,
                                          datetime.now() + timedelta(hours=1)))
    uid = f"1.2.826.0.1.3680043.10.1254.99.{uuid.uuid4().int % 10**12}"
    _imaging_study(sekmet, order, patient, uid)
    if path == "catch-up":
        assert _notify(broker, None).status_code == 200  # an empty ping: search
    else:
        assert _notify(broker, order, f"/ServiceRequest/{order['id']}", method="PUT").status_code == 200
    assert wait_on_worklist(broker, accession).StudyInstanceUID == uid
