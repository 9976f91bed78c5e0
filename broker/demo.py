"""Sample orders for a first look: fixtures/demo/*.hl7 sent through the normal HL7 intake."""
from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from broker.hl7.intake import Hl7Intake
from broker.resources import demo_fixtures_dir

TODAY_TOKEN = b"{{TODAY}}"
TOMORROW_TOKEN = b"{{TOMORROW}}"


def demo_messages(folder: Path | None = None, today: date | None = None) -> list[tuple[str, bytes]]:
    """The demo messages with {{TODAY}} replaced, so the orders are on today's worklist."""
    folder = folder or demo_fixtures_dir()
    today = today or date.today()
    stamp = today.strftime("%Y%m%d").encode()
    tomorrow = (today + timedelta(days=1)).strftime("%Y%m%d").encode()
    result = []
    for path in sorted(folder.glob("*.hl7")):
        raw = path.read_bytes().replace(TODAY_TOKEN, stamp).replace(TOMORROW_TOKEN, tomorrow)
        result.append((path.name, raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r").rstrip(b"\r")))
    return result


def load_demo(intake: Hl7Intake) -> list[tuple[str, str]]:
    """Send each demo message through the intake; returns (file, outcome) pairs."""
    return [(name, intake.receive(raw, "demo").status) for name, raw in demo_messages()]


def load_review_demo(intake: Hl7Intake) -> list[tuple[str, str]]:
    """fixtures/demo/review: a known patient again from a clinic with a typo (a doubtful match
    once the patient search has run) and an order change that arrives before its order (a
    failed message that reprocessing fixes). Dated tomorrow, so today's worklist stays as is."""
    folder = demo_fixtures_dir() / "review"
    return [(name, intake.receive(raw, "demo").status) for name, raw in demo_messages(folder)]
