"""Patient records: find by identifier, create, update demographics, reconcile identities.

upsert_patient is the one way in for every intake path; reconciliation (candidate search, the
review queue, conflicts) runs behind it, configured by the session's [matching] settings.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from broker.config import MatchingSettings
from broker.domain.records import Identifier, PatientRecord, PersonName
from broker.matching import Band, Profile, Verdict, compare, judge, profile
from broker.store import matches
from broker.store.blocking import (
    matching_settings, patient_profile, policy_of, refresh_block_keys, search,
)
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


def holders(session: Session, record: PatientRecord) -> list[Patient]:
    """Live patients holding any of the record's identifiers, oldest identifier first."""
    pairs = [(i.value, i.issuer) for i in record.identifiers if i.value]
    if not pairs:
        return []
    rows = session.scalars(
        select(PatientIdentifier)
        .where(tuple_(PatientIdentifier.value, PatientIdentifier.issuer).in_(pairs))
        .order_by(PatientIdentifier.id)).all()
    found: dict[int, Patient] = {}
    for row in rows:
        patient = surviving(session, row.patient)
        found.setdefault(patient.id, patient)
    return list(found.values())


def record_profile(record: PatientRecord) -> Profile:
    """The normalised profile of an incoming record."""
    return profile(record.name.family, record.name.given, record.birth_date, record.sex,
                   record.address, record.phone, [(i.value, i.issuer) for i in record.identifiers])


def upsert_patient(session: Session, record: PatientRecord, *, source: str = "hl7",
                   reconcile: bool | None = None) -> Patient:
    """The patient for `record`: updated when an identifier is known, created otherwise.

    With reconciliation on (the [matching] settings; `reconcile` overrides), a new patient is
    searched against the others and likely duplicates are queued for review; an identifier match
    whose demographics disagree badly is queued as a conflict and the patient is left unchanged.
    """
    settings = matching_settings(session)
    active = settings.enabled if reconcile is None else reconcile
    known = holders(session, record)
    if not known:
        return _create(session, record, settings, active, source)
    patient = known[0]
    if active and len(known) > 1:
        # The record's identifiers point at several patients: which one it describes is for the
        # trusted identifier or a person to decide; until then nothing is applied.
        if not all([_identifiers_split(session, patient, other, record, settings, source)
                    for other in known[1:]]):
            return patient
        patient = surviving(session, patient)
    if active and _conflicts(patient, record, settings):
        matches.flag_conflict(session, patient, record_as_dict(record),
                              compare(patient_profile(patient), record_profile(record)), source)
        return patient
    apply_demographics(patient, record)
    add_missing_identifiers(session, patient, record)
    session.flush()
    refresh_block_keys(session, patient.id, patient_profile(patient))
    return surviving(session, patient)


def _create(session: Session, record: PatientRecord, settings: MatchingSettings, active: bool,
            source: str) -> Patient:
    patient = Patient()
    session.add(patient)
    apply_demographics(patient, record)
    add_missing_identifiers(session, patient, record)
    session.flush()
    prof = patient_profile(patient)
    refresh_block_keys(session, patient.id, prof)
    if active:
        review_patient(session, patient.id, prof, settings, source)
    return surviving(session, patient)


def review_patient(session: Session, patient_id: int, prof: Profile, settings: MatchingSettings,
                   source: str) -> list[tuple[int, str]]:
    """Search candidates for one patient: queue the review band, link the automatic band."""
    policy = policy_of(settings)
    acted: list[tuple[int, str]] = []
    for other, verdict in search(session, prof, policy, settings.max_candidates, exclude=[patient_id]):
        if len(acted) >= settings.max_queued_per_patient:
            break
        if verdict.band is Band.NONE:
            continue
        if verdict.band is Band.AUTO:
            entry = matches.auto_link(session, min(other, patient_id), max(other, patient_id),
                                      verdict, source)
        else:
            entry = matches.propose(session, patient_id, other, verdict, source)
        if entry is not None:
            acted.append((other, verdict.band.value))
    return acted


def _conflicts(patient: Patient, record: PatientRecord, settings: MatchingSettings) -> bool:
    """True when the record's demographics contradict the patient's (not just fill or fix them)."""
    result = compare(patient_profile(patient), record_profile(record))
    return result.total < settings.conflict_threshold


def _identifiers_split(session: Session, patient: Patient, other: Patient, record: PatientRecord,
                       settings: MatchingSettings, source: str) -> bool:
    """One record's identifiers are held by two patients: link them when a trusted issuer says
    so (True), otherwise queue the pair for review (False)."""
    policy = policy_of(settings)
    mine, theirs = patient_profile(patient), patient_profile(other)
    # The record vouches that each identifier it carries, held by either patient, is one person's.
    bridging = record_profile(record).identifiers & (mine.identifiers | theirs.identifiers)
    verdict = judge(replace(mine, identifiers=mine.identifiers | bridging),
                    replace(theirs, identifiers=theirs.identifiers | bridging), policy)
    if verdict.band is Band.AUTO:
        entry = matches.auto_link(session, min(patient.id, other.id), max(patient.id, other.id),
                                  verdict, source)
        return entry is not None
    reason = "the identifiers of one record are held by two patients; " + verdict.reason
    matches.propose(session, patient.id, other.id,
                    Verdict(Band.REVIEW, verdict.comparison, reason[:255]), source)
    return False


def record_as_dict(record: PatientRecord) -> dict[str, Any]:
    """An incoming record as JSON-friendly data (kept with a conflict until someone decides)."""
    return {**asdict(record.name), "birth_date": record.birth_date, "sex": record.sex,
            "address": record.address, "phone": record.phone,
            "identifiers": [asdict(i) for i in record.identifiers]}


def record_from_dict(data: dict[str, Any]) -> PatientRecord:
    """The inverse of record_as_dict."""
    name = PersonName(**{k: data.get(k, "") for k in PersonName.__dataclass_fields__})
    return PatientRecord(tuple(Identifier(**i) for i in data.get("identifiers", [])), name,
                         data.get("birth_date", ""), data.get("sex", ""), data.get("address", ""),
                         data.get("phone", ""))


def accept_demographics(session: Session, patient_id: int, data: dict[str, Any]) -> Patient:
    """Apply demographics that were held back as a conflict, now that someone accepted them."""
    patient = session.get(Patient, patient_id)
    record = record_from_dict(data)
    apply_demographics(patient, record)
    add_missing_identifiers(session, patient, record)
    session.flush()
    refresh_block_keys(session, patient.id, patient_profile(patient))
    return patient
