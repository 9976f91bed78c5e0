"""The exam lifecycle end to end: HL7 order -> DCMTK C-FIND -> MPPS N-CREATE / N-SET -> order."""
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from broker.config import WorklistSettings
from broker.hl7.message import parse
from broker.service import Broker
from broker.store.models import Order, ScheduledStep
from broker.store.steps import order_history
from tests.conftest import make_test_settings
from tests.support.dcmtk import findscu
from tests.support.hl7client import send
from tests.support.modality import Modality, finished, in_progress, scheduled_item

ORM = Path(__file__).resolve().parents[2] / "fixtures" / "hl7" / "orm_o01_v231_utf8.hl7"
SPS = "ScheduledProcedureStepSequence[0]"
QUERY = [f"{SPS}.Modality=CT", f"{SPS}.ScheduledProcedureStepStartDate=20261124",
         f"{SPS}.ScheduledProcedureStepID", f"{SPS}.ScheduledProcedureStepStatus",
         "PatientName", "PatientID", "AccessionNumber", "RequestedProcedureID", "StudyInstanceUID"]


@pytest.fixture(params=[("SCHEDULED", "ARRIVED", "READY"),
                        ("SCHEDULED", "ARRIVED", "READY", "STARTED")],
                ids=["default statuses", "STARTED served too"])
def running(request, tmp_path):
    settings = make_test_settings(tmp_path)
    settings = replace(settings, worklist=replace(WorklistSettings(), served_statuses=request.param))
    broker = Broker(settings)
    broker.start()
    yield broker
    broker.stop()


def _order(broker):
    with broker.sessions() as session:
        order = session.scalars(select(Order)).one()
        step = session.scalars(select(ScheduledStep)).one()
        return order.status, step.status, [e.action for e in order_history(session, order.id)]


def test_order_to_worklist_to_mpps_completed(running):
    hl7_port, dicom_port = running.listeners.hl7[1], running.listeners.dicom[1]
    assert parse(send(hl7_port, ORM.read_bytes())).get("MSA", 1) == "AA"
    (item,) = findscu(dicom_port, QUERY, calling="CT1")
    sps = item.ScheduledProcedureStepSequence[0]
    # The modality copies what the worklist gave it into the MPPS (IHE RAD TF-2 4.6.4.1.2).
    reference = scheduled_item(item.StudyInstanceUID, item.AccessionNumber,
                               item.RequestedProcedureID, sps.ScheduledProcedureStepID)
    with Modality(dicom_port, calling="CT1") as ct:
        created, uid = ct.create(in_progress([reference], patient_id=item.PatientID,
                                             name=str(item.PatientName)))
        assert created.Status == 0x0000
        assert _order(running)[:2] == ("IN_PROGRESS", "STARTED")
        started = findscu(dicom_port, QUERY, calling="CT1")
        served = "STARTED" in running.settings.worklist.served_statuses
        assert [i.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus
                for i in started] == (["STARTED"] if served else [])
        assert ct.set(finished("COMPLETED"), uid).Status == 0x0000
    assert findscu(dicom_port, QUERY, calling="CT1") == []  # a completed step leaves at once
    status, step_status, history = _order(running)
    assert (status, step_status) == ("COMPLETED", "COMPLETED")
    assert history == ["step start", "order status", "step complete", "order status"]
