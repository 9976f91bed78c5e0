"""Sign-in, lockout, roles, CSRF, escaping and the security headers, with Flask's test client."""
from __future__ import annotations

from sqlalchemy import select

from broker.admin import CSP
from broker.domain.records import Identifier, PatientRecord, PersonName
from broker.store.models import AuditEvent, User
from tests.admin.conftest import ADMIN_PASSWORD, csrf_of, sign_in
from tests.admin.seed import load_demo_store
from tests.support.matching import create_order_for


def _actions(sessions) -> list[tuple[str, str]]:
    with sessions() as session:
        return [(e.actor, e.action) for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]


def test_sign_in_and_out_are_audited_and_sign_out_needs_the_token(app, sessions):
    client = app.test_client()
    assert sign_in(client, "alice", ADMIN_PASSWORD).location == "/"
    assert client.get("/").status_code == 200
    assert client.post("/logout").status_code == 400  # no CSRF token: refused
    assert client.post("/logout", data={"csrf_token": csrf_of(client)}).status_code == 302
    assert client.get("/").status_code == 302
    assert ("alice", "login") in _actions(sessions) and ("alice", "logout") in _actions(sessions)


def test_wrong_passwords_lock_the_account_even_for_the_right_one(app, sessions):
    client = app.test_client()
    for _ in range(3):  # max_failed_logins = 3 in the fixture
        assert sign_in(client, "alice", "wrong password").status_code == 401
    response = sign_in(client, "alice", ADMIN_PASSWORD)
    assert response.status_code == 401 and "locked" in response.get_data(as_text=True)
    with sessions() as session:
        assert session.scalar(select(User.locked_until).where(User.username == "alice"))
    assert ("alice", "login.refused") in _actions(sessions)


def test_failed_sign_ins_from_one_address_are_rate_limited(app):
    client = app.test_client()
    statuses = [sign_in(client, f"nobody{n}", "x").status_code for n in range(51)]
    assert statuses[:50] == [401] * 50 and statuses[50] == 429


def test_a_form_post_without_csrf_token_is_refused(admin, sessions):
    load_demo_store(sessions)
    assert admin.post("/matches/1/dismiss").status_code == 400
    assert admin.post("/matches/1/dismiss", data={"csrf_token": "forged"}).status_code == 400
    assert admin.post("/matches/1/dismiss", data={"csrf_token": csrf_of(admin)}).status_code == 302


def test_a_viewer_reads_but_is_refused_every_action(viewer, sessions):
    load_demo_store(sessions)
    token = csrf_of(viewer)
    assert viewer.get("/matches").status_code == 200
    assert ">Link</button>" not in viewer.get("/matches").get_data(as_text=True)
    for path in ("/matches/1/dismiss", "/matches/1/link", "/patients/1/unmerge",
                 "/messages/7/reprocess", "/steps/1/arrive", "/outbox/1/retry", "/users"):
        assert viewer.post(path, data={"csrf_token": token}).status_code == 403, path
    assert viewer.get("/audit").status_code == 403 and viewer.get("/users").status_code == 403


def test_a_script_in_a_patient_name_is_shown_as_text(admin, sessions):
    record = PatientRecord(identifiers=(Identifier("X1", "HOSP"),),
                           name=PersonName(family="<script>alert(1)</script>", given="Eve"))
    with sessions.begin() as session:
        order = create_order_for(session, record, "PX1")
        order_id, patient_id = order.id, order.patient_id
    for path in (f"/orders/{order_id}", f"/patients/{patient_id}"):
        page = admin.get(path).get_data(as_text=True)
        assert "<script>alert" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_answers_carry_the_security_headers_and_a_safe_cookie(app):
    client = app.test_client()
    response = sign_in(client, "alice", ADMIN_PASSWORD)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/")
    assert page.headers["Content-Security-Policy"] == CSP
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"


def test_the_login_never_redirects_off_site(app):
    client = app.test_client()
    token = csrf_of(client, "/login")
    response = client.post("/login", data={"username": "alice", "password": ADMIN_PASSWORD,
                                           "csrf_token": token, "next": "//evil.example/"})
    assert response.location == "/"
