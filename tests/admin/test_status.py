"""The status page: counts only, and right whichever statuses the stored messages have."""
from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import insert

from broker.admin import create_app
from broker.admin.status import message_counts
from broker.store.models import InboundMessage


def _store(sessions, statuses: list[str]) -> None:
    if not statuses:
        return
    with sessions.begin() as session:
        session.execute(insert(InboundMessage), [dict(
            channel="hl7", sender="RIS|HOSP", control_id=f"C{n}", message_type="ORM^O01", peer="",
            raw=b"MSH|", received_at=datetime(2026, 11, 24), status=status, error="", attempts=1)
            for n, status in enumerate(statuses)])


@pytest.mark.parametrize("statuses", [
    [],
    ["PROCESSED"] * 3,
    ["FAILED", "REJECTED"],
    ["PROCESSED", "FAILED", "PROCESSED", "REJECTED", "RECEIVED", "FAILED", "PROCESSED"],
], ids=["none", "all processed", "none processed", "mixed"])
def test_message_counts_per_status(sessions, statuses):
    _store(sessions, statuses)
    with sessions() as session:
        counts = message_counts(session)
    # As a GROUP BY over every row would count them; a status with no message is not listed.
    assert counts == {s: statuses.count(s) for s in set(statuses)}


def test_health_and_readiness_need_no_login_and_show_no_patient_data(sessions):
    _store(sessions, ["PROCESSED", "FAILED"])
    client = create_app(sessions).test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["status"] == "ready"


def test_every_other_page_sends_a_stranger_to_the_login(sessions):
    client = create_app(sessions).test_client()
    for path in ("/", "/worklist", "/matches", "/messages/1", "/bench"):
        response = client.get(path)
        assert response.status_code == 302 and response.location.startswith("/login")
    assert client.get("/api/v1/worklist").status_code == 401
    assert client.get("/metrics").status_code == 401


def test_a_public_blueprint_is_served_without_sign_in_or_csrf_token(sessions):
    from flask import Blueprint

    from broker.admin import register_public_blueprint
    hook = Blueprint("hook", __name__)
    hook.add_url_rule("/fhir/notify", "notify", lambda: ("", 204), methods=["POST"])
    app = create_app(sessions)
    register_public_blueprint(app, hook)
    assert app.test_client().post("/fhir/notify", json={}).status_code == 204
