import pytest

from broker.domain.lifecycle import (
    IllegalTransition, OrderStatus, StepEvent as E, StepStatus as S, is_final, next_status,
    order_status,
)

ALLOWED = [
    (S.SCHEDULED, E.ARRIVE, S.ARRIVED),
    (S.SCHEDULED, E.MAKE_READY, S.READY),
    (S.ARRIVED, E.MAKE_READY, S.READY),
    (S.SCHEDULED, E.START, S.STARTED),
    (S.ARRIVED, E.START, S.STARTED),
    (S.READY, E.START, S.STARTED),
    (S.STARTED, E.START, S.STARTED),
    (S.STARTED, E.COMPLETE, S.COMPLETED),
    (S.STARTED, E.DISCONTINUE, S.DISCONTINUED),
    (S.SCHEDULED, E.CANCEL, S.CANCELED),
    (S.ARRIVED, E.CANCEL, S.CANCELED),
    (S.STARTED, E.CANCEL, S.CANCELED),
    (S.HOLD, E.CANCEL, S.CANCELED),
    (S.SCHEDULED, E.HOLD, S.HOLD),
    (S.ARRIVED, E.HOLD, S.HOLD),
    (S.HOLD, E.RELEASE, S.SCHEDULED),
    (S.STARTED, E.REOPEN, S.SCHEDULED),
]

REFUSED = [
    (S.COMPLETED, E.CANCEL, "COMPLETED"),
    (S.COMPLETED, E.START, "COMPLETED"),
    (S.CANCELED, E.RELEASE, "CANCELED"),
    (S.DISCONTINUED, E.COMPLETE, "DISCONTINUED"),
    (S.SCHEDULED, E.COMPLETE, "only a STARTED step"),
    (S.ARRIVED, E.DISCONTINUE, "only a STARTED step"),
    (S.SCHEDULED, E.RELEASE, "only a step on HOLD"),
    (S.HOLD, E.START, "release it first"),
    (S.HOLD, E.ARRIVE, "release it first"),
    (S.STARTED, E.HOLD, "already performing"),
    (S.ARRIVED, E.ARRIVE, "ARRIVED"),
    (S.SCHEDULED, E.REOPEN, "only a STARTED step"),
    (S.COMPLETED, E.REOPEN, "COMPLETED"),
]


@pytest.mark.parametrize("status,event,expected", ALLOWED)
def test_allowed_transition(status, event, expected):
    assert next_status(status, event) is expected


@pytest.mark.parametrize("status,event,reason", REFUSED)
def test_refused_transition_says_why(status, event, reason):
    with pytest.raises(IllegalTransition) as err:
        next_status(status, event)
    assert reason in err.value.reason
    assert err.value.status is status and err.value.event is event


def test_every_pair_is_either_allowed_or_refused_with_a_reason():
    for status in S:
        for event in E:
            try:
                assert isinstance(next_status(status, event), S)
            except IllegalTransition as exc:
                assert exc.reason


@pytest.mark.parametrize("status", [S.COMPLETED, S.DISCONTINUED, S.CANCELED])
def test_final_statuses_have_no_way_out(status):
    assert is_final(status)
    for event in E:
        with pytest.raises(IllegalTransition):
            next_status(status, event)


def test_strings_are_accepted():
    assert next_status("SCHEDULED", "arrive") is S.ARRIVED


@pytest.mark.parametrize("steps,expected", [
    ([], OrderStatus.SCHEDULED),
    ([S.SCHEDULED, S.ARRIVED], OrderStatus.SCHEDULED),
    ([S.STARTED, S.SCHEDULED], OrderStatus.IN_PROGRESS),
    ([S.COMPLETED, S.SCHEDULED], OrderStatus.IN_PROGRESS),
    ([S.COMPLETED, S.COMPLETED], OrderStatus.COMPLETED),
    ([S.COMPLETED, S.CANCELED], OrderStatus.COMPLETED),
    ([S.CANCELED, S.CANCELED], OrderStatus.CANCELED),
    ([S.DISCONTINUED, S.COMPLETED], OrderStatus.DISCONTINUED),
    ([S.HOLD], OrderStatus.HOLD),
    ([S.HOLD, S.SCHEDULED], OrderStatus.SCHEDULED),
])
def test_order_status_follows_steps(steps, expected):
    assert order_status(steps) is expected
