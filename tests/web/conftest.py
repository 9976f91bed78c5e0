"""A running broker on free ports, its accounts, and headless Debian Chromium via Playwright
(never `playwright install`: the browser is the system's /usr/bin/chromium)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from broker.admin.accounts import add_user
from broker.service import Broker
from tests.conftest import make_test_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORDS = {"admin": "admin password 1", "viewer": "viewer password 1",
             "locky": "locky password 1"}

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def running(tmp_path_factory) -> Iterator[Broker]:
    """One broker for the module: HL7, DICOM and web on free ports, SQLite in a temp folder."""
    broker = Broker(make_test_settings(tmp_path_factory.mktemp("web")))
    broker.start()
    with broker.sessions.begin() as session:
        for name, password in PASSWORDS.items():
            add_user(session, name, password, "viewer" if name == "viewer" else "admin", "test")
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (tests/run.sh installs it)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def base_url(running: Broker) -> str:
    host, port = running.listeners.web
    return f"http://{host}:{port}"


@pytest.fixture
def page(browser, base_url):
    """A fresh browser context (no cookies) and page for each test."""
    context = browser.new_context(base_url=base_url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


def sign_in(page, username: str, password: str | None = None) -> None:
    """Fill the login form as a person would."""
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password or PASSWORDS[username])
    page.get_by_role("button", name="Sign in").click()
