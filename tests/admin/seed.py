"""Store content for page tests: the demo (orders today, a doubtful match, a failed message)."""
from __future__ import annotations

from broker.config import Settings
from broker.demo import load_demo, load_review_demo
from broker.hl7.handlers import build_intake
from tests.support.matching import run_searches


def load_demo_store(sessions, settings: Settings | None = None) -> dict[str, str]:
    """Send the demo messages through the intake and run the patient searches."""
    intake = build_intake(settings or Settings(), sessions)
    outcomes = dict(load_demo(intake) + load_review_demo(intake))
    run_searches(sessions)
    return outcomes
