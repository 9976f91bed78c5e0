"""The PACS reports a study: Orthanc's Lua OnStableStudy over the HTTP hook (the README's script,
run by a real Orthanc), and pynetdicom as an IAN sender (IHE RAD-49)."""
import re
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom import AE
from pynetdicom.sop_class import InstanceAvailabilityNotification

from broker.config import NotifySettings
from broker.service import Broker
from tests.conftest import make_test_settings
from tests.notify.chain import order_and_worklist, perform
from tests.support import orthanc as pacs_support
from tests.support.ehr import AsyncioEhr
from tests.support.modality import finished

README = Path(__file__).resolve().parents[2] / "README.md"
TOKEN = "test-secret-not-for-production"


def readme_lua() -> str:
    section = README.read_text().split("## Notifications", 1)[1]
    return re.search(r"```lua\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def ehr():
    receiver = AsyncioEhr().start()
    yield receiver
    receiver.close()


@pytest.fixture
def broker(tmp_path, ehr):
    settings = make_test_settings(tmp_path)
    settings = replace(settings, notify=NotifySettings(
        hl7_to=(ehr.destination,), trigger="ian", interval_seconds=0.1, http_token=TOKEN))
    running = Broker(settings)
    running.start()
    yield running
    running.stop()


@pytest.mark.skipif(not pacs_support.available(), reason="orthanc not installed")
def test_orthanc_lua_on_stable_study_tells_the_ehr_of_a_study_without_mpps(tmp_path, broker, ehr):
    hook = f"http://127.0.0.1:{broker.listeners.web[1]}/notify/study-stable"
    orthanc = pacs_support.Orthanc(tmp_path / "orthanc", {"STORESCU": 104}, lua=readme_lua(),
                                   env={"BROKER_STUDY_STABLE_URL": hook,
                                        "BROKER_NOTIFY_HTTP_TOKEN": TOKEN})
    try:
        item = order_and_worklist(broker)
        # No MPPS at all: the images alone arrive in the PACS.
        orthanc.store(pacs_support.write_instances(
            tmp_path / "dcm", str(item.StudyInstanceUID), finished(images=2),
            str(item.PatientID), "ACC778"))
        (oru,) = ehr.wait_for(1)
    finally:
        orthanc.stop()
    assert oru.message_type == "ORU^R01"
    assert oru.message.field(oru.message.segments_named("OBX")[0], 5) == str(item.StudyInstanceUID)


@pytest.mark.parametrize("token", ["", "wrong"])
def test_the_hook_refuses_a_caller_without_the_secret(broker, token):
    request = urllib.request.Request(
        f"http://127.0.0.1:{broker.listeners.web[1]}/notify/study-stable",
        data=b'{"StudyInstanceUID": "1.2.3"}', method="POST",
        headers={"Content-Type": "application/json",
                 **({"Authorization": f"Bearer {token}"} if token else {})})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401


def _ian(study_uid: str, modification: Dataset) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = study_uid
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    series_items = []
    for performed in modification.PerformedSeriesSequence:
        series = Dataset()
        series.SeriesInstanceUID = performed.SeriesInstanceUID
        refs = []
        for image in performed.ReferencedImageSequence:
            ref = Dataset()
            ref.ReferencedSOPClassUID = image.ReferencedSOPClassUID
            ref.ReferencedSOPInstanceUID = image.ReferencedSOPInstanceUID
            ref.InstanceAvailability = "ONLINE"
            ref.RetrieveAETitle = "PACS"
            refs.append(ref)
        series.ReferencedSOPSequence = Sequence(refs)
        series_items.append(series)
    ds.ReferencedSeriesSequence = Sequence(series_items)
    return ds


def test_an_ian_after_mpps_completed_makes_the_study_available(broker, ehr):
    item = order_and_worklist(broker)
    done = perform(broker, item, images=2)
    assert [r.order_status for r in ehr.wait_for(2)] == ["IP", "CM"]
    ae = AE(ae_title="PACS")
    ae.add_requested_context(InstanceAvailabilityNotification)
    assoc = ae.associate("127.0.0.1", broker.listeners.dicom[1], ae_title="BROKER")
    assert assoc.is_established
    try:
        status, _ = assoc.send_n_create(_ian(str(item.StudyInstanceUID), done),
                                        InstanceAvailabilityNotification, "1.2.3.4.5.6")
    finally:
        assoc.release()
    assert status.Status == 0x0000
    received = ehr.wait_for(3)
    assert received[2].message_type == "ORU^R01"
