"""The JSON API with bearer tokens: reading as a viewer, acting as an admin, and the CLI."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from broker.admin.accounts import create_token
from broker.store.models import InboundMessage, MatchCandidate, Notification, Patient
from tests.admin.conftest import csrf_of
from tests.admin.seed import load_demo_store


@pytest.fixture
def tokens(sessions):
    with sessions.begin() as session:
        return {role: create_token(session, f"{role}-robot", role, "test")
                for role in ("admin", "viewer")}


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_viewer_token_reads_every_list(app, sessions, tokens):
    load_demo_store(sessions)
    client = app.test_client()
    worklist = client.get("/api/v1/worklist", headers=_auth(tokens["viewer"])).get_json()
    assert worklist["total"] == 5 and {i["modality"] for i in worklist["items"]} >= {"CT", "MR"}
    order = client.get(f"/api/v1/orders/{worklist['items'][0]['order_id']}",
                       headers=_auth(tokens["viewer"])).get_json()
    assert order["timeline"][0]["what"].startswith("hl7 ORM^O01 received")
    matches = client.get("/api/v1/matches", headers=_auth(tokens["viewer"])).get_json()
    assert matches["total"] == 1 and matches["items"][0]["fields"]["given_name"]["points"] != 0
    failed = client.get("/api/v1/messages?status=FAILED", headers=_auth(tokens["viewer"])).get_json()
    assert [m["control_id"][-2:] for m in failed["items"]] == ["07"]
    assert client.get("/api/v1/outbox", headers=_auth(tokens["viewer"])).status_code == 200
    assert client.get("/api/v1/audit", headers=_auth(tokens["viewer"])).status_code == 403
    assert client.get("/api/v1/worklist", headers=_auth("brk_1_wrong")).status_code == 401


def test_an_admin_token_links_unmerges_and_reprocesses(app, sessions, tokens):
    load_demo_store(sessions)
    client, auth = app.test_client(), _auth(tokens["admin"])
    with sessions() as session:
        match_id = session.scalar(select(MatchCandidate.id))
        failed_id = session.scalar(select(InboundMessage.id).where(InboundMessage.status == "FAILED"))
    linked = client.post(f"/api/v1/matches/{match_id}/link", headers=auth).get_json()
    assert linked["status"] == "LINKED"
    assert client.post(f"/api/v1/matches/{match_id}/link", headers=auth).status_code == 409
    with sessions() as session:
        merged = session.scalar(select(Patient.id).where(Patient.merged_into_id.is_not(None)))
    assert client.get(f"/api/v1/patients/{linked['survivor_id']}", headers=auth).get_json()["merges"]
    assert client.post(f"/api/v1/patients/{merged}/unmerge", headers=auth).status_code == 200
    assert client.post(f"/api/v1/messages/{failed_id}/reprocess",
                       headers=auth).get_json()["status"] == "PROCESSED"
    audit = client.get("/api/v1/audit?action=match.", headers=auth).get_json()["items"]
    assert {"match.link", "match.unlink"} <= {e["action"] for e in audit}
    assert all(e["actor"] == "token:admin-robot" for e in audit if e["action"] != "match.proposed")


def test_a_viewer_token_is_refused_actions(app, sessions, tokens):
    load_demo_store(sessions)
    client = app.test_client()
    assert client.post("/api/v1/matches/1/dismiss", headers=_auth(tokens["viewer"])).status_code == 403


def test_the_session_may_call_the_api_but_a_post_needs_its_csrf_token(admin, sessions):
    load_demo_store(sessions)
    assert admin.get("/api/v1/matches").status_code == 200
    assert admin.post("/api/v1/matches/1/dismiss").status_code == 400
    assert admin.post("/api/v1/matches/1/dismiss",
                      headers={"X-CSRFToken": csrf_of(admin)}).status_code == 200


def test_outbox_retry_puts_a_dead_notification_back_in_line(app, sessions, tokens):
    with sessions.begin() as session:
        session.add(Notification(destination="EHR", kind="hl7", payload=b"MSH|", status="DEAD",
                                 attempts=7, last_error="connection refused"))
    client = app.test_client()
    listed = client.get("/api/v1/outbox", headers=_auth(tokens["viewer"])).get_json()["items"]
    assert [(n["status"], n["last_error"]) for n in listed] == [("dead", "connection refused")]
    assert client.post(f"/api/v1/outbox/{listed[0]['id']}/retry",
                       headers=_auth(tokens["admin"])).get_json()["status"] == "pending"
    again = client.get("/api/v1/outbox", headers=_auth(tokens["viewer"])).get_json()["items"]
    assert [(n["status"], n["attempts"]) for n in again] == [("pending", 0)]


def test_step_actions_follow_the_lifecycle(app, sessions, tokens):
    load_demo_store(sessions)
    client, auth = app.test_client(), _auth(tokens["admin"])
    step = client.get("/api/v1/worklist", headers=auth).get_json()["items"][0]["step"]
    assert client.post(f"/api/v1/steps/{step}/hold", headers=auth).get_json()["status"] == "HOLD"
    assert client.post(f"/api/v1/steps/{step}/arrive", headers=auth).status_code == 409
    assert client.post(f"/api/v1/steps/{step}/release", headers=auth).get_json()["status"] == "SCHEDULED"


def test_openapi_and_metrics(app, sessions, tokens):
    load_demo_store(sessions)
    client = app.test_client()
    document = client.get("/api/v1/openapi.json", headers=_auth(tokens["viewer"])).get_json()
    assert document["openapi"].startswith("3.") and "/matches/{id}/link" in document["paths"]
    text = client.get("/metrics", headers=_auth(tokens["viewer"])).get_data(as_text=True)
    for name in ("broker_match_queue_open 1.0", "broker_outbox_depth", "broker_hl7_ack_seconds",
                 "broker_outbox_oldest_pending_seconds"):
        assert name in text


def _cli(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "broker", *args], cwd=tmp_path, input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_users_and_tokens_commands(tmp_path: Path):
    added = _cli(tmp_path, "users", "add", "carol", "--role", "admin", stdin="a long password\n")
    assert added.returncode == 0, added.stderr
    assert _cli(tmp_path, "users", "add", "carol", stdin="another password\n").returncode == 1
    assert _cli(tmp_path, "users", "add", "dave", stdin="short\n").returncode == 1
    assert _cli(tmp_path, "users", "disable", "carol").returncode == 0
    listing = _cli(tmp_path, "users", "list").stdout
    assert "carol" in listing and "disabled" in listing
    created = _cli(tmp_path, "tokens", "create", "scraper", "--role", "viewer")
    assert created.returncode == 0 and created.stdout.splitlines()[-1].startswith("brk_")


def test_a_revoked_token_is_refused_at_its_next_call(app, sessions, tokens):
    from broker.admin.accounts import revoke_token
    client = app.test_client()
    assert client.get("/api/v1/outbox", headers=_auth(tokens["viewer"])).status_code == 200
    with sessions.begin() as session:
        revoke_token(session, "viewer-robot", "alice")
    assert client.get("/api/v1/outbox", headers=_auth(tokens["viewer"])).status_code == 401
    assert client.get("/api/v1/outbox", headers=_auth(tokens["admin"])).status_code == 200


def test_tokens_are_listed_without_secrets_and_revoked_by_command(tmp_path: Path):
    secret = _cli(tmp_path, "tokens", "create", "scraper").stdout.splitlines()[-1]
    listing = _cli(tmp_path, "tokens", "list").stdout
    assert "scraper" in listing and "active" in listing and "never" in listing
    assert secret.split("_")[-1] not in listing
    assert _cli(tmp_path, "tokens", "revoke", "scraper").returncode == 0
    assert "revoked" in _cli(tmp_path, "tokens", "list").stdout
    missing = _cli(tmp_path, "tokens", "revoke", "nobody")
    assert missing.returncode == 1 and "no token 'nobody'" in missing.stderr
