"""The whole chain against a real PACS (Orthanc): HL7 order -> DCMTK findscu -> MPPS ->
instances stored with DCMTK storescu -> the EHR hears IP, CM and the study-available ORU^R01."""
from dataclasses import replace

import pytest
from sqlalchemy import select

from broker.config import NotifySettings, PacsSettings
from broker.notify.pacs_check import recheck
from broker.service import Broker
from broker.store.models import StudyCheck
from tests.conftest import make_test_settings
from tests.notify.chain import order_and_worklist, perform
from tests.support import orthanc as pacs_support
from tests.support.ehr import AsyncioEhr

pytestmark = pytest.mark.skipif(not pacs_support.available(), reason="orthanc not installed")


@pytest.fixture
def orthanc(tmp_path):
    server = pacs_support.Orthanc(tmp_path / "orthanc", {"BROKER": 104, "STORESCU": 104})
    yield server
    server.stop()


@pytest.fixture
def ehr():
    receiver = AsyncioEhr().start()
    yield receiver
    receiver.close()


def _broker(tmp_path, ehr, orthanc, qido: bool = False, give_up: float = 120.0):
    settings = make_test_settings(tmp_path)
    settings = replace(
        settings,
        pacs=PacsSettings(ae_title=orthanc.aet, host="127.0.0.1", port=orthanc.dicom_port,
                          qido_url=f"{orthanc.url}/dicom-web" if qido else ""),
        notify=NotifySettings(hl7_to=(ehr.destination,), trigger="pacs", interval_seconds=0.1,
                              pacs_check_interval_seconds=0.3, pacs_give_up_seconds=give_up))
    broker = Broker(settings)
    broker.start()
    return broker


@pytest.mark.parametrize("qido", [False, True], ids=["c-find", "qido-rs"])
def test_completed_exam_with_images_in_the_pacs_reaches_the_ehr(tmp_path, ehr, orthanc, qido):
    broker = _broker(tmp_path, ehr, orthanc, qido=qido)
    try:
        item = order_and_worklist(broker)
        done = perform(broker, item, images=3)
        assert [(r.message_type, r.order_status) for r in ehr.wait_for(2)] == [
            ("ORM^O01", "IP"), ("ORM^O01", "CM")]
        orthanc.store(pacs_support.write_instances(tmp_path / "dcm", str(item.StudyInstanceUID),
                                                   done, str(item.PatientID), "ACC778"))
        received = ehr.wait_for(3)
    finally:
        broker.stop()
    assert [r.message_type for r in received] == ["ORM^O01", "ORM^O01", "ORU^R01"]
    oru = received[2].message
    assert [oru.field(s, 5) for s in oru.segments_named("OBX")][:2] == [
        str(item.StudyInstanceUID), "ACC778"]


def test_missing_images_are_given_up_visibly_and_can_be_checked_again(tmp_path, ehr, orthanc):
    broker = _broker(tmp_path, ehr, orthanc, give_up=1.5)
    try:
        item = order_and_worklist(broker)
        done = perform(broker, item, images=3)
        files = pacs_support.write_instances(tmp_path / "dcm", str(item.StudyInstanceUID), done,
                                             str(item.PatientID), "ACC778")
        orthanc.store(files[:2])  # one image never arrives
        check = _wait_for_check(broker, "MISSING")
        assert check.last_result.startswith("images missing")
        assert (check.found_instances, check.expected_instances) == (2, 3)
        assert [r.message_type for r in ehr.wait_for(2)] == ["ORM^O01", "ORM^O01"]
        orthanc.store(files[2:])
        with broker.sessions.begin() as session:
            recheck(session, check.id, 60)
        received = ehr.wait_for(3)
        assert received[2].message_type == "ORU^R01"
        assert _wait_for_check(broker, "AVAILABLE").id == check.id
    finally:
        broker.stop()


def _wait_for_check(broker, status, timeout=60.0):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with broker.sessions() as session:
            check = session.scalars(select(StudyCheck)).first()
            if check is not None and check.status == status:
                return check
        time.sleep(0.1)
    raise AssertionError(f"no study check became {status}")
