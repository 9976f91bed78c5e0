"""The README's screenshots, made from the demo data so they stay true to the UI.

Starts a broker on free ports in a temporary folder, loads the demo as `broker serve --demo`
does (orders for today, a doubtful patient match, a failed message), signs in with headless
Debian Chromium (Playwright, /usr/bin/chromium) and saves docs/images/*.png.

    .venv/bin/python bench/screenshots.py
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from playwright.sync_api import sync_playwright  # noqa: E402
from sqlalchemy import select  # noqa: E402

from broker.admin.demo import DEMO_ADMIN, ensure_demo_admin  # noqa: E402
from broker.config import load_settings  # noqa: E402
from broker.demo import load_demo, load_review_demo  # noqa: E402
from broker.matching.searches import run_pending_searches  # noqa: E402
from broker.service import Broker  # noqa: E402
from broker.store.models import InboundMessage  # noqa: E402

OUT = REPO / "docs" / "images"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(environ={"BROKER_DATA_DIR": folder, "BROKER_HL7_PORT": "0",
                                          "BROKER_DICOM_PORT": "0", "BROKER_WEB_PORT": "0"},
                                 default_file=None)
        broker = Broker(settings)
        broker.migrate()
        load_demo(broker.intake)
        load_review_demo(broker.intake)
        run_pending_searches(broker.sessions, settings.matching)
        password = ensure_demo_admin(broker.sessions)
        with broker.sessions() as session:
            failed = session.scalar(select(InboundMessage.id)
                                    .where(InboundMessage.status == "FAILED"))
        broker.start()
        try:
            host, port = broker.listeners.web
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                     args=CHROMIUM_ARGS)
                page = browser.new_page(base_url=f"http://{host}:{port}",
                                        viewport={"width": 1280, "height": 860})
                page.goto("/login")
                page.get_by_label("Username").fill(DEMO_ADMIN)
                page.get_by_label("Password").fill(password)
                page.get_by_role("button", name="Sign in").click()
                for name, path in (("dashboard", "/"), ("match-queue", "/matches"),
                                   ("message", f"/messages/{failed}")):
                    page.goto(path)
                    page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
                    print(f"wrote {OUT / (name + '.png')}")
                browser.close()
        finally:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
