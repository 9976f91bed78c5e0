"""The scheduled procedure step lifecycle: one pure function per transition.

SCHEDULED -> (ARRIVED / READY) -> STARTED (MPPS IN PROGRESS) -> COMPLETED or DISCONTINUED;
CANCELED from the order side at any point before completion; HOLD and release.
"""
from __future__ import annotations

from enum import Enum


class StepStatus(str, Enum):
    SCHEDULED = "SCHEDULED"
    ARRIVED = "ARRIVED"
    READY = "READY"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"
    CANCELED = "CANCELED"
    HOLD = "HOLD"


class StepEvent(str, Enum):
    ARRIVE = "arrive"          # ADT A10, or by hand
    MAKE_READY = "make_ready"  # protocolled and ready to scan
    START = "start"            # MPPS N-CREATE IN PROGRESS
    COMPLETE = "complete"      # MPPS N-SET COMPLETED
    DISCONTINUE = "discontinue"  # MPPS N-SET DISCONTINUED
    CANCEL = "cancel"          # ORC-1 CA / DC from the order placer
    HOLD = "hold"              # ORC-1 HD
    RELEASE = "release"        # ORC-1 RL
    REOPEN = "reopen"          # MPPS DISCONTINUED as "incorrect worklist entry selected"


class IllegalTransition(ValueError):
    """A transition the lifecycle does not allow; the message says why."""

    def __init__(self, status: StepStatus, event: StepEvent, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.event = event
        self.reason = reason


S, E = StepStatus, StepEvent
FINAL = frozenset({S.COMPLETED, S.DISCONTINUED, S.CANCELED})
# Statuses in which the modality has not yet touched the step.
NOT_STARTED = frozenset({S.SCHEDULED, S.ARRIVED, S.READY})

_TRANSITIONS: dict[tuple[StepStatus, StepEvent], StepStatus] = {
    (S.SCHEDULED, E.ARRIVE): S.ARRIVED,
    (S.SCHEDULED, E.MAKE_READY): S.READY,
    (S.ARRIVED, E.MAKE_READY): S.READY,
    **{(s, E.START): S.STARTED for s in NOT_STARTED},
    # Several MPPS may belong to one step (PS3.4 F.7): a second IN PROGRESS keeps it started.
    (S.STARTED, E.START): S.STARTED,
    (S.STARTED, E.COMPLETE): S.COMPLETED,
    (S.STARTED, E.DISCONTINUE): S.DISCONTINUED,
    # The technologist picked the wrong worklist entry: nothing was done for this step, so it
    # goes back on the worklist to be performed (DICOM CID 9300 code 110514, IHE RAD-7).
    (S.STARTED, E.REOPEN): S.SCHEDULED,
    **{(s, E.CANCEL): S.CANCELED for s in (*NOT_STARTED, S.STARTED, S.HOLD)},
    **{(s, E.HOLD): S.HOLD for s in NOT_STARTED},
    (S.HOLD, E.RELEASE): S.SCHEDULED,
}


def next_status(status: StepStatus, event: StepEvent) -> StepStatus:
    """The status after `event`, or IllegalTransition saying why it cannot happen."""
    status, event = StepStatus(status), StepEvent(event)
    try:
        return _TRANSITIONS[(status, event)]
    except KeyError:
        raise IllegalTransition(status, event, _refusal(status, event)) from None


def _refusal(status: StepStatus, event: StepEvent) -> str:
    if status in FINAL:
        return f"step is {status.value}: a {status.value.lower()} step cannot {event.value.replace('_', ' ')}"
    if event in (E.COMPLETE, E.DISCONTINUE, E.REOPEN):
        return f"step is {status.value}: only a STARTED step can {event.value}"
    if event is E.RELEASE:
        return f"step is {status.value}: only a step on HOLD can be released"
    if status is S.HOLD:
        return "step is on HOLD: release it first"
    if status is S.STARTED:
        return f"step is STARTED: the modality is already performing it, it cannot {event.value.replace('_', ' ')}"
    return f"step is {status.value}: it cannot {event.value.replace('_', ' ')}"


def is_final(status: StepStatus) -> bool:
    """True when no further transition can leave `status`."""
    return StepStatus(status) in FINAL


class OrderStatus(str, Enum):
    SCHEDULED = "SCHEDULED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"
    CANCELED = "CANCELED"
    HOLD = "HOLD"


def order_status(step_statuses: list[StepStatus]) -> OrderStatus:
    """Derive an order's status from its steps' statuses."""
    steps = [StepStatus(s) for s in step_statuses]
    if not steps:
        return OrderStatus.SCHEDULED
    if all(s is S.CANCELED for s in steps):
        return OrderStatus.CANCELED
    live = [s for s in steps if s is not S.CANCELED]
    if all(s is S.COMPLETED for s in live):
        return OrderStatus.COMPLETED
    if all(s in FINAL for s in live):
        return OrderStatus.DISCONTINUED if S.DISCONTINUED in live else OrderStatus.COMPLETED
    if any(s in (S.STARTED, S.COMPLETED, S.DISCONTINUED) for s in live):
        return OrderStatus.IN_PROGRESS
    if all(s is S.HOLD for s in live):
        return OrderStatus.HOLD
    return OrderStatus.SCHEDULED
