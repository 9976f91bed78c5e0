"""The MPPS SCP over real associations, pynetdicom as the modality, on SQLite and PostgreSQL."""
from __future__ import annotations

import threading

import pytest
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from sqlalchemy import select

from broker.config import DicomSettings, WorklistSettings
from broker.dicom.scp import start_dicom_server
from broker.store.models import (
    InboundMessage, Patient, PerformedStep, PerformedStepLink, ScheduledStep,
)
from broker.store.performed import attach_performed_step
from broker.store.steps import order_history
from tests.support.dcmtk import findscu
from tests.support.modality import Modality, finished, in_progress, scheduled_item
from tests.support.schedule import schedule


@pytest.fixture
def port(sessions):
    server = start_dicom_server(DicomSettings(port=0), WorklistSettings(), sessions)
    yield server.server_address[1]
    server.shutdown()


def _item(order, i=0):
    return scheduled_item(order["study"], order["accession"], order["rp"], order["sps"][i])


def _statuses(sessions, order):
    with sessions() as session:
        steps = [session.get(ScheduledStep, i) for i in order["steps"]]
        return [s.status for s in steps], steps[0].procedure.order.status


def test_in_progress_then_completed_moves_step_and_order_and_keeps_what_was_done(sessions, port):
    order = schedule(sessions, 1)
    with Modality(port) as ct:
        status, uid = ct.create(in_progress([_item(order)]))
        assert status.Status == 0x0000
        assert _statuses(sessions, order) == (["STARTED"], "IN_PROGRESS")
        status = ct.set(finished("COMPLETED", images=4, dose=True), uid)
        assert status.Status == 0x0000
    assert _statuses(sessions, order) == (["COMPLETED"], "COMPLETED")
    with sessions() as session:
        row = session.scalars(select(PerformedStep)).one()
        assert (row.sop_instance_uid, row.status, row.unscheduled) == (uid, "COMPLETED", False)
        assert row.patient_id == order["patient"]
        assert (row.modality, row.station_ae_title, row.calling_ae_title) == ("CT", "CT1", "CT1")
        assert row.started_at.isoformat() == "2026-11-24T09:35:12"
        assert row.ended_at.isoformat() == "2026-11-24T10:01:00"
        assert row.summary["image_count"] == 4
        assert row.summary["series"][0]["protocol"] == "Chest routine"
        assert row.summary["performed_protocols"] == [
            {"value": "P1", "scheme": "L", "meaning": "Chest routine"}]
        assert row.summary["dose"]["EntranceDoseInmGy"] == [12.5]
        stored = Dataset.from_json(row.dataset)
        assert str(stored.PatientName) == "Björk^Ingrid"  # N-CREATE attributes kept on N-SET
        assert stored.PerformedProcedureStepStatus == "COMPLETED"
        history = [(e.action, e.detail.get("status_to")) for e in order_history(session, order["order"])]
    assert history == [("step start", "STARTED"), ("order status", "IN_PROGRESS"),
                       ("step complete", "COMPLETED"), ("order status", "COMPLETED")]


def _discontinued(code: str, meaning: str) -> Dataset:
    reason = Dataset()
    reason.CodeValue, reason.CodingSchemeDesignator, reason.CodeMeaning = code, "DCM", meaning
    change = finished("DISCONTINUED", images=0)
    change.PerformedProcedureStepDiscontinuationReasonCodeSequence = Sequence([reason])
    return change


def test_discontinued_keeps_the_reason_code(sessions, port):
    order = schedule(sessions, 2)
    with Modality(port) as ct:
        _, uid = ct.create(in_progress([_item(order)]))
        assert ct.set(_discontinued("110501", "Equipment failure"), uid).Status == 0x0000
    assert _statuses(sessions, order) == (["DISCONTINUED"], "DISCONTINUED")
    with sessions() as session:
        row = session.scalars(select(PerformedStep)).one()
        assert row.discontinuation_reason == "110501^DCM^Equipment failure"
        assert row.summary["discontinuation_reason"]["value"] == "110501"


def test_wrong_worklist_entry_puts_the_step_back_on_the_worklist(sessions, port):
    order = schedule(sessions, 2)
    with Modality(port) as ct:
        _, uid = ct.create(in_progress([_item(order)]))
        wrong = _discontinued("110514", "Incorrect worklist entry selected")
        assert ct.set(wrong, uid).Status == 0x0000
        assert _statuses(sessions, order) == (["SCHEDULED"], "SCHEDULED")
        offered = findscu(port, [f"AccessionNumber={order['accession']}",
                                 "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus"])
        assert [i.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus
                for i in offered] == ["SCHEDULED"]
        # The right patient's exam is then done on it as usual.
        _, again = ct.create(in_progress([_item(order)]))
        assert ct.set(finished("COMPLETED", images=2), again).Status == 0x0000
    assert _statuses(sessions, order) == (["COMPLETED"], "COMPLETED")


