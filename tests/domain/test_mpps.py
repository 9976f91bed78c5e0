import pytest

from broker.domain.lifecycle import StepEvent
from broker.domain.mpps import (
    PerformedRefused, PerformedStatus, check_create, check_update, parse_status,
    step_event_on_finish,
)

P = PerformedStatus


@pytest.mark.parametrize("value, expected", [
    ("IN PROGRESS", P.IN_PROGRESS), ("COMPLETED ", P.COMPLETED), ("DISCONTINUED", P.DISCONTINUED)])
def test_status_values(value, expected):
    assert parse_status(value) is expected


@pytest.mark.parametrize("value", ["", "IN_PROGRESS", "completed", "SCHEDULED"])
def test_unknown_status_is_refused(value):
    with pytest.raises(PerformedRefused, match="is not"):
        parse_status(value)


@pytest.mark.parametrize("status, allowed", [
    (P.IN_PROGRESS, True), (P.COMPLETED, False), (P.DISCONTINUED, False)])
def test_create_only_in_progress(status, allowed):
    if allowed:
        check_create(status)
    else:
        with pytest.raises(PerformedRefused, match="must be IN PROGRESS"):
            check_create(status)


@pytest.mark.parametrize("current, allowed", [
    (P.IN_PROGRESS, True), (P.COMPLETED, False), (P.DISCONTINUED, False)])
def test_finished_mpps_may_no_longer_be_updated(current, allowed):
    if allowed:
        check_update(current)
    else:
        with pytest.raises(PerformedRefused, match="may no longer be updated"):
            check_update(current)


@pytest.mark.parametrize("statuses, event", [
    ([P.COMPLETED], StepEvent.COMPLETE),
    ([P.DISCONTINUED], StepEvent.DISCONTINUE),
    ([P.COMPLETED, P.IN_PROGRESS], None),          # another MPPS still running on the step
    ([P.DISCONTINUED, P.COMPLETED], StepEvent.COMPLETE),  # something was acquired
    ([P.DISCONTINUED, P.DISCONTINUED], StepEvent.DISCONTINUE),
    ([], None),
])
def test_step_event_once_an_mpps_finishes(statuses, event):
    assert step_event_on_finish(statuses) is event


@pytest.mark.parametrize("statuses, reasons, event", [
    ([P.DISCONTINUED], ["110514"], StepEvent.REOPEN),  # wrong worklist entry: offer it again
    ([P.DISCONTINUED], ["110501"], StepEvent.DISCONTINUE),  # equipment failure
    ([P.DISCONTINUED], [""], StepEvent.DISCONTINUE),
    ([P.DISCONTINUED, P.DISCONTINUED], ["110514", "110514"], StepEvent.REOPEN),
    ([P.DISCONTINUED, P.DISCONTINUED], ["110514", "110501"], StepEvent.DISCONTINUE),
    ([P.DISCONTINUED, P.COMPLETED], ["110514", ""], StepEvent.COMPLETE),
])
def test_discontinuation_reason_decides_between_reopen_and_discontinue(statuses, reasons, event):
    assert step_event_on_finish(statuses, reasons) is event
