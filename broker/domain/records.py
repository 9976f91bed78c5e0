"""What a sender tells the broker, in the broker's own words: patients, orders, procedures, steps.

Protocol adapters (HL7, FHIR, DICOM import) build these; the store persists them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


def pn_group(family: str, given: str, middle: str, prefix: str, suffix: str) -> str:
    """One DICOM PN component group (family^given^middle^prefix^suffix), trailing empty
    components removed."""
    parts = [family, given, middle, prefix, suffix]
    while parts and not parts[-1]:
        parts.pop()
    return "^".join(parts)


@dataclass(frozen=True)
class PersonName:
    """A person's name in DICOM PN component order; ideographic/phonetic groups are optional."""
    family: str = ""
    given: str = ""
    middle: str = ""
    prefix: str = ""
    suffix: str = ""
    ideographic: str = ""  # the whole second PN component group, as sent
    phonetic: str = ""     # the whole third PN component group, as sent

    def alphabetic(self) -> str:
        """The first PN component group, trailing empty components removed."""
        return pn_group(self.family, self.given, self.middle, self.prefix, self.suffix)

    def dicom(self) -> str:
        """The full PN value: alphabetic=ideographic=phonetic, trailing empty groups removed."""
        groups = [self.alphabetic(), self.ideographic, self.phonetic]
        while len(groups) > 1 and not groups[-1]:
            groups.pop()
        return "=".join(groups)


@dataclass(frozen=True)
class Identifier:
    value: str
    issuer: str = ""
    type_code: str = ""


@dataclass(frozen=True)
class PatientRecord:
    identifiers: tuple[Identifier, ...]
    name: PersonName = PersonName()
    birth_date: str = ""   # YYYYMMDD, or "" when unknown
    sex: str = ""          # M, F, O, U or ""
    address: str = ""
    phone: str = ""

    @property
    def primary(self) -> Identifier:
        """The identifier the worklist shows as PatientID."""
        return self.identifiers[0]


@dataclass(frozen=True)
class StepRequest:
    step_id: str
    modality: str = ""
    station_ae_titles: tuple[str, ...] = ()
    station_name: str = ""
    location: str = ""
    start: datetime | None = None
    end: datetime | None = None  # Scheduled Procedure Step End Date/Time; None when unknown
    performing_physician: str = ""
    description: str = ""
    protocol_codes: tuple[tuple[str, str, str], ...] = ()  # (value, scheme, meaning)


@dataclass(frozen=True)
class ProcedureRequest:
    procedure_id: str
    code_value: str = ""
    code_scheme: str = ""
    code_meaning: str = ""
    study_instance_uid: str = ""
    steps: tuple[StepRequest, ...] = ()
    # Its own accession (IHE RAD-4 v2.5.1: one per IPC); empty: the order's.
    accession_number: str = ""
    accession_issuer: str = ""


@dataclass(frozen=True)
class OrderRequest:
    """A new or changed imaging order with everything needed to schedule it."""
    patient: PatientRecord
    placer_order_number: str
    placer_issuer: str = ""
    filler_order_number: str = ""
    filler_issuer: str = ""
    accession_number: str = ""
    accession_issuer: str = ""
    priority: str = ""
    referring_physician: str = ""
    reason: str = ""
    procedures: tuple[ProcedureRequest, ...] = field(default_factory=tuple)
