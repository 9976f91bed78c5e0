"""Patient records and their identity: which patient a record belongs to, kept current.

upsert_patient is the one way in for every intake path. What decides the patient of a message
runs in the message's transaction: the exact-identifier lookup, a known identifier arriving
with demographics that contradict the patient (held back as a conflict), and identifiers held
by two patients. A new patient's fuzzy candidate search does not: a patient_search row is
written with the patient and broker.matching.searches runs it after the ACK.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from sqlalchemy import delete, insert, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from broker.config import MatchingSettings
from broker.domain.records import Identifier, PatientRecord, PersonName
from broker.matching import queue
from broker.matching.score import Band, Profile, Verdict, block_keys, compare, judge, profile
from broker.matching.search import policy_of
from broker.store.merge import surviving  # noqa: F401 (callers import it from here too)
from broker.store.models import Patient, PatientBlockKey, PatientIdentifier, PatientSearch

_DEFAULT = MatchingSettings()


def matching_settings(session: Session) -> MatchingSettings:
    """The [matching] settings the session was made with (configure_matching puts them there)."""
    return session.info.get("matching", _DEFAULT)


def configure_matching(sessions: sessionmaker[Session], settings: MatchingSettings) -> None:
    """Make every session of the factory carry the site's [matching] settings."""
    sessions.configure(info={"matching": settings})


def _pairs(record: PatientRecord) -> list[tuple[str, str]]:
    return [(i.value, i.issuer) for i in record.identifiers if i.value]


def find_by_identifiers(session: Session, record: PatientRecord) -> Patient | None:
    """The live patient holding any of the record's identifiers (following merges), or None."""
    pairs = _pairs(record)
    if not pairs:
        return None
    row = session.execute(
        select(PatientIdentifier)
        .where(tuple_(PatientIdentifier.value, PatientIdentifier.issuer).in_(pairs))
        .order_by(PatientIdentifier.id).limit(1)
    ).scalar_one_or_none()
    return surviving(session, row.patient) if row else None


def holders(session: Session, record: PatientRecord) -> list[Patient]:
    """Live patients holding any of the record's identifiers, oldest identifier first."""
    pairs = _pairs(record)
    if not pairs:
        return []
    rows = session.scalars(
        select(Patient).join(PatientIdentifier, PatientIdentifier.patient_id == Patient.id)
        .where(tuple_(PatientIdentifier.value, PatientIdentifier.issuer).in_(pairs))
        .order_by(PatientIdentifier.id)).all()
    found: dict[int, Patient] = {}
    for row in rows:
        patient = surviving(session, row)
        found.setdefault(patient.id, patient)
    return list(found.values())


# The patient columns a record's demographics fill (demographic_values gives them in this order).
DEMOGRAPHIC_FIELDS = ("name", "family_name", "given_name", "middle_name", "name_prefix",
                      "name_suffix", "name_key", "birth_date", "sex", "address", "phone")


def demographic_values(record: PatientRecord) -> dict[str, str]:
    """The patient columns a record's demographics fill."""
    name = record.name
    return {"name": name.dicom(), "family_name": name.family, "given_name": name.given,
            "middle_name": name.middle, "name_prefix": name.prefix, "name_suffix": name.suffix,
            "name_key": name.alphabetic().upper(), "birth_date": record.birth_date,
            "sex": record.sex, "address": record.address, "phone": record.phone}


def apply_demographics(patient: Patient, record: PatientRecord) -> bool:
    """Copy the record's demographics onto the patient row; True when anything changed."""
    changed = False
    for column, value in demographic_values(record).items():
        if getattr(patient, column) != value:
            setattr(patient, column, value)
            changed = True
    return changed


def add_missing_identifiers(session: Session, patient: Patient, record: PatientRecord) -> bool:
    """Attach the record's identifiers that no patient carries yet; True when any was added.

    An identifier held by another record (a merged one, or a different patient) is left where it
    is: moving identifiers is a merge, decided by reconciliation, never a side effect here.
    """
    held = {(i.value, i.issuer) for i in patient.identifiers}
    missing = [p for p in _pairs(record) if p not in held]
    if not missing:
        return False
    held |= set(session.execute(
        select(PatientIdentifier.value, PatientIdentifier.issuer)
        .where(tuple_(PatientIdentifier.value, PatientIdentifier.issuer).in_(missing))).all())
    added = False
    for ident in record.identifiers:
        if ident.value and (ident.value, ident.issuer) not in held:
            patient.identifiers.append(
                PatientIdentifier(value=ident.value, issuer=ident.issuer, type_code=ident.type_code))
            held.add((ident.value, ident.issuer))
            added = True
    return added


