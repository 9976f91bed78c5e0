"""The DICOM AE: Verification, Modality Worklist C-FIND, MPPS, worklist import."""
