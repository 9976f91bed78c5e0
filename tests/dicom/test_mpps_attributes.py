"""PS3.4 Table F.7.2-1 rules, one row per refusal (status and offending tag)."""
import pytest
from pydicom.datadict import tag_for_keyword

from broker.dicom.mpps_attributes import (
    AttributeProblem, check_create_attributes, check_final_state, check_set_attributes,
)
from tests.support.modality import finished, in_progress, scheduled_item


def _tag(keyword):
    return tag_for_keyword(keyword)


def _without(keyword):
    def change(ds):
        del ds[keyword]
    return change


def _set(keyword, value):
    def change(ds):
        setattr(ds, keyword, value)
    return change


def _item_without(keyword):
    def change(ds):
        del ds.ScheduledStepAttributesSequence[0][keyword]
    return change


@pytest.mark.filterwarnings("ignore:Invalid value for VR")  # the bad values are the point
@pytest.mark.parametrize("change, status, keyword", [
    (_without("PerformedProcedureStepID"), 0x0120, "PerformedProcedureStepID"),
    (_without("Modality"), 0x0120, "Modality"),
    (_without("PatientName"), 0x0120, "PatientName"),            # Type 2: must be present
    (_without("PerformedSeriesSequence"), 0x0120, "PerformedSeriesSequence"),
    (_without("ScheduledStepAttributesSequence"), 0x0120, "ScheduledStepAttributesSequence"),
    (_item_without("StudyInstanceUID"), 0x0120, "StudyInstanceUID"),
    (_item_without("AccessionNumber"), 0x0120, "AccessionNumber"),
    (_set("Modality", ""), 0x0121, "Modality"),                  # Type 1 without a value
    (_set("PerformedStationAETitle", ""), 0x0121, "PerformedStationAETitle"),
    (_set("PerformedProcedureStepStartDate", "2026-11-24"), 0x0106, "PerformedProcedureStepStartDate"),
    (_set("PerformedProcedureStepStartDate", "20261324"), 0x0106, "PerformedProcedureStepStartDate"),
    (_set("PerformedProcedureStepStartTime", "9h35"), 0x0106, "PerformedProcedureStepStartTime"),
])
def test_create_refusals(change, status, keyword):
    ds = in_progress([scheduled_item()])
    change(ds)
    with pytest.raises(AttributeProblem) as caught:
        check_create_attributes(ds)
    assert caught.value.status == status
    assert _tag(keyword) in caught.value.tags
    assert keyword in caught.value.comment


def test_a_complete_create_passes():
    check_create_attributes(in_progress([scheduled_item(), scheduled_item()]))


@pytest.mark.parametrize("keyword, value", [
    ("PatientName", "Other^Name"), ("PatientID", "1"), ("Modality", "MR"),
    ("PerformedProcedureStepStartDate", "20261124"), ("PerformedStationAETitle", "CT9"),
    ("PerformedProcedureStepID", "X"), ("StudyID", "2"),
])
def test_set_refuses_attributes_not_allowed_in_n_set(keyword, value):
    ds = finished()
    setattr(ds, keyword, value)
    with pytest.raises(AttributeProblem) as caught:
        check_set_attributes(ds)
    assert caught.value.status == 0x0106
    assert caught.value.tags == [_tag(keyword)]
    assert "not allowed in N-SET" in caught.value.comment


def test_set_refuses_a_series_without_its_uid():
    ds = finished()
    del ds.PerformedSeriesSequence[0].SeriesInstanceUID
    with pytest.raises(AttributeProblem) as caught:
        check_set_attributes(ds)
    assert (caught.value.status, caught.value.tags) == (0x0120, [_tag("SeriesInstanceUID")])


@pytest.mark.parametrize("keyword", ["PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime"])
def test_final_state_needs_end_date_and_time(keyword):
    merged = in_progress([scheduled_item()])
    for elem in finished():
        merged[elem.tag] = elem
    setattr(merged, keyword, "")
    with pytest.raises(AttributeProblem) as caught:
        check_final_state(merged, completed=True)
    assert (caught.value.status, caught.value.tags) == (0x0121, [_tag(keyword)])


def test_completed_needs_performed_series_but_discontinued_does_not():
    merged = in_progress([scheduled_item()])
    merged.PerformedProcedureStepEndDate, merged.PerformedProcedureStepEndTime = "20261124", "1000"
    check_final_state(merged, completed=False)
    with pytest.raises(AttributeProblem, match="PerformedSeriesSequence"):
        check_final_state(merged, completed=True)