def test_an_in_progress_update_changes_nothing_on_the_schedule(sessions, port):
    order = schedule(sessions, 3)
    with Modality(port) as ct:
        _, uid = ct.create(in_progress([_item(order)]))
        change = Dataset()
        change.PerformedProcedureStepStatus = "IN PROGRESS"
        change.PerformedProcedureStepDescription = "CT chest, repeated"
        assert ct.set(change, uid).Status == 0x0000
    assert _statuses(sessions, order) == (["STARTED"], "IN_PROGRESS")
    with sessions() as session:
        assert session.scalars(select(PerformedStep)).one().summary["description"] == \
            "CT chest, repeated"


def _tags(status):
    value = status.get("AttributeIdentifierList")
    if value is None:
        return []
    return [int(t) for t in (value if hasattr(value, "__iter__") else [value])]


ERROR_CASES = [
    # (name, setup, probe) -> expected status and tag keyword (None: no tag list expected)
    ("duplicate N-CREATE", "create", "create-same", 0x0111, None),
    ("N-SET of an unknown instance", None, "set-unknown", 0x0112, None),
    ("N-SET after COMPLETED", "complete", "set", 0x0110, None),
    ("N-SET after DISCONTINUED", "discontinue", "set", 0x0110, None),
    ("N-CREATE missing a required attribute", None, "create-missing", 0x0120, "PerformedStationAETitle"),
    ("N-CREATE with status COMPLETED", None, "create-completed", 0x0106, "PerformedProcedureStepStatus"),
    ("N-CREATE with a bad date", None, "create-bad-date", 0x0106, "PerformedProcedureStepStartDate"),
    ("N-SET of an attribute not allowed", "create", "set-patient", 0x0106, "PatientName"),
    ("N-SET with an unknown status", "create", "set-bad-status", 0x0106, "PerformedProcedureStepStatus"),
    ("N-SET COMPLETED without end time", "create", "set-no-end", 0x0121, "PerformedProcedureStepEndTime"),
]


@pytest.mark.filterwarnings("ignore:Invalid value for VR")  # the bad values are the point
@pytest.mark.parametrize("name, setup, probe, code, keyword", ERROR_CASES,
                         ids=[c[0] for c in ERROR_CASES])
def test_error_statuses(sessions, port, name, setup, probe, code, keyword):
    order = schedule(sessions, 10)
    uid = generate_uid()
    with Modality(port) as ct:
        if setup:
            assert ct.create(in_progress([_item(order)]), uid)[0].Status == 0
        if setup == "complete":
            assert ct.set(finished("COMPLETED"), uid).Status == 0
        if setup == "discontinue":
            assert ct.set(finished("DISCONTINUED", images=0), uid).Status == 0
        status = _probe(ct, probe, order, uid)
        assert status.Status == code, status
        assert status.get("ErrorComment")
        if keyword and probe.startswith("set"):
            assert _tags(status) == [tag_for_keyword(keyword)]
        elif keyword:  # N-CREATE-RSP has no Attribute Identifier List: the tag leads the comment
            tag = tag_for_keyword(keyword)
            assert status.ErrorComment.startswith(f"({tag >> 16:04X},{tag & 0xFFFF:04X})")
        # The listener keeps serving on the same association after a refusal.
        assert ct.create(in_progress([_item(order)]))[0].Status == 0
    with sessions() as session:
        refused = session.scalars(select(InboundMessage).where(
            InboundMessage.status == "REJECTED")).all()
    assert len(refused) == 1 and refused[0].channel == "dicom"
    assert refused[0].error.startswith(f"0x{code:04X}")
    assert refused[0].raw  # what was refused is kept


def _probe(ct, probe, order, uid):
    if probe == "create-same":
        return ct.create(in_progress([_item(order)]), uid)[0]
    if probe == "set-unknown":
        return ct.set(finished(), generate_uid())
    if probe == "set":
        change = Dataset()
        change.PerformedProcedureStepDescription = "late change"
        return ct.set(change, uid)
    ds = in_progress([_item(order)])
    if probe == "create-missing":
        del ds.PerformedStationAETitle
        return ct.create(ds)[0]
    if probe == "create-completed":
        ds.PerformedProcedureStepStatus = "COMPLETED"
        return ct.create(ds)[0]
    if probe == "create-bad-date":
        ds.PerformedProcedureStepStartDate = "24.11.2026"
        return ct.create(ds)[0]
    change = finished()
    if probe == "set-patient":
        change.PatientName = "Someone^Else"
    elif probe == "set-bad-status":
        change.PerformedProcedureStepStatus = "DONE"
    elif probe == "set-no-end":
        change.PerformedProcedureStepEndTime = ""
    return ct.set(change, uid)


