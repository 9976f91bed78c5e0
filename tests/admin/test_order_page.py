"""The order page's timeline: the message in, MPPS, state changes with who made them, and
notifications out."""
from __future__ import annotations

from sqlalchemy import select

from broker.domain.records import Identifier, PatientRecord, PersonName
from broker.store.models import Notification, PerformedStep, PerformedStepLink, ScheduledStep
from tests.admin.conftest import csrf_of
from tests.support.matching import create_order_for


def test_the_timeline_shows_mpps_actions_and_notifications(admin, sessions):
    record = PatientRecord(identifiers=(Identifier("T1", "HOSP"),), name=PersonName("Tan", "Lee"))
    with sessions.begin() as session:
        order = create_order_for(session, record, "PT1")
        step_id = session.scalar(select(ScheduledStep.id))
        order_id = order.id
    token = csrf_of(admin)
    assert admin.post(f"/steps/{step_id}/arrive", data={"csrf_token": token}).status_code == 302
    with sessions.begin() as session:
        mpps = PerformedStep(sop_instance_uid="1.2.3.4", status="IN PROGRESS",
                             calling_ae_title="CT1")
        session.add(mpps)
        session.flush()
        session.add(PerformedStepLink(performed_step_id=mpps.id, scheduled_step_id=step_id))
        session.add(Notification(destination="PACS", kind="mpps-forward", payload=b"",
                                 ordering_key="mpps:1.2.3.4", status="DELIVERED"))
    timeline = admin.get(f"/api/v1/orders/{order_id}").get_json()["timeline"]
    whats = [(e["what"], e["who"]) for e in timeline]
    assert ("step arrive (status_from SCHEDULED, status_to ARRIVED)", "alice") in whats
    assert ("MPPS IN PROGRESS", "CT1") in whats
    assert ("mpps-forward to PACS: delivered", "outbox") in whats
    page = admin.get(f"/orders/{order_id}").get_data(as_text=True)
    assert "MPPS IN PROGRESS" in page and ">Cancel</button>" in page
