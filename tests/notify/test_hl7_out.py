"""Order status and study availability to the EHR over MLLP, trigger "mpps" (no PACS)."""
from dataclasses import replace

import pytest

from broker.config import NotifySettings
from broker.service import Broker
from tests.conftest import make_test_settings
from tests.notify.chain import order_and_worklist, perform
from tests.support.ehr import AsyncioEhr, ClosingEhr


def _broker(tmp_path, destinations, **notify):
    settings = make_test_settings(tmp_path)
    settings = replace(settings, notify=NotifySettings(
        hl7_to=tuple(destinations), trigger="mpps", interval_seconds=0.1, retry_base_seconds=0.2,
        retry_max_seconds=1.0, **notify))
    broker = Broker(settings)
    broker.start()
    return broker


@pytest.fixture(params=["persistent", "closing"])
def ehr(request):
    receiver = AsyncioEhr().start() if request.param == "persistent" else ClosingEhr()
    yield receiver
    receiver.close()


def test_exam_started_completed_and_study_available(tmp_path, ehr):
    broker = _broker(tmp_path, [ehr.destination])
    try:
        item = order_and_worklist(broker)
        perform(broker, item, images=3)
        received = ehr.wait_for(3)
    finally:
        broker.stop()
    assert [(r.message_type, r.order_status) for r in received] == [
        ("ORM^O01", "IP"), ("ORM^O01", "CM"), ("ORU^R01", "CM")]
    assert all(r.placer == "ORD778" for r in received)
    oru = received[2].message
    obx = {oru.field(seg, 3): oru.field(seg, 5) for seg in oru.segments_named("OBX")}
    assert obx["110180"] == str(item.StudyInstanceUID)
    assert obx["121022"] == "ACC778"
    assert obx["SERIES"] == "1" and obx["INSTANCES"] == "3"
    assert len({r.control_id for r in received}) == 3