def patient_profile(patient: Patient) -> Profile:
    """The normalised profile of a patient row, identifiers included."""
    return profile(patient.family_name, patient.given_name, patient.birth_date, patient.sex,
                   patient.address, patient.phone,
                   [(i.value, i.issuer) for i in patient.identifiers])


def record_profile(record: PatientRecord) -> Profile:
    """The normalised profile of an incoming record."""
    return profile(record.name.family, record.name.given, record.birth_date, record.sex,
                   record.address, record.phone, [(i.value, i.issuer) for i in record.identifiers])


def sync_block_keys(session: Session, patient_id: int, prof: Profile) -> None:
    """Make the patient's stored blocking keys those of `prof`: only the difference is written."""
    wanted = block_keys(prof)
    stored = set(session.scalars(
        select(PatientBlockKey.key).where(PatientBlockKey.patient_id == patient_id)))
    gone = stored - wanted
    if gone:
        session.execute(delete(PatientBlockKey).where(
            PatientBlockKey.patient_id == patient_id, PatientBlockKey.key.in_(gone)))
    if wanted - stored:
        session.execute(insert(PatientBlockKey),
                        [{"patient_id": patient_id, "key": k} for k in sorted(wanted - stored)])


def upsert_patient(session: Session, record: PatientRecord, *, source: str = "hl7",
                   reconcile: bool | None = None) -> Patient:
    """The patient for `record`: updated when an identifier is known, created otherwise.

    With reconciliation on (the [matching] settings; `reconcile` overrides), a new patient gets
    a pending candidate search; an identifier match whose demographics disagree badly is queued
    as a conflict and the patient is left unchanged. A known patient whose demographics did not
    change is not written at all.
    """
    settings = matching_settings(session)
    active = settings.enabled if reconcile is None else reconcile
    known = holders(session, record)
    if not known:
        return _create(session, record, active, source)
    patient = known[0]
    if active and len(known) > 1:
        # The record's identifiers point at several patients: which one it describes is for the
        # trusted identifier or a person to decide; until then nothing is applied.
        if not all([_identifiers_split(session, patient, other, record, settings, source)
                    for other in known[1:]]):
            return patient
        patient = surviving(session, patient)
    if active and _conflicts(patient, record, settings):
        queue.flag_conflict(session, patient, record_as_dict(record),
                            compare(patient_profile(patient), record_profile(record)), source)
        return patient
    _update(session, patient, record)
    return surviving(session, patient)


def _create(session: Session, record: PatientRecord, active: bool, source: str) -> Patient:
    # None of the record's identifiers is held by anyone (upsert_patient looked): all are new.
    identifiers = {(i.value, i.issuer): i for i in record.identifiers if i.value}
    patient = Patient(**demographic_values(record), identifiers=[
        PatientIdentifier(value=i.value, issuer=i.issuer, type_code=i.type_code)
        for i in identifiers.values()])
    session.add(patient)
    session.flush()
    keys = sorted(block_keys(patient_profile(patient)))
    if keys:
        session.execute(insert(PatientBlockKey), [{"patient_id": patient.id, "key": k} for k in keys])
    if active:
        # Run by broker.matching.searches after the ACK; committed with the patient, so a crash
        # before the search ran loses nothing.
        session.add(PatientSearch(patient_id=patient.id, source=source[:32]))
    return patient


def _update(session: Session, patient: Patient, record: PatientRecord) -> None:
    changed = apply_demographics(patient, record)
    added = add_missing_identifiers(session, patient, record)
    if changed or added:
        session.flush()
        sync_block_keys(session, patient.id, patient_profile(patient))


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
        entry = queue.auto_link(session, min(patient.id, other.id), max(patient.id, other.id),
                                verdict, source)
        return entry is not None
    reason = "the identifiers of one record are held by two patients; " + verdict.reason
    queue.propose(session, patient.id, other.id,
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
    _update(session, patient, record_from_dict(data))
    return patient
