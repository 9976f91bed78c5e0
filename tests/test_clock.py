"""The store's clock: naive UTC now."""
from __future__ import annotations

from datetime import datetime, timezone

from broker.clock import utcnow


def test_utcnow_is_naive_utc_to_the_microsecond():
    before = datetime.now(timezone.utc).replace(tzinfo=None)
    now = utcnow()
    after = datetime.now(timezone.utc).replace(tzinfo=None)
    assert now.tzinfo is None
    assert before <= now <= after
    assert len({utcnow().microsecond for _ in range(50)}) > 1  # not truncated to the second
