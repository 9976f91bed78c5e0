"""Performed steps in the store: matching references, steps the lifecycle refuses to move."""
import pytest

from broker.domain.mpps import PerformedReport, PerformedStatus, ScheduledReference
from broker.domain.records import Identifier, PatientRecord
from broker.store.models import Order, ScheduledStep
from broker.store.performed import match_references, start_performed_step
from broker.store.steps import order_history
from tests.support.schedule import schedule


@pytest.mark.parametrize("ref, expected", [
    (ScheduledReference(accession_number="ACC1"), [0]),
    (ScheduledReference(study_instance_uid="1.2.826.0.1.1", scheduled_step_id="SPS1-CT"), [0]),
    (ScheduledReference(requested_procedure_id="RP2"), [1]),
    (ScheduledReference(accession_number="ACC1", requested_procedure_id="RP2"), []),  # disagree
    (ScheduledReference(study_instance_uid="9.9.9"), []),
    (ScheduledReference(), []),
])
def test_every_given_key_must_agree(sessions, ref, expected):
    orders = [schedule(sessions, 1), schedule(sessions, 2)]
    with sessions() as session:
        found = [s.id for s in match_references(session, [ref])]
    assert found == [orders[i]["steps"][0] for i in expected]


def test_mpps_for_a_canceled_step_is_linked_and_the_refusal_recorded(sessions):
    order = schedule(sessions, 3)
    with sessions.begin() as session:
        session.get(ScheduledStep, order["steps"][0]).status = "CANCELED"
        session.get(Order, order["order"]).status = "CANCELED"
    report = PerformedReport("1.2.3.3", PerformedStatus.IN_PROGRESS, modality="CT",
                             references=(ScheduledReference(accession_number="ACC3"),))
    with sessions.begin() as session:
        row = start_performed_step(session, report, "dicom:CT1")
        assert not row.unscheduled and row.patient_id == order["patient"]
    with sessions() as session:
        assert session.get(ScheduledStep, order["steps"][0]).status == "CANCELED"
        (event,) = order_history(session, order["order"])
        assert event.action == "step unchanged" and "CANCELED" in event.detail["reason"]


@pytest.mark.parametrize("patient_id, flagged", [("778899", False), ("OTHER-1", True)])
def test_mpps_with_another_patient_id_is_linked_and_flagged(sessions, patient_id, flagged):
    order = schedule(sessions, 4)
    report = PerformedReport("1.2.3.4", PerformedStatus.IN_PROGRESS, modality="CT",
                             references=(ScheduledReference(accession_number="ACC4"),),
                             patient=PatientRecord((Identifier(patient_id, "STMARYS"),)))
    with sessions.begin() as session:
        assert start_performed_step(session, report, "dicom:CT1").patient_id == order["patient"]
    with sessions() as session:
        actions = [e.action for e in order_history(session, order["order"])]
    assert ("mpps patient mismatch" in actions) is flagged
    assert "step start" in actions
