"""Step arrival, listing, stale-step cancel and finished-record purge, on SQLite and PostgreSQL."""
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from broker.clock import utcnow
from broker.domain.lifecycle import IllegalTransition
from broker.store.housekeeping import cancel_stale_steps, purge_finished
from broker.store.models import (
    AuditEvent, Order, PerformedStep, PerformedStepLink, ScheduledStep, StepStationAE,
)
from broker.store.steps import StepNotFound, arrive_step, list_steps, order_history
from tests.support.schedule import schedule

NOW = datetime(2026, 11, 30, 12, 0)


def test_arrive_by_hand_is_recorded_in_the_order_history(sessions):
    order = schedule(sessions, 1)
    with sessions.begin() as session:
        step = arrive_step(session, order["steps"][0], "cli:tech")
        assert step.status == "ARRIVED"
    with sessions() as session:
        events = order_history(session, order["order"])
        assert [(e.actor, e.action, e.detail["status_to"]) for e in events] == [
            ("cli:tech", "step arrive", "ARRIVED")]
        assert session.get(Order, order["order"]).status == "SCHEDULED"


def test_arrive_refuses_a_started_step_and_an_unknown_one(sessions):
    order = schedule(sessions, 2)
    with sessions.begin() as session:
        session.get(ScheduledStep, order["steps"][0]).status = "STARTED"
    with pytest.raises(IllegalTransition, match="STARTED"):
        with sessions.begin() as session:
            arrive_step(session, order["steps"][0], "cli:tech")
    with pytest.raises(StepNotFound):
        with sessions.begin() as session:
            arrive_step(session, 999999, "cli:tech")


def test_list_steps_filters_by_status(sessions):
    first, second = schedule(sessions, 3), schedule(sessions, 4)
    with sessions.begin() as session:
        arrive_step(session, second["steps"][0], "cli:tech")
    with sessions() as session:
        assert [r.id for r in list_steps(session)] == first["steps"] + second["steps"]
        arrived = list_steps(session, ["arrived"])
    assert [(r.id, r.accession_number, r.requested_procedure_id) for r in arrived] == [
        (second["steps"][0], "ACC4", "RP4")]


def test_list_steps_merges_the_statuses_in_start_order_up_to_the_limit(sessions):
    # One search per status, merged (list_steps): the order and the limit hold across them.
    starts = [NOW + timedelta(hours=h) for h in (5, 1, 3, 2, 0)]
    orders = [schedule(sessions, 20 + n, start=start) for n, start in enumerate(starts)]
    with sessions.begin() as session:
        for order, status in zip(orders, ("ARRIVED", "COMPLETED", "SCHEDULED", "HOLD")):
            session.get(ScheduledStep, order["steps"][0]).status = status
    by_start = [o["steps"][0] for _, o in sorted(zip(starts, orders), key=lambda pair: pair[0])]
    with sessions() as session:
        assert [r.id for r in list_steps(session, limit=3)] == by_start[:3]
        assert [r.id for r in list_steps(session)] == by_start
        # SCHEDULED at +0 h (the newer step) and +3 h come before ARRIVED at +5 h.
        assert [r.id for r in list_steps(session, ["scheduled", "arrived"], limit=2)] == [
            orders[4]["steps"][0], orders[2]["steps"][0]]
        first = list_steps(session, ["scheduled"], limit=1)
        assert [r.id for r in first] == [orders[4]["steps"][0]]


@pytest.mark.parametrize("age, days, canceled", [
    (timedelta(days=10), 7, True), (timedelta(days=3), 7, False),
    (timedelta(days=7, seconds=-1), 7, False),  # one second short of the limit
])
def test_stale_scheduled_steps_are_canceled(sessions, age, days, canceled):
    order = schedule(sessions, 5, start=NOW - age)
    with sessions.begin() as session:
        count = cancel_stale_steps(session, NOW, days)
    with sessions() as session:
        step = session.get(ScheduledStep, order["steps"][0])
        assert count == int(canceled)
        assert step.status == ("CANCELED" if canceled else "SCHEDULED")
        assert session.get(Order, order["order"]).status == ("CANCELED" if canceled else "SCHEDULED")


def test_only_scheduled_steps_are_auto_canceled(sessions):
    order = schedule(sessions, 6, start=NOW - timedelta(days=30))
    with sessions.begin() as session:
        arrive_step(session, order["steps"][0], "desk")
    with sessions.begin() as session:
        assert cancel_stale_steps(session, NOW, 7) == 0


def test_purge_removes_finished_orders_after_retention_and_keeps_the_rest(sessions):
    old, recent, live = schedule(sessions, 7), schedule(sessions, 8), schedule(sessions, 9)
    with sessions.begin() as session:
        for o, status in ((old, "COMPLETED"), (recent, "COMPLETED")):
            session.get(ScheduledStep, o["steps"][0]).status = status
            session.get(Order, o["order"]).status = status
        performed = PerformedStep(sop_instance_uid="1.2.3.9", status="COMPLETED")
        session.add(performed)
        session.flush()
        session.add(PerformedStepLink(performed_step_id=performed.id, scheduled_step_id=old["steps"][0]))
    with sessions.begin() as session:
        session.get(Order, old["order"]).updated_at = utcnow() - timedelta(days=40)
    with sessions.begin() as session:
        assert purge_finished(session, utcnow(), 30) == 1
    with sessions() as session:
        assert sorted(session.scalars(select(Order.id))) == sorted([recent["order"], live["order"]])
        assert session.scalar(select(func.count()).select_from(PerformedStep)) == 0
        assert session.get(ScheduledStep, old["steps"][0]) is None
        assert session.scalar(select(func.count()).select_from(StepStationAE)) == 2
        purged = session.scalars(select(AuditEvent).where(AuditEvent.action == "order purged")).one()
        assert purged.entity_id == str(old["order"])
