"""The Modality Performed Procedure Step lifecycle (PS3.4 F.7, PS3.3 C.4.14) and its effect on steps.

An MPPS starts IN PROGRESS and ends COMPLETED or DISCONTINUED; a finished MPPS may no longer be
updated (PS3.4 F.7.2.2.2). Several MPPS may cover one scheduled step, so a step finishes only when
none of its MPPS is still in progress.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from broker.domain.lifecycle import StepEvent
from broker.domain.records import PatientRecord


class PerformedStatus(str, Enum):
    IN_PROGRESS = "IN PROGRESS"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"


P = PerformedStatus
FINAL_PERFORMED = frozenset({P.COMPLETED, P.DISCONTINUED})
# PS3.16 CID 9300 (110514, DCM) "Incorrect worklist entry selected".
WRONG_WORKLIST_ENTRY = "110514"


class PerformedRefused(ValueError):
    """The MPPS change is not allowed; the message says why (an Error Comment, PS3.7 C.4)."""


def parse_status(value: str) -> PerformedStatus:
    """The Performed Procedure Step Status (0040,0252) value, or PerformedRefused."""
    try:
        return PerformedStatus(value.strip())
    except ValueError:
        raise PerformedRefused(f"PerformedProcedureStepStatus {value!r} is not "
                               "IN PROGRESS, COMPLETED or DISCONTINUED") from None


def check_create(status: PerformedStatus) -> None:
    """PS3.4 F.7.2.1.2: an MPPS is created only IN PROGRESS."""
    if status is not P.IN_PROGRESS:
        raise PerformedRefused(f"N-CREATE with status {status.value}: must be IN PROGRESS")


def check_update(current: PerformedStatus) -> None:
    """PS3.4 F.7.2.2.2: a COMPLETED or DISCONTINUED MPPS may no longer be updated."""
    if current in FINAL_PERFORMED:
        raise PerformedRefused(f"Performed Procedure Step is {current.value}: "
                               "it may no longer be updated")


def step_event_on_finish(statuses_of_step_mpps: list[PerformedStatus],
                         reason_codes: list[str] | None = None) -> StepEvent | None:
    """The step's event once one of its MPPS finished, given all its MPPS' statuses.

    None while another MPPS of the step is still IN PROGRESS; COMPLETE when any MPPS completed
    (something was acquired); REOPEN when every MPPS was discontinued because the wrong worklist
    entry was picked (`reason_codes`, aligned with the statuses, hold the discontinuation reason
    code values); DISCONTINUE otherwise.
    """
    statuses = [PerformedStatus(s) for s in statuses_of_step_mpps]
    if not statuses or P.IN_PROGRESS in statuses:
        return None
    if P.COMPLETED in statuses:
        return StepEvent.COMPLETE
    codes = reason_codes or []
    if len(codes) == len(statuses) and all(c == WRONG_WORKLIST_ENTRY for c in codes):
        return StepEvent.REOPEN
    return StepEvent.DISCONTINUE


@dataclass(frozen=True)
class ScheduledReference:
    """One Scheduled Step Attributes Sequence item: how an MPPS names the step it performed."""
    study_instance_uid: str = ""
    accession_number: str = ""
    requested_procedure_id: str = ""
    scheduled_step_id: str = ""

    def is_empty(self) -> bool:
        return not (self.accession_number or self.requested_procedure_id or self.scheduled_step_id
                    or self.study_instance_uid)


@dataclass(frozen=True)
class PerformedReport:
    """An MPPS as the broker keeps it: identity, status, times, references, what was performed."""
    sop_instance_uid: str
    status: PerformedStatus
    modality: str = ""
    station_ae_title: str = ""
    calling_ae_title: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    study_instance_uid: str = ""
    references: tuple[ScheduledReference, ...] = ()
    patient: PatientRecord | None = None
    discontinuation_reason: str = ""
    dataset: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
