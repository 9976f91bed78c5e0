"""Patient records: find by identifier, create, update demographics."""
from __future__ import annotations

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from broker.domain.records import PatientRecord
from broker.store.models import Patient, PatientIdentifier


def find_by_identifiers(session: Session, record: PatientRecord) -> Patient | None:
    """The live patient holding any of the record's identifiers (following merges), or None."""
    pairs = [(i.value, i.issuer) for i in record.identifiers if i.value]
    if not pairs:
        return None
    row = session.execute(
        select(PatientIdentifier)
        .where(tuple_(PatientIdentifier.value, PatientIdentifier.issuer).in_(pairs))
        .order_by(PatientIdentifier.id).limit(1)
    ).scalar_one_or_none()
    return surviving(session, row.patient) if row else None


def surviving(session: Session, patient: Patient) -> Patient:
    """Follow merged_into links to the record that survived."""
    seen = {patient.id}
    while patient.merged_into_id is not None:
        patient = session.get(Patient, patient.merged_into_id)
        if patient.id in seen:  # a cycle would be a bug elsewhere; stop rather than loop
            break
        seen.add(patient.id)
    return patient


def apply_demographics(patient: Patient, record: PatientRecord) -> None:
    """Copy the record's demographics onto the patient row."""
    name = record.name
    patient.name = name.dicom()
    patient.family_name = name.family
    patient.given_name = name.given
    patient.middle_name = name.middle
    patient.name_prefix = name.prefix
    patient.name_suffix = name.suffix
    patient.name_key = name.alphabetic().upper()
    patient.birth_date = record.birth_date
    patient.sex = record.sex
    patient.address = record.address
    patient.phone = record.phone


def add_missing_identifiers(session: Session, patient: Patient, record: PatientRecord) -> None:
    """Attach the record's identifiers that no patient carries yet.

    An identifier held by another record (a merged one, or a different patient) is left where it
    is: moving identifiers is a merge, decided by reconciliation, never a side effect here.
    """
    pairs = [(i.value, i.issuer) for i in record.identifiers if i.value]
    held = {(i.value, i.issuer) for i in patient.identifiers}
    if pairs:
        held |= set(session.execute(
            select(PatientIdentifier.value, PatientIdentifier.issuer)
            .where(tuple_(PatientIdentifier.value, PatientIdentifier.issuer).in_(pairs))).all())
    for ident in record.identifiers:
        if ident.value and (ident.value, ident.issuer) not in held:
            patient.identifiers.append(
                PatientIdentifier(value=ident.value, issuer=ident.issuer, type_code=ident.type_code))
            held.add((ident.value, ident.issuer))


def upsert_patient(session: Session, record: PatientRecord) -> Patient:
    """The patient for `record`: updated when an identifier is known, created otherwise."""
    patient = find_by_identifiers(session, record)
    if patient is None:
        patient = Patient()
        session.add(patient)
    apply_demographics(patient, record)
    add_missing_identifiers(session, patient, record)
    return patient


def primary_identifier(patient: Patient) -> PatientIdentifier | None:
    """The identifier the worklist shows as PatientID: the first one attached."""
    return patient.identifiers[0] if patient.identifiers else None
