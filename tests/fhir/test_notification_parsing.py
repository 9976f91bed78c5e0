"""Notification bodies read into hints: R4 rest-hook and Backport IG bundles (no I/O)."""
from __future__ import annotations

import pytest

from broker.fhir.notifications import UnreadableNotification, parse_body, read_notice

SR = {"resourceType": "ServiceRequest", "id": "1", "status": "active"}
PATIENT = {"resourceType": "Patient", "id": "p"}


def _backport(kind: str, events: list[tuple[int, str | None]], since: int,
              resources: list[dict] = ()) -> dict:
    parameters = [{"name": "type", "valueCode": kind},
                  {"name": "events-since-subscription-start", "valueString": str(since)}]
    for number, focus in events:
        parts = [{"name": "event-number", "valueString": str(number)}]
        if focus:
            parts.append({"name": "focus", "valueReference": {"reference": focus}})
        parameters.append({"name": "notification-event", "part": parts})
    return {"resourceType": "Bundle", "type": "history",
            "entry": [{"resource": {"resourceType": "Parameters", "parameter": parameters}},
                      *({"resource": r} for r in resources)]}


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'{"a": 1}', b"\xff\xfe"])
def test_unreadable_bodies(raw):
    with pytest.raises(UnreadableNotification):
        parse_body(raw)


def test_empty_body_is_a_ping():
    notice = read_notice(parse_body(b"  "))
    assert (notice.kind, notice.search) == ("ping", True)


def test_full_resource_put():
    notice = read_notice(SR)
    assert (notice.kind, notice.resources, notice.search) == ("resource", (SR,), False)


@pytest.mark.parametrize("body, kind, resources, focus, search, numbers", [
    (_backport("handshake", [], 0), "handshake", (), (), False, ()),
    (_backport("heartbeat", [], 4), "heartbeat", (), (), False, ()),
    (_backport("event-notification", [(5, "http://h/fhir/ServiceRequest/1")], 5, [SR, PATIENT]),
     "event", (SR,), (), False, (5,)),
    (_backport("event-notification", [(6, "http://h/fhir/ServiceRequest/2/_history/3")], 6),
     "event", (), ("http://h/fhir/ServiceRequest/2/_history/3",), False, (6,)),
    (_backport("event-notification", [(7, None)], 7), "event", (), (), True, (7,)),
])
def test_backport_bundles(body, kind, resources, focus, search, numbers):
    notice = read_notice(body)
    assert (notice.kind, notice.resources, notice.focus, notice.search, notice.event_numbers) == \
        (kind, resources, focus, search, numbers)


def test_a_patient_sent_along_is_included_not_applied():
    notice = read_notice(_backport("event-notification", [(1, "ServiceRequest/1")], 1,
                                   [SR, PATIENT]))
    assert notice.included == {"Patient/p": PATIENT}
