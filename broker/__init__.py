"""RIS/HL7-to-Modality-Worklist integration broker."""

__version__ = "0.1.0"
