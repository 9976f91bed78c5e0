"""Every page renders for an admin on the demo data, and the viewer sees no admin buttons."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from broker.store.models import InboundMessage, MatchCandidate, Order, Patient
from tests.admin.seed import load_demo_store


@pytest.fixture
def demo(sessions):
    load_demo_store(sessions)
    with sessions() as session:
        return {"order": session.scalar(select(Order.id).limit(1)),
                "patient": session.scalar(select(Patient.id).limit(1)),
                "failed": session.scalar(select(InboundMessage.id)
                                         .where(InboundMessage.status == "FAILED")),
                "match": session.scalar(select(MatchCandidate.id))}


def test_every_page_renders(admin, demo):
    for path in ["/", "/worklist", "/matches", "/matches?filter=all", "/messages",
                 f"/messages/{demo['failed']}", f"/orders/{demo['order']}",
                 f"/patients/{demo['patient']}", f"/matches/{demo['match']}/link", "/outbox",
                 "/audit", "/users", "/bench", "/metrics", "/api/v1/openapi.json"]:
        response = admin.get(path)
        assert response.status_code == 200, (path, response.get_data(as_text=True)[:2000])


def test_the_queue_shows_both_records_with_points_and_buttons(admin, demo):
    page = admin.get("/matches").get_data(as_text=True)
    assert "Smith" in page and "Jonh" in page and "one letter differs" in page
    assert ">Link</button>" in page and ">Dismiss</button>" in page


def test_the_failed_message_page_offers_reprocess(admin, demo):
    page = admin.get(f"/messages/{demo['failed']}").get_data(as_text=True)
    assert "PID-5" in page and "Patient Name" in page and "is not known" in page
    assert ">Reprocess</button>" in page


def test_a_fhir_message_shows_its_body_and_no_reprocess(admin, sessions):
    from broker.store.messages import finish_message, insert_message
    with sessions.begin() as session:
        message_id = insert_message(session, channel="fhir", sender="https://ehr.example/fhir",
                                    control_id="ServiceRequest/1/_history/2", message_type="",
                                    peer="127.0.0.1", raw=b'{"resourceType": "Bundle"}')
        finish_message(session, message_id, "FAILED", "no Patient", None)
    page = admin.get(f"/messages/{message_id}").get_data(as_text=True)
    assert "&#34;resourceType&#34;: &#34;Bundle&#34;" in page and "Segments" not in page
    assert ">Reprocess</button>" not in page
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    admin.post(f"/messages/{message_id}/reprocess", data={"csrf_token": token})
    assert "only HL7 messages are reprocessed here" in admin.get(
        f"/messages/{message_id}").get_data(as_text=True)


def test_the_bench_reads_a_fhir_service_request_with_its_expressions(admin):
    import json
    from pathlib import Path
    fixtures = Path(__file__).resolve().parents[2] / "fixtures" / "fhir"
    bundle = {"resourceType": "Bundle", "entry": [
        {"resource": json.loads((fixtures / name).read_text())}
        for name in ("servicerequest_ct_head.json", "patient_1001.json")]}
    page = admin.get("/bench").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    result = admin.post("/bench", data={"message": json.dumps(bundle), "csrf_token": token})
    text = result.get_data(as_text=True)
    assert "1 worklist item" in text and "PL-1001" in text
    assert "identifier.where(type.coding.code = &#39;PLAC&#39;).value (fhir.toml:" in text
    assert "Patient.name.where(use = &#39;official&#39;).family (fhir.toml:" in text


def test_a_dead_notification_holds_its_order_and_discard_releases_it(admin, sessions):
    from broker.store.models import AuditEvent, Notification
    with sessions.begin() as session:
        dead = Notification(destination="EHR:2575", kind="hl7", payload=b"MSH|", status="DEAD",
                            ordering_key="order:7", attempts=1, last_error="AE: unknown order")
        later = Notification(destination="EHR:2575", kind="hl7", payload=b"MSH|",
                             ordering_key="order:7")
        session.add_all([dead, later])
        session.flush()
        dead_id = dead.id
    page = admin.get("/outbox").get_data(as_text=True)
    assert f"Held until #{dead_id} is sent or discarded" in page and ">Discard</button>" in page
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    admin.post(f"/outbox/{dead_id}/discard", data={"csrf_token": token})
    page = admin.get("/outbox").get_data(as_text=True)
    assert "Held until" not in page and ">Discard</button>" not in page
    with sessions() as session:
        assert session.get(Notification, dead_id).status == "DISCARDED"
        event = session.scalar(select(AuditEvent).where(AuditEvent.action == "outbox.discard"))
        assert event is not None and event.actor == "alice"
