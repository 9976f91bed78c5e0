"""An order created on the FHIR server reaches the worklist in each mode; a revoked one leaves.

In rest-hook and backport mode the catch-up search is set far apart, so the order can only
have come by notification; in poll mode the search is the only path.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.fhir.conftest import wait_active, wait_off_worklist, wait_on_worklist
from tests.support.sekmet import new_key, patient_resource, service_request

POLL = {"rest-hook": 600.0, "backport": 600.0, "poll": 1.0}


@pytest.mark.parametrize("mode", ["rest-hook", "backport", "poll"])
def test_order_reaches_the_worklist_and_a_revoked_one_leaves(make_broker, sekmet, mode):
    broker = make_broker(mode, poll_seconds=POLL[mode])
    if mode != "poll":
        wait_active(broker)
    patient = sekmet.create(patient_resource(new_key("M"), "Lovelace", "Ada"))
    accession = new_key("A")
    start = datetime.now().replace(microsecond=0) + timedelta(hours=1)
    order = sekmet.create(service_request(patient["id"], new_key("P"), accession, start))

    item = wait_on_worklist(broker, accession)
    assert str(item.PatientName) == "Lovelace^Ada"
    assert item.PatientID == patient["identifier"][0]["value"]
    step = item.ScheduledProcedureStepSequence[0]
    assert step.Modality == "CT"
    assert step.ScheduledStationAETitle == "CT1"
    assert step.ScheduledProcedureStepStartDate == start.strftime("%Y%m%d")
    assert step.ScheduledProcedureStepStartTime.startswith(start.strftime("%H%M%S"))

    sekmet.update({**order, "status": "revoked"})
    wait_off_worklist(broker, accession)


def test_entered_in_error_cancels_too(make_broker, sekmet):
    broker = make_broker("rest-hook", poll_seconds=600.0)
    wait_active(broker)
    patient = sekmet.create(patient_resource(new_key("M")))
    accession = new_key("A")
    order = sekmet.create(service_request(patient["id"], new_key("P"), accession,
                                          datetime.now() + timedelta(hours=2)))
    wait_on_worklist(broker, accession)
    sekmet.update({**order, "status": "entered-in-error"})
    wait_off_worklist(broker, accession)