def test_one_mpps_for_grouped_procedures_covers_every_step(sessions, port):
    first, second = schedule(sessions, 20), schedule(sessions, 21)
    with Modality(port) as ct:
        _, uid = ct.create(in_progress([_item(first), _item(second)]))
        assert _statuses(sessions, first)[0] == ["STARTED"]
        assert _statuses(sessions, second)[0] == ["STARTED"]
        assert ct.set(finished(), uid).Status == 0
    assert _statuses(sessions, first) == (["COMPLETED"], "COMPLETED")
    assert _statuses(sessions, second) == (["COMPLETED"], "COMPLETED")
    with sessions() as session:
        assert len(session.scalars(select(PerformedStepLink)).all()) == 2


def test_several_mpps_for_one_step_finish_it_when_the_last_one_ends(sessions, port):
    order = schedule(sessions, 30)
    with Modality(port) as ct:
        _, first = ct.create(in_progress([_item(order)]))
        _, second = ct.create(in_progress([_item(order)]))
        assert ct.set(finished("DISCONTINUED", images=0), first).Status == 0
        assert _statuses(sessions, order) == (["STARTED"], "IN_PROGRESS")
        assert ct.set(finished("COMPLETED"), second).Status == 0
    assert _statuses(sessions, order) == (["COMPLETED"], "COMPLETED")


def test_a_step_named_only_by_study_uid_picks_the_reporting_modality(sessions, port):
    order = schedule(sessions, 31, modalities=("CT", "MR"))
    with Modality(port, calling="MR1") as mr:
        _, uid = mr.create(in_progress([scheduled_item(order["study"])], modality="MR",
                                       station="MR1"))
    assert _statuses(sessions, order) == (["SCHEDULED", "STARTED"], "IN_PROGRESS")


@pytest.mark.parametrize("item", [
    pytest.param(lambda order: scheduled_item(), id="no reference (study UID of the modality)"),
    pytest.param(lambda order: scheduled_item(accession="NOPE", sps_id=order["sps"][0]),
                 id="reference matching nothing"),
])
def test_unscheduled_is_kept_with_its_patient_and_can_be_attached(sessions, port, item):
    order = schedule(sessions, 40)
    with Modality(port, calling="CT2") as ct:
        _, uid = ct.create(in_progress([item(order)], patient_id="EMERG-1", name="Doe^John"))
        assert ct.set(finished(), uid).Status == 0
    assert _statuses(sessions, order) == (["SCHEDULED"], "SCHEDULED")
    with sessions.begin() as session:
        row = session.scalars(select(PerformedStep)).one()
        assert row.unscheduled and row.status == "COMPLETED"
        patient = session.get(Patient, row.patient_id)
        assert patient.name == "Doe^John"
        assert [(i.value, i.issuer) for i in patient.identifiers] == [("EMERG-1", "STMARYS")]
        attach_performed_step(session, row.id, order["steps"][0], "admin:alice")
    with sessions() as session:
        row = session.scalars(select(PerformedStep)).one()
        assert not row.unscheduled and row.patient_id == order["patient"]
        actions = [e.action for e in order_history(session, order["order"])]
    assert _statuses(sessions, order) == (["COMPLETED"], "COMPLETED")
    assert actions[0] == "mpps attached" and "step complete" in actions


def test_scp_assigns_the_instance_uid_when_the_modality_leaves_it_out(sessions, port):
    order = schedule(sessions, 50)
    with Modality(port) as ct:
        status, _ = ct.assoc.send_n_create(in_progress([_item(order)]),
                                           "1.2.840.10008.3.1.2.3.3", None)
    assert status.Status == 0
    with sessions() as session:
        assert session.scalars(select(PerformedStep.sop_instance_uid)).one().startswith("1.2.")


def test_concurrent_mpps_from_several_modalities(sessions, port):
    orders = [schedule(sessions, 60 + n) for n in range(6)]
    results, errors = {}, []

    def scanner(n, order):
        try:
            with Modality(port, calling=f"CT{n}") as ct:
                created, uid = ct.create(in_progress([_item(order)], station=f"CT{n}"))
                done = ct.set(finished(images=n + 1), uid)
                results[n] = (created.Status, done.Status)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
    threads = [threading.Thread(target=scanner, args=(n, o)) for n, o in enumerate(orders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert results == {n: (0, 0) for n in range(6)}
    for order in orders:
        assert _statuses(sessions, order) == (["COMPLETED"], "COMPLETED")


def test_concurrent_duplicate_n_create_is_stored_once(sessions, port):
    order = schedule(sessions, 70)
    uid, codes = generate_uid(), []

    def scanner(n):
        with Modality(port, calling=f"CT{n}") as ct:
            codes.append(ct.create(in_progress([_item(order)]), uid)[0].Status)
    threads = [threading.Thread(target=scanner, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(codes) == [0, 0x0111, 0x0111, 0x0111]
    with sessions() as session:
        assert len(session.scalars(select(PerformedStep)).all()) == 1

