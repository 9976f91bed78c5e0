"""An admin app on a migrated SQLite store, with an admin and a viewer, and signed-in clients."""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from broker.admin import create_app
from broker.admin.accounts import add_user
from broker.config import Settings, WebSettings

ADMIN_PASSWORD = "correct horse battery"
VIEWER_PASSWORD = "viewer password 1"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(client: FlaskClient, path: str = "/worklist") -> str:
    """The CSRF token a page of this client's session carries."""
    page = client.get(path).get_data(as_text=True)
    return _CSRF.search(page).group(1)


def sign_in(client: FlaskClient, username: str, password: str):
    """Post the login form as a browser would (token from the form)."""
    token = _CSRF.search(client.get("/login").get_data(as_text=True)).group(1)
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": token})


@pytest.fixture
def app(sessions, tmp_path: Path):
    settings = replace(Settings(data_dir=tmp_path / "data"),
                       web=WebSettings(max_failed_logins=3, failed_logins_per_minute=50))
    with sessions.begin() as session:
        add_user(session, "alice", ADMIN_PASSWORD, "admin", "test")
        add_user(session, "victor", VIEWER_PASSWORD, "viewer", "test")
    return create_app(sessions, {"BROKER_SETTINGS": settings, "TESTING": True})


@pytest.fixture
def admin(app) -> FlaskClient:
    client = app.test_client()
    assert sign_in(client, "alice", ADMIN_PASSWORD).status_code == 302
    return client


@pytest.fixture
def viewer(app) -> FlaskClient:
    client = app.test_client()
    assert sign_in(client, "victor", VIEWER_PASSWORD).status_code == 302
    return client
