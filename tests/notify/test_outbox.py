"""The outbox's claim, ordering and retry rules, on SQLite and PostgreSQL."""
from datetime import datetime, timedelta

import pytest

from broker.notify.outbox import (
    LEASE, RetryPolicy, claim_due, discard, enqueue, held_by, list_notifications, mark_delivered,
    mark_failed, retry, view_of,
)
from broker.store.models import Notification

NOW = datetime(2026, 11, 24, 10, 0)


def _add(sessions, *rows):
    with sessions.begin() as session:
        made = [enqueue(session, dest, "mpps-n-create", b"x", key) for dest, key in rows]
        session.flush()
        for row in made:
            row.next_attempt_at = NOW
        return [r.id for r in made]


def test_rows_of_one_key_go_out_oldest_first_per_destination(sessions):
    a1, a2, b1, other = _add(sessions, ("PACS", "mpps:1"), ("PACS", "mpps:1"), ("RIS", "mpps:1"),
                             ("PACS", "mpps:2"))
    with sessions.begin() as session:
        first = [r.id for r in claim_due(session, ("mpps-n-create",), now=NOW)]
    assert first == [a1, b1, other]  # a2 waits for a1
    with sessions.begin() as session:
        mark_delivered(session.get(Notification, a1), NOW)
    with sessions.begin() as session:  # a2 is free now; the others are leased
        assert [r.id for r in claim_due(session, ("mpps-n-create",), now=NOW)] == [a2]
    with sessions.begin() as session:  # an expired lease (a crashed worker) makes rows due again
        again = [r.id for r in claim_due(session, ("mpps-n-create",), now=NOW + LEASE)]
    assert again == [a2, b1, other]


def test_a_dead_row_holds_back_its_key_until_retried_or_discarded(sessions):
    first, second, other = _add(sessions, ("EHR", "order:1"), ("EHR", "order:1"),
                                ("EHR", "order:2"))
    with sessions.begin() as session:
        (row, _) = claim_due(session, ("mpps-n-create",), now=NOW)
        mark_failed(row, "AE: unknown order", RetryPolicy(), permanent=True, given_up="DEAD")
    with sessions.begin() as session:
        assert claim_due(session, ("mpps-n-create",), now=NOW) == []  # other is leased
        rows = list_notifications(session, "held")
        assert [r.id for r in rows] == [second]
        assert [view_of(r, held_by(session, rows)) for r in rows] == ["held"]
        assert held_by(session, rows) == {second: first}
        retry(session, first, now=NOW)
    with sessions.begin() as session:  # retried: it goes first, the held row still waits
        assert [r.id for r in claim_due(session, ("mpps-n-create",), now=NOW)] == [first]
        mark_failed(session.get(Notification, first), "AE again", RetryPolicy(), permanent=True,
                    given_up="DEAD")
    with sessions.begin() as session:
        discard(session, first)
    with sessions.begin() as session:
        assert [r.id for r in claim_due(session, ("mpps-n-create",), now=NOW)] == [second]
        assert view_of(session.get(Notification, first)) == "discarded"


def test_only_a_dead_row_can_be_discarded(sessions):
    (row_id,) = _add(sessions, ("EHR", "order:1"))
    with sessions.begin() as session, pytest.raises(ValueError, match="only a dead one"):
        discard(session, row_id)


def test_other_kinds_are_not_claimed(sessions):
    _add(sessions, ("PACS", "k"))
    with sessions.begin() as session:
        assert claim_due(session, ("hl7-oru",), now=NOW) == []


@pytest.mark.parametrize("attempts, delay", [(1, 30), (2, 60), (3, 120), (10, 600)])
def test_backoff_doubles_up_to_the_cap(attempts, delay):
    assert RetryPolicy(30, 600).delay(attempts) == timedelta(seconds=delay)


def test_failure_reschedules_then_gives_up_after_max_attempts(sessions):
    (row_id,) = _add(sessions, ("PACS", "k"))
    policy = RetryPolicy(base_seconds=10, max_seconds=100, max_attempts=2)
    for attempt in (1, 2):
        with sessions.begin() as session:
            (row,) = claim_due(session, ("mpps-n-create",), now=NOW + timedelta(hours=attempt))
            mark_failed(row, "connection refused", policy, now=NOW + timedelta(hours=attempt))
    with sessions() as session:
        row = session.get(Notification, row_id)
        assert (row.status, row.attempts, row.last_error) == ("FAILED", 2, "connection refused")


def test_a_permanent_failure_is_kept_as_failed(sessions):
    (row_id,) = _add(sessions, ("PACS", "k"))
    with sessions.begin() as session:
        (row,) = claim_due(session, ("mpps-n-create",), now=NOW)
        mark_failed(row, "peer answered 0x0110", RetryPolicy(), permanent=True, now=NOW)
    with sessions() as session:
        assert session.get(Notification, row_id).status == "FAILED"


def test_retry_for_ever_by_default(sessions):
    (row_id,) = _add(sessions, ("PACS", "k"))
    policy = RetryPolicy(base_seconds=1, max_seconds=1)
    for n in range(5):
        with sessions.begin() as session:
            (row,) = claim_due(session, ("mpps-n-create",), now=NOW + timedelta(hours=n))
            mark_failed(row, "down", policy, now=NOW + timedelta(hours=n))
    with sessions() as session:
        row = session.get(Notification, row_id)
        assert (row.status, row.attempts) == ("PENDING", 5)
        assert row.next_attempt_at == NOW + timedelta(hours=4, seconds=1)
