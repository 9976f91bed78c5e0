"""MPPS attribute rules of PS3.4 Table F.7.2-1, checked before anything is stored.

Each refusal names the status PS3.7 Annex C gives it and the offending tags, which the handler
returns as the Attribute Identifier List (0000,1005) with an Error Comment (0000,0902).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.tag import Tag

# PS3.7 C.4 / PS3.4 F.7.2 statuses.
INVALID_ATTRIBUTE_VALUE = 0x0106
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
NO_SUCH_SOP_INSTANCE = 0x0112
MISSING_ATTRIBUTE = 0x0120
MISSING_ATTRIBUTE_VALUE = 0x0121

# Table F.7.2-1, N-CREATE column: Type 1 (present with a value) and Type 2 (present, may be empty).
CREATE_TYPE_1 = ("ScheduledStepAttributesSequence", "PerformedProcedureStepID",
                 "PerformedStationAETitle", "PerformedProcedureStepStartDate",
                 "PerformedProcedureStepStartTime", "PerformedProcedureStepStatus", "Modality")
CREATE_TYPE_2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                 "ReferencedPatientSequence", "PerformedStationName", "PerformedLocation",
                 "PerformedProcedureStepDescription", "PerformedProcedureTypeDescription",
                 "ProcedureCodeSequence", "PerformedProcedureStepEndDate",
                 "PerformedProcedureStepEndTime", "StudyID", "PerformedProtocolCodeSequence",
                 "PerformedSeriesSequence")
# Scheduled Step Attributes Sequence items: Study Instance UID Type 1, the rest Type 2.
SCHEDULED_ITEM_TYPE_1 = ("StudyInstanceUID",)
SCHEDULED_ITEM_TYPE_2 = ("ReferencedStudySequence", "AccessionNumber", "RequestedProcedureID",
                         "RequestedProcedureDescription", "ScheduledProcedureStepID",
                         "ScheduledProcedureStepDescription", "ScheduledProtocolCodeSequence")
# Performed Series Sequence items (N-CREATE and N-SET alike).
SERIES_ITEM_TYPE_1 = ("SeriesInstanceUID", "ProtocolName")
SERIES_ITEM_TYPE_2 = ("PerformingPhysicianName", "OperatorsName", "SeriesDescription",
                      "RetrieveAETitle", "ReferencedImageSequence",
                      "ReferencedNonImageCompositeSOPInstanceSequence")
# Table F.7.2-1, N-SET column "Not allowed": fixed once the MPPS is created.
NOT_ALLOWED_IN_SET = ("ScheduledStepAttributesSequence", "PatientName", "PatientID",
                      "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
                      "ReferencedPatientSequence", "AdmissionID", "PerformedProcedureStepID",
                      "PerformedStationAETitle", "PerformedStationName", "PerformedLocation",
                      "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
                      "Modality", "StudyID")
# Table F.7.2-1, "Final State" column: values required once COMPLETED or DISCONTINUED.
FINAL_STATE_TYPE_1 = ("PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime")

_DA = re.compile(r"^\d{8}$")
_TM = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
DATE_KEYWORDS = ("PerformedProcedureStepStartDate", "PerformedProcedureStepEndDate")
TIME_KEYWORDS = ("PerformedProcedureStepStartTime", "PerformedProcedureStepEndTime")


@dataclass
class AttributeProblem(Exception):
    """A refusal: the DIMSE status, the offending tags, and an Error Comment (at most 64 chars)."""
    status: int
    comment: str
    tags: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        return f"0x{self.status:04X} {self.comment}"


def _tag(keyword: str) -> int:
    return int(Tag(tag_for_keyword(keyword)))


def _has_value(ds: Dataset, keyword: str) -> bool:
    if keyword not in ds:
        return False
    value = ds[keyword].value
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if hasattr(value, "__len__"):  # sequences, multi-values, PN
        return len(value) > 0
    return True  # a number


def _require(ds: Dataset, type_1: tuple[str, ...], type_2: tuple[str, ...], where: str) -> None:
    """PS3.7 C.4: absent -> 0x0120 Missing Attribute; Type 1 empty -> 0x0121 Missing Value."""
    absent = [k for k in (*type_1, *type_2) if k not in ds]
    if absent:
        raise AttributeProblem(MISSING_ATTRIBUTE, f"missing {where}{', '.join(absent)}",
                               [_tag(k) for k in absent])
    empty = [k for k in type_1 if not _has_value(ds, k)]
    if empty:
        raise AttributeProblem(MISSING_ATTRIBUTE_VALUE, f"no value: {where}{', '.join(empty)}",
                               [_tag(k) for k in empty])


def _check_values(ds: Dataset) -> None:
    """Dates and times must be DICOM DA / TM (PS3.5 6.2); anything else is 0x0106."""
    bad = [k for k in DATE_KEYWORDS if _has_value(ds, k) and not _valid_date(str(ds[k].value))]
    bad += [k for k in TIME_KEYWORDS if _has_value(ds, k) and not _TM.match(str(ds[k].value).strip())]
    if bad:
        raise AttributeProblem(INVALID_ATTRIBUTE_VALUE, f"invalid value: {', '.join(bad)}",
                               [_tag(k) for k in bad])


def _valid_date(value: str) -> bool:
    value = value.strip()
    if not _DA.match(value):
        return False
    month, day = int(value[4:6]), int(value[6:8])
    return 1 <= month <= 12 and 1 <= day <= 31


def _check_series(ds: Dataset) -> None:
    for item in ds.get("PerformedSeriesSequence") or []:
        _require(item, SERIES_ITEM_TYPE_1, SERIES_ITEM_TYPE_2, "PerformedSeriesSequence item ")


def check_create_attributes(ds: Dataset) -> None:
    """N-CREATE Attribute List against Table F.7.2-1; raises AttributeProblem."""
    _require(ds, CREATE_TYPE_1, CREATE_TYPE_2, "")
    for item in ds.ScheduledStepAttributesSequence:
        _require(item, SCHEDULED_ITEM_TYPE_1, SCHEDULED_ITEM_TYPE_2,
                 "ScheduledStepAttributesSequence item ")
    _check_series(ds)
    _check_values(ds)


def check_set_attributes(modification: Dataset) -> None:
    """N-SET Modification List against Table F.7.2-1; raises AttributeProblem."""
    refused = [k for k in NOT_ALLOWED_IN_SET if k in modification]
    if refused:
        # PS3.4 F.7.2.2: these may not be set by N-SET; the SCP refuses the whole request.
        raise AttributeProblem(INVALID_ATTRIBUTE_VALUE, f"not allowed in N-SET: {', '.join(refused)}",
                               [_tag(k) for k in refused])
    if "PerformedProcedureStepStatus" in modification and not _has_value(
            modification, "PerformedProcedureStepStatus"):
        raise AttributeProblem(MISSING_ATTRIBUTE_VALUE, "no value: PerformedProcedureStepStatus",
                               [_tag("PerformedProcedureStepStatus")])
    _check_series(modification)
    _check_values(modification)


def check_final_state(merged: Dataset, completed: bool) -> None:
    """Table F.7.2-1 Final State: end date and time set; a COMPLETED step names its series."""
    missing = [k for k in FINAL_STATE_TYPE_1 if not _has_value(merged, k)]
    if missing:
        raise AttributeProblem(MISSING_ATTRIBUTE_VALUE, f"final state needs {', '.join(missing)}",
                               [_tag(k) for k in missing])
    if completed and not _has_value(merged, "PerformedSeriesSequence"):
        raise AttributeProblem(MISSING_ATTRIBUTE_VALUE, "COMPLETED needs PerformedSeriesSequence",
                               [_tag("PerformedSeriesSequence")])


def problem_from_value(status: int, keyword: str, comment: str) -> AttributeProblem:
    """A refusal naming one attribute."""
    return AttributeProblem(status, comment, [_tag(keyword)])
