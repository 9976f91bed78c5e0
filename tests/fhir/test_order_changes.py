"""ServiceRequest changes become order operations: hold and release, a change of time, a
change of code; a completed one is left alone."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from broker.store.models import Order
from tests.fhir.conftest import wait_active, wait_for, wait_off_worklist, wait_on_worklist, worklist
from tests.support.sekmet import new_key, patient_resource, service_request


def _new_order(broker, sekmet, start: datetime, code: str = "CTHEAD"):
    wait_active(broker)
    patient = sekmet.create(patient_resource(new_key("M")))
    accession = new_key("A")
    order = sekmet.create(service_request(patient["id"], new_key("P"), accession, start, code))
    wait_on_worklist(broker, accession)
    return order, accession


def test_on_hold_leaves_the_worklist_and_active_brings_it_back(make_broker, sekmet):
    broker = make_broker(poll_seconds=600.0)
    order, accession = _new_order(broker, sekmet, datetime.now() + timedelta(hours=1))
    held = sekmet.update({**order, "status": "on-hold"})
    wait_off_worklist(broker, accession)
    with broker.sessions() as session:
        assert session.scalar(select(Order.status).where(Order.accession_number == accession)) \
            == "HOLD"
    sekmet.update({**held, "status": "active"})
    wait_on_worklist(broker, accession)


def test_a_change_of_time_moves_the_step(make_broker, sekmet):
    broker = make_broker(poll_seconds=600.0)
    first = datetime.now().replace(microsecond=0) + timedelta(hours=1)
    order, accession = _new_order(broker, sekmet, first)
    later = first + timedelta(days=1, minutes=30)
    sekmet.update({**order, "occurrenceDateTime": later.astimezone().isoformat()})

    def moved():
        items = worklist(broker, accession)
        step = items[0].ScheduledProcedureStepSequence[0] if items else None
        return step is not None and step.ScheduledProcedureStepStartDate == \
            later.strftime("%Y%m%d") and step.ScheduledProcedureStepStartTime.startswith(
                later.strftime("%H%M%S"))
    wait_for(moved, 30, "the new start time on the worklist")
    assert len(worklist(broker, accession)) == 1


def test_a_change_of_code_changes_modality_and_station(make_broker, sekmet):
    broker = make_broker(poll_seconds=600.0)
    order, accession = _new_order(broker, sekmet, datetime.now() + timedelta(hours=1))
    sekmet.update({**order, "code": {"coding": [{"system": "urn:oid:1.2.3.4.5.99",
                                                 "code": "MRBRAIN"}]}})
    wait_for(lambda: [i for i in worklist(broker, accession)
                      if i.ScheduledProcedureStepSequence[0].Modality == "MR"], 30, "MR step")


def test_completed_is_left_alone(make_broker, sekmet):
    broker = make_broker(poll_seconds=600.0)
    order, accession = _new_order(broker, sekmet, datetime.now() + timedelta(hours=1))
    done = sekmet.update({**order, "status": "completed"})
    version = int(done["meta"]["versionId"])
    # The version is stored and applied as "nothing to do": the order stays on the worklist.
    wait_for(lambda: _applied_version(broker, order["id"]) >= version, 30, "version applied")
    assert len(worklist(broker, accession)) == 1


def _applied_version(broker, resource_id: str) -> int:
    from broker.store.fhir import applied_version
    with broker.sessions() as session:
        return applied_version(session, "ServiceRequest", resource_id)
