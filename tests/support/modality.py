"""pynetdicom as the modality: MPPS N-CREATE / N-SET over a real association."""
from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep


def scheduled_item(study_uid: str = "", accession: str = "", rp_id: str = "",
                   sps_id: str = "") -> Dataset:
    """One Scheduled Step Attributes Sequence item (Type 2 keys present, possibly empty)."""
    item = Dataset()
    item.StudyInstanceUID = study_uid or generate_uid()
    item.ReferencedStudySequence = Sequence()
    item.AccessionNumber = accession
    item.RequestedProcedureID = rp_id
    item.RequestedProcedureDescription = ""
    item.ScheduledProcedureStepID = sps_id
    item.ScheduledProcedureStepDescription = ""
    item.ScheduledProtocolCodeSequence = Sequence()
    return item


def in_progress(items: list[Dataset], patient_id: str = "778899", name: str = "Björk^Ingrid",
                modality: str = "CT", station: str = "CT1") -> Dataset:
    """An N-CREATE Attribute List as a CT would send it (PS3.4 Table F.7.2-1)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ScheduledStepAttributesSequence = Sequence(items)
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.IssuerOfPatientID = "STMARYS"
    ds.PatientBirthDate = "19720304"
    ds.PatientSex = "F"
    ds.ReferencedPatientSequence = Sequence()
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = station
    ds.PerformedStationName = "CT Room 1"
    ds.PerformedLocation = "Radiology"
    ds.PerformedProcedureStepStartDate = "20261124"
    ds.PerformedProcedureStepStartTime = "093512"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = "CT chest"
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = Sequence()
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = modality
    ds.StudyID = "1"
    ds.PerformedProtocolCodeSequence = Sequence()
    ds.PerformedSeriesSequence = Sequence()
    return ds


def finished(status: str = "COMPLETED", images: int = 3, dose: bool = False) -> Dataset:
    """An N-SET Modification List finishing the step, with one series of `images` images."""
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20261124"
    ds.PerformedProcedureStepEndTime = "100100"
    series = Dataset()
    series.SeriesInstanceUID = generate_uid()
    series.ProtocolName = "Chest routine"
    series.SeriesDescription = "Axial 1mm"
    series.PerformingPhysicianName = ""
    series.OperatorsName = "Tech^Tina"
    series.RetrieveAETitle = "PACS"
    refs = []
    for _ in range(images):
        ref = Dataset()
        ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ref.ReferencedSOPInstanceUID = generate_uid()
        refs.append(ref)
    series.ReferencedImageSequence = Sequence(refs)
    series.ReferencedNonImageCompositeSOPInstanceSequence = Sequence()
    ds.PerformedSeriesSequence = Sequence([series]) if images or status == "COMPLETED" else Sequence()
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "P1", "L", "Chest routine"
    ds.PerformedProtocolCodeSequence = Sequence([code])
    if dose:
        ds.TotalTimeOfFluoroscopy = 0
        ds.EntranceDoseInmGy = "12.5"
        ds.CommentsOnRadiationDose = "CTDIvol 8.1 mGy"
    return ds


class Modality:
    """One association to the broker's MPPS SCP, as a scanner holds it."""

    def __init__(self, port: int, calling: str = "CT1", called: str = "BROKER") -> None:
        ae = AE(ae_title=calling)
        ae.add_requested_context(ModalityPerformedProcedureStep)
        self.assoc = ae.associate("127.0.0.1", port, ae_title=called)
        if not self.assoc.is_established:
            raise AssertionError("association to the MPPS SCP was not established")

    def create(self, ds: Dataset, uid: str | None = None) -> tuple[Dataset, str]:
        """N-CREATE; returns the response status dataset and the instance UID used."""
        uid = uid or generate_uid()
        status, _ = self.assoc.send_n_create(ds, ModalityPerformedProcedureStep, uid)
        return status, uid

    def set(self, ds: Dataset, uid: str) -> Dataset:
        """N-SET; returns the response status dataset."""
        status, _ = self.assoc.send_n_set(ds, ModalityPerformedProcedureStep, uid)
        return status

    def close(self) -> None:
        self.assoc.release()

    def __enter__(self) -> "Modality":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
