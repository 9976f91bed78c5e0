"""The skeleton end to end: an EHR's ORM^O01 over MLLP becomes a worklist item DCMTK can see."""
from pathlib import Path

from sqlalchemy import func, select

from broker.hl7.message import parse
from broker.store.models import InboundMessage, Order
from tests.support.dcmtk import echoscu, findscu
from tests.support.hl7client import send

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hl7"
SPS = "ScheduledProcedureStepSequence[0]"
RETURN_KEYS = [
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "AccessionNumber", "RequestedProcedureID", "StudyInstanceUID", "ReferringPhysicianName",
    "RequestedProcedurePriority", "RequestedProcedureDescription", f"{SPS}.Modality",
    f"{SPS}.ScheduledStationAETitle", f"{SPS}.ScheduledProcedureStepStartDate",
    f"{SPS}.ScheduledProcedureStepStartTime", f"{SPS}.ScheduledProcedureStepID",
    f"{SPS}.ScheduledProcedureStepDescription",
]


def test_orm_over_mllp_is_acknowledged_and_served_to_findscu(broker):
    hl7_port, dicom_port = broker.listeners.hl7[1], broker.listeners.dicom[1]
    ack = parse(send(hl7_port, (FIXTURES / "orm_o01_v231_utf8.hl7").read_bytes()))
    assert ack.get("MSA", 1) == "AA"
    assert ack.get("MSA", 2) == "MSG00042"
    assert (ack.get("MSH", 5), ack.get("MSH", 6)) == ("CERNER", "STMARYS")

    items = findscu(dicom_port, [f"{SPS}.Modality=CT", f"{SPS}.ScheduledProcedureStepStartDate=20261124",
                                 *RETURN_KEYS])
    assert len(items) == 1
    item = items[0]
    assert str(item.PatientName) == "Björk^Ingrid^M"
    assert item.SpecificCharacterSet == "ISO_IR 192"
    assert (item.PatientID, item.IssuerOfPatientID) == ("778899", "STMARYS")
    assert (item.PatientBirthDate, item.PatientSex) == ("19720304", "F")
    assert item.AccessionNumber == "ACC778"
    assert item.RequestedProcedureID == "RP778"
    assert item.StudyInstanceUID == "1.2.826.0.1.3680043.10.1254.778899.1"
    assert str(item.ReferringPhysicianName) == "House^Gregory^^Dr"  # XCN prefix -> PN prefix
    assert item.RequestedProcedurePriority == "STAT"
    sps = item.ScheduledProcedureStepSequence[0]
    assert sps.Modality == "CT"
    assert list(sps.ScheduledStationAETitle) == ["CT1", "CT2"]  # from mappings/procedures.toml
    assert (sps.ScheduledProcedureStepStartDate, sps.ScheduledProcedureStepStartTime) == (
        "20261124", "093000")
    assert sps.ScheduledProcedureStepID == "SPS778"
    assert sps.ScheduledProcedureStepDescription == "CT chest with contrast"


def test_query_for_another_day_or_modality_finds_nothing(broker):
    send(broker.listeners.hl7[1], (FIXTURES / "orm_o01_v231_utf8.hl7").read_bytes())
    port = broker.listeners.dicom[1]
    assert findscu(port, [f"{SPS}.ScheduledProcedureStepStartDate=20261125", "PatientName"]) == []
    assert findscu(port, [f"{SPS}.Modality=MR", "PatientName"]) == []
    assert len(findscu(port, ["PatientName=BJ*", "PatientID"])) == 1  # case-insensitive wild card


def test_resend_is_acknowledged_and_not_applied_twice(broker):
    raw = (FIXTURES / "orm_o01_v231_utf8.hl7").read_bytes()
    first = parse(send(broker.listeners.hl7[1], raw))
    again = parse(send(broker.listeners.hl7[1], raw))
    assert (first.get("MSA", 1), again.get("MSA", 1)) == ("AA", "AA")
    assert again.get("MSA", 2) == "MSG00042"
    with broker.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 1
        assert session.scalar(select(func.count()).select_from(InboundMessage)) == 1


def test_message_is_stored_before_it_is_acknowledged(broker):
    raw = (FIXTURES / "orm_o01_v231_utf8.hl7").read_bytes()
    send(broker.listeners.hl7[1], raw)
    with broker.sessions() as session:
        row = session.scalars(select(InboundMessage)).one()
        assert row.raw == raw
        assert row.status == "PROCESSED"
        assert parse(row.ack).get("MSA", 2) == "MSG00042"


def test_bad_input_gets_a_protocol_answer_and_the_listener_keeps_serving(broker):
    port = broker.listeners.hl7[1]
    unsupported = b"MSH|^~\\&|X|Y|BROKER|RAD|20261123||QRY^A19|Q1|P|2.3.1\rQRD|1"
    ack = parse(send(port, unsupported))
    assert (ack.get("MSA", 1), ack.get("MSA", 2)) == ("AR", "Q1")
    assert parse(send(port, b"this is not hl7")).get("MSA", 1) == "AR"
    cancel_unknown = (FIXTURES / "orm_o01_v231_utf8.hl7").read_bytes().replace(
        b"ORC|NW|", b"ORC|XX|").replace(b"MSG00042", b"MSG00043")
    ack = parse(send(port, cancel_unknown))
    assert ack.get("MSA", 1) == "AE" and ack.get("MSA", 3)
    ok = parse(send(port, (FIXTURES / "orm_o01_v231_utf8.hl7").read_bytes()))
    assert ok.get("MSA", 1) == "AA"
    with broker.sessions() as session:
        statuses = session.scalars(select(InboundMessage.status).order_by(InboundMessage.id)).all()
    assert statuses == ["REJECTED", "REJECTED", "FAILED", "PROCESSED"]


def test_echoscu_verification(broker):
    result = echoscu(broker.listeners.dicom[1])
    assert result.returncode == 0, result.stderr


def test_wrong_called_ae_title_is_rejected(broker):
    result = echoscu(broker.listeners.dicom[1], called="NOT_BROKER")
    assert result.returncode != 0
