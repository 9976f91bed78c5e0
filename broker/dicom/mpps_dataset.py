"""Reading an MPPS dataset into the broker's words: report, references, patient, summary."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pydicom.dataset import Dataset

from broker.domain.mpps import PerformedReport, PerformedStatus, ScheduledReference
from broker.domain.records import Identifier, PatientRecord, PersonName

# Radiation Dose Module (PS3.3 C.4.16): kept when the modality sends them.
DOSE_KEYWORDS = ("AnatomicStructureSpaceOrRegionSequence", "TotalTimeOfFluoroscopy",
                 "TotalNumberOfExposures", "DistanceSourceToDetector", "DistanceSourceToEntrance",
                 "EntranceDose", "EntranceDoseInmGy", "ExposedArea",
                 "ImageAndFluoroscopyAreaDoseProduct", "CommentsOnRadiationDose",
                 "ExposureDoseSequence", "OrganDose")


def text(ds: Dataset, keyword: str) -> str:
    """An attribute's value as stripped text ('' when absent or empty)."""
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def dicom_datetime(date: str, time: str) -> datetime | None:
    """DA + TM (PS3.5 6.2) as a naive local datetime; None without a date."""
    if len(date) != 8:
        return None
    digits = (time.split(".")[0] + "000000")[:6]
    try:
        return datetime.strptime(date + digits, "%Y%m%d%H%M%S")
    except ValueError:
        return None


def references(ds: Dataset) -> tuple[ScheduledReference, ...]:
    """The Scheduled Step Attributes Sequence items (PS3.3 C.4.13)."""
    return tuple(ScheduledReference(text(item, "StudyInstanceUID"), text(item, "AccessionNumber"),
                                    text(item, "RequestedProcedureID"),
                                    text(item, "ScheduledProcedureStepID"))
                 for item in ds.get("ScheduledStepAttributesSequence") or [])


def patient_record(ds: Dataset) -> PatientRecord:
    """The MPPS patient demographics (PS3.3 C.4.13) as a PatientRecord."""
    patient_id = text(ds, "PatientID")
    identifiers = (Identifier(patient_id, text(ds, "IssuerOfPatientID")),) if patient_id else ()
    groups = text(ds, "PatientName").split("=")
    parts = (groups[0].split("^") + [""] * 5)[:5]
    name = PersonName(*parts, ideographic=groups[1] if len(groups) > 1 else "",
                      phonetic=groups[2] if len(groups) > 2 else "")
    birth = text(ds, "PatientBirthDate")
    sex = text(ds, "PatientSex").upper()
    return PatientRecord(identifiers=identifiers, name=name,
                         birth_date=birth if len(birth) == 8 and birth.isdigit() else "",
                         sex=sex if sex in ("M", "F", "O") else "")


def _codes(ds: Dataset, keyword: str) -> list[dict[str, str]]:
    return [{"value": text(c, "CodeValue"), "scheme": text(c, "CodingSchemeDesignator"),
             "meaning": text(c, "CodeMeaning")} for c in ds.get(keyword) or []]


def summary(ds: Dataset) -> dict[str, Any]:
    """What was performed: series with image counts, protocols, procedure codes, dose."""
    series = [{"series_instance_uid": text(s, "SeriesInstanceUID"),
               "description": text(s, "SeriesDescription"), "protocol": text(s, "ProtocolName"),
               "retrieve_ae_title": text(s, "RetrieveAETitle"),
               "images": len(s.get("ReferencedImageSequence") or []),
               "non_images": len(s.get("ReferencedNonImageCompositeSOPInstanceSequence") or [])}
              for s in ds.get("PerformedSeriesSequence") or []]
    dose = {k: ds[k].to_json_dict(None, 0)["Value"] for k in DOSE_KEYWORDS
            if k in ds and ds[k].value not in (None, "", [])}
    result: dict[str, Any] = {
        "description": text(ds, "PerformedProcedureStepDescription"),
        "series": series,
        "image_count": sum(s["images"] for s in series),
        "performed_protocols": _codes(ds, "PerformedProtocolCodeSequence"),
        "procedure_codes": _codes(ds, "ProcedureCodeSequence"),
        "comments": text(ds, "CommentsOnThePerformedProcedureStep"),
    }
    if dose:
        result["dose"] = dose
    reason = _codes(ds, "PerformedProcedureStepDiscontinuationReasonCodeSequence")
    if reason:
        result["discontinuation_reason"] = reason[0]
    return result


def discontinuation_reason(ds: Dataset) -> str:
    """The first discontinuation reason code, as 'value^scheme^meaning' (PS3.16 CID 9300)."""
    codes = _codes(ds, "PerformedProcedureStepDiscontinuationReasonCodeSequence")
    return "^".join(codes[0].values())[:64] if codes else ""


def build_report(ds: Dataset, sop_instance_uid: str, calling_ae_title: str) -> PerformedReport:
    """An N-CREATE Attribute List as a PerformedReport."""
    refs = references(ds)
    study = next((r.study_instance_uid for r in refs if r.study_instance_uid), "")
    return PerformedReport(
        sop_instance_uid=sop_instance_uid,
        status=PerformedStatus(text(ds, "PerformedProcedureStepStatus")),
        modality=text(ds, "Modality")[:16], station_ae_title=text(ds, "PerformedStationAETitle")[:16],
        calling_ae_title=calling_ae_title[:16],
        started_at=dicom_datetime(text(ds, "PerformedProcedureStepStartDate"),
                                  text(ds, "PerformedProcedureStepStartTime")),
        ended_at=dicom_datetime(text(ds, "PerformedProcedureStepEndDate"),
                                text(ds, "PerformedProcedureStepEndTime")),
        study_instance_uid=study, references=refs, patient=patient_record(ds),
        discontinuation_reason=discontinuation_reason(ds),
        dataset=ds.to_json_dict(), summary=summary(ds))
