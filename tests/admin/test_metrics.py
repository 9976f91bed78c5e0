"""/metrics of a running broker counts HL7 messages over MLLP and C-FIND from DCMTK."""
from __future__ import annotations

import re
import urllib.request

from broker.admin.accounts import create_token
from tests.support.dcmtk import findscu
from tests.support.hl7client import send_and_read_ack
from tests.support.hl7messages import orm


def _value(text: str, name: str, labels: str) -> float:
    found = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_metrics_count_hl7_and_c_find(broker):
    with broker.sessions.begin() as session:
        token = create_token(session, "prometheus", "viewer", "test")
    host, port = broker.listeners.web

    def scrape() -> str:
        request = urllib.request.Request(f"http://{host}:{port}/metrics",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            return response.read().decode()

    before = scrape()
    assert send_and_read_ack(broker.listeners.hl7[1], orm("M1", "NW")).get("MSA", 1) == "AA"
    findscu(broker.listeners.dicom[1], ["AccessionNumber=A1", "PatientName"])
    after = scrape()
    labels = 'outcome="PROCESSED",type="ORM^O01"'
    assert _value(after, "broker_hl7_messages_total", labels) == \
        _value(before, "broker_hl7_messages_total", labels) + 1
    assert _value(after, "broker_dicom_requests_total", 'service="C-FIND"') >= 1
    assert re.search(r'^broker_dicom_request_seconds_count\{service="C-FIND"\} [1-9]', after, re.M)
    assert re.search(r"^broker_hl7_ack_seconds_count [1-9]", after, re.M)
    assert "broker_match_queue_open 0.0" in after
