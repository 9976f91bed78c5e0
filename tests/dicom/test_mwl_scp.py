"""The worklist SCP over real sockets: DCMTK findscu/echoscu and pynetdicom as the scanners."""
from __future__ import annotations

import ssl
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind, Verification

from broker.service import Broker
from tests.conftest import make_test_settings
from tests.dicom.seed import seed
from tests.support.dcmtk import FINDSCU, echoscu, findscu

SPS = "ScheduledProcedureStepSequence[0]"


def start_broker(tmp_path: Path, **dicom) -> Broker:
    base = make_test_settings(tmp_path)
    settings = replace(base, hl7=replace(base.hl7, enabled=False),
                       web=replace(base.web, enabled=False), dicom=replace(base.dicom, **dicom))
    broker = Broker(settings)
    broker.migrate()
    with broker.sessions() as session:
        seed(session)
    broker.start()
    return broker


@pytest.fixture
def mwl(tmp_path):
    broker = start_broker(tmp_path)
    yield broker
    broker.stop()


def raw_findscu(port: int, keys: list[bytes], tmp_path: Path, extra: list[str] = ()) -> list:
    """findscu with keys given as bytes, so a Latin-1 or UTF-8 query goes out as those bytes."""
    from pydicom import dcmread
    out = tmp_path / "rsp"
    out.mkdir(exist_ok=True)
    args = [FINDSCU.encode(), b"-W", b"-X", b"-od", str(out).encode(), b"-aec", b"BROKER"]
    for key in keys:
        args += [b"-k", key]
    args += [a.encode() for a in extra] + [b"127.0.0.1", str(port).encode()]
    result = subprocess.run(args, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def scu_find(port: int, identifier: Dataset, calling: str = "PYSCU") -> list[tuple[int, Dataset]]:
    """pynetdicom as the scanner: every (status, identifier) the SCP sent."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="BROKER")
    assert assoc.is_established
    try:
        return [(status.Status, ident) for status, ident in
                assoc.send_c_find(identifier, ModalityWorklistInformationFind)]
    finally:
        assoc.release()


def test_latin1_query_is_answered_in_latin1(mwl, tmp_path):
    items = raw_findscu(mwl.listeners.dicom[1], [
        b"(0008,0005)=ISO_IR 100", "PatientName=MÜLL*".encode("latin-1"), b"PatientID",
        f"{SPS}.ScheduledStationAETitle".encode()], tmp_path)
    assert len(items) == 1
    assert items[0].SpecificCharacterSet == "ISO_IR 100"
    assert str(items[0].PatientName) == "Müller^Jürgen"
    assert list(items[0].ScheduledProcedureStepSequence[0].ScheduledStationAETitle) == ["CT1", "CT2"]


def test_utf8_query_is_answered_in_utf8(mwl, tmp_path):
    items = raw_findscu(mwl.listeners.dicom[1], [
        b"(0008,0005)=ISO_IR 192", "PatientName=müller^jürgen".encode(), b"PatientID"], tmp_path)
    assert [(i.SpecificCharacterSet, str(i.PatientName)) for i in items] == [
        ("ISO_IR 192", "Müller^Jürgen")]


def test_japanese_name_to_a_latin1_scanner_comes_as_utf8_not_garbled(mwl, tmp_path):
    items = raw_findscu(mwl.listeners.dicom[1], [b"(0008,0005)=ISO_IR 100", b"PatientID=P3",
                                                 b"PatientName"], tmp_path)
    assert items[0].SpecificCharacterSet == "ISO_IR 192"
    assert str(items[0].PatientName) == "Yamada^Tarou=山田^太郎=やまだ^たろう"


def test_iso2022_ir87_query_on_the_ideographic_group(mwl):
    query = Dataset()
    query.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    query.PatientName = "=山田*"
    query.PatientID = ""
    answers = scu_find(mwl.listeners.dicom[1], query)
    assert [s for s, _ in answers] == [0xFF00, 0x0000]
    item = answers[0][1]
    assert list(item.SpecificCharacterSet) == ["", "ISO 2022 IR 87"]
    assert str(item.PatientName) == "Yamada^Tarou=山田^太郎=やまだ^たろう"
    assert item.PatientID == "P3"


def test_every_requested_key_comes_back_zero_length_when_unknown(mwl):
    answers = findscu(mwl.listeners.dicom[1], [
        "PatientID=P2", "AdmissionID", "PatientWeight", "PatientName", "AccessionNumber",
        "RequestedProcedureCodeSequence", f"{SPS}.ScheduledProtocolCodeSequence",
        f"{SPS}.ScheduledProcedureStepStatus", f"{SPS}.ScheduledStationName"], extra=["-xi"])
    assert len(answers) == 1
    item = answers[0]
    assert item.AdmissionID == "" and item.PatientWeight is None
    assert item.RequestedProcedureCodeSequence[0].CodeValue == "CS2"
    sps = item.ScheduledProcedureStepSequence[0]
    assert sps.ScheduledProcedureStepStatus == "ARRIVED"
    assert len(sps.ScheduledProtocolCodeSequence) == 0
    assert sps.ScheduledStationName == ""
    assert "SpecificCharacterSet" not in item  # plain ASCII answer, none asked


@pytest.mark.parametrize("mutate,status", [
    (lambda q: q.ScheduledProcedureStepSequence[0].__setattr__(
        "ScheduledProcedureStepStartDate", "20261399"), 0xC000),
    (lambda q: q.ScheduledProcedureStepSequence.append(Dataset()), 0xA900),
    (lambda q: q.__setattr__("StudyInstanceUID", "1.2.x"), 0xC000),
], ids=["bad date", "two step items", "bad UID"])
def test_invalid_query_gets_a_failure_status_and_the_server_keeps_serving(mwl, caplog, mutate, status):
    query = Dataset()
    query.PatientName = ""
    query.ScheduledProcedureStepSequence = [Dataset()]
    mutate(query)
    answers = scu_find(mwl.listeners.dicom[1], query)
    assert [s for s, _ in answers] == [status]
    assert any("invalid query" in r.getMessage() for r in caplog.records)
    assert len(findscu(mwl.listeners.dicom[1], [f"{SPS}.Modality=CT", "PatientID"])) == 3


def test_implicit_vr_query_sorted_by_start(mwl):
    items = findscu(mwl.listeners.dicom[1], [f"{SPS}.ScheduledProcedureStepStartDate",
                                             f"{SPS}.ScheduledProcedureStepID"], extra=["-xi"])
    assert [i.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID for i in items] == [
        "S5", "S1", "S2", "S3", "S6"]


def test_calling_ae_allowlist(tmp_path):
    broker = start_broker(tmp_path, allowed_calling_ae_titles=("CT1",))
    try:
        port = broker.listeners.dicom[1]
        assert echoscu(port, calling="ECHOSCU").returncode != 0
        assert echoscu(port, calling="CT1").returncode == 0
    finally:
        broker.stop()


@pytest.mark.parametrize("allowed,ok", [(("10.0.0.0/8",), False), (("127.0.0.0/8",), True)])
def test_address_allowlist(tmp_path, allowed, ok):
    broker = start_broker(tmp_path, allowed_calling_addresses=allowed)
    try:
        assert (echoscu(broker.listeners.dicom[1]).returncode == 0) is ok
    finally:
        broker.stop()


def test_association_limit_and_abort(tmp_path):
    broker = start_broker(tmp_path, max_associations=1)
    try:
        port = broker.listeners.dicom[1]
        ae = AE(ae_title="HOLDER")
        ae.add_requested_context(Verification)
        held = ae.associate("127.0.0.1", port, ae_title="BROKER")
        assert held.is_established
        second = ae.associate("127.0.0.1", port, ae_title="BROKER")
        assert second.is_rejected
        held.abort()
        for _ in range(50):  # the server thread notices the abort asynchronously
            again = ae.associate("127.0.0.1", port, ae_title="BROKER")
            if again.is_established:
                assert again.send_c_echo().Status == 0
                again.release()
                break
        else:
            pytest.fail("the server did not accept a new association after the abort")
    finally:
        broker.stop()


def test_tls(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    broker = start_broker(tmp_path, tls_cert_file=str(cert), tls_key_file=str(key))
    try:
        port = broker.listeners.dicom[1]
        assert echoscu(port).returncode != 0  # plain TCP is not served
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
        context.check_hostname = False
        ae = AE(ae_title="TLSSCU")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", port, ae_title="BROKER", tls_args=(context, None))
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assoc.release()
    finally:
        broker.stop()


class _Requestor:
    address, port, ae_title = "127.0.0.1", 40000, "CT1"


class _CancellingEvent:
    """The parts of a pynetdicom C-FIND event the handler reads; C-CANCEL arrives after one reply."""

    def __init__(self, identifier: Dataset) -> None:
        self.identifier = identifier
        self.assoc = type("Assoc", (), {"requestor": _Requestor()})()
        self.context = type("Context", (), {"transfer_syntax": "1.2.840.10008.1.2"})()
        self.replies = 0

    @property
    def is_cancelled(self) -> bool:
        return self.replies >= 1


def test_c_cancel_stops_the_replies_with_status_cancel(tmp_path):
    from broker.config import WorklistSettings
    from broker.dicom.scp import handle_find
    broker = Broker(make_test_settings(tmp_path))
    broker.migrate()
    try:
        with broker.sessions() as session:
            seed(session)
        query = Dataset()
        query.PatientID = ""
        event = _CancellingEvent(query)
        statuses = []
        for status, _ in handle_find(event, broker.sessions, WorklistSettings()):
            statuses.append(status)
            event.replies += 1
        assert statuses == [0xFF00, 0xFE00]
    finally:
        broker.stop()


def test_step_end_is_returned_when_asked_and_zero_length_when_unknown(mwl):
    keys = ["PatientID", f"{SPS}.ScheduledProcedureStepEndDate",
            f"{SPS}.ScheduledProcedureStepEndTime", f"{SPS}.Modality=MR\\CT"]
    ends = {i.PatientID: (i.ScheduledProcedureStepSequence[0].ScheduledProcedureStepEndDate,
                          i.ScheduledProcedureStepSequence[0].ScheduledProcedureStepEndTime)
            for i in findscu(mwl.listeners.dicom[1], keys)}
    assert ends == {"P1": ("20261124", "100500"), "P2": ("", ""), "P3": ("", ""),
                    "P5": ("", ""), "P6": ("", "")}
    asked_other = findscu(mwl.listeners.dicom[1], ["PatientID=P1", f"{SPS}.Modality"])
    assert "ScheduledProcedureStepEndDate" not in asked_other[0].ScheduledProcedureStepSequence[0]


def test_zero_item_step_sequence_carries_the_end_only_where_known(mwl):
    # C.2.2.2.6: an empty SPS item asks for the entire sequence; a Type 3 key the broker has
    # no value for is left out rather than sent empty.
    query = Dataset()
    query.PatientID = ""
    query.ScheduledProcedureStepSequence = [Dataset()]
    answers = {ds.PatientID: ds.ScheduledProcedureStepSequence[0]
               for status, ds in scu_find(mwl.listeners.dicom[1], query) if status == 0xFF00}
    assert (answers["P1"].ScheduledProcedureStepEndDate,
            answers["P1"].ScheduledProcedureStepEndTime) == ("20261124", "100500")
    assert "ScheduledProcedureStepEndDate" not in answers["P2"]
    assert answers["P2"].ScheduledProcedureStepStartTime == "140000"


def test_worklist_queries_use_the_find_session_factory_when_given(tmp_path):
    """The composition root may serve C-FIND from its own (read-only) session factory."""
    from broker.config import DicomSettings, WorklistSettings
    from broker.dicom.scp import start_dicom_server
    from broker.store.db import make_engine, make_session_factory
    from broker.store.migrate import upgrade
    engines = [make_engine(f"sqlite:///{tmp_path / name}.db") for name in ("main", "worklist")]
    for engine in engines:
        upgrade(engine)
    main_sessions, find_sessions = (make_session_factory(e) for e in engines)
    with find_sessions() as session:
        seed(session)
    server = start_dicom_server(DicomSettings(port=0), WorklistSettings(), main_sessions,
                                find_sessions=find_sessions)
    try:
        answers = findscu(server.server_address[1], [f"{SPS}.Modality=CT", "PatientID"])
        assert sorted(a.PatientID for a in answers) == ["P1", "P3", "P5"]
    finally:
        server.shutdown()
        for engine in engines:
            engine.dispose()
