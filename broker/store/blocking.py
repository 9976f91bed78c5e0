"""Blocking keys in the indexed patient_block_key table, and candidate search over them.

A search looks up a handful of keys in one indexed query and scores only the patients found,
so its cost depends on the size of the blocks, not on the number of patients.
"""
from __future__ import annotations

from typing import Iterable

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from broker.config import MatchingSettings
from broker.matching import Policy, Profile, Verdict, block_keys, judge, profile
from broker.store.models import Patient, PatientBlockKey, PatientIdentifier

_DEFAULT = MatchingSettings()
DEMOGRAPHIC_COLUMNS = (Patient.id, Patient.family_name, Patient.given_name, Patient.birth_date,
                       Patient.sex, Patient.address, Patient.phone)


def matching_settings(session: Session) -> MatchingSettings:
    """The [matching] settings the session was made with (Broker puts them in session.info)."""
    return session.info.get("matching", _DEFAULT)


def configure_matching(sessions: sessionmaker[Session], settings: MatchingSettings) -> None:
    """Make every session of the factory carry the site's [matching] settings."""
    sessions.configure(info={"matching": settings})


def policy_of(settings: MatchingSettings) -> Policy:
    """The matching engine's band policy from the [matching] settings."""
    return Policy(review_threshold=settings.review_threshold,
                  trusted_issuers=frozenset(i.strip().upper() for i in settings.trusted_issuers),
                  auto_link_demographics=settings.auto_link_demographics,
                  auto_threshold=settings.auto_threshold)


def patient_profile(patient: Patient) -> Profile:
    """The normalised profile of a patient row, identifiers included."""
    return profile(patient.family_name, patient.given_name, patient.birth_date, patient.sex,
                   patient.address, patient.phone,
                   [(i.value, i.issuer) for i in patient.identifiers])


def refresh_block_keys(session: Session, patient_id: int, prof: Profile) -> None:
    """Replace the patient's blocking keys with those of its current demographics."""
    session.execute(delete(PatientBlockKey).where(PatientBlockKey.patient_id == patient_id))
    keys = sorted(block_keys(prof))
    if keys:
        session.execute(insert(PatientBlockKey), [{"patient_id": patient_id, "key": k} for k in keys])


def load_profiles(session: Session, ids: Iterable[int], with_identifiers: bool = True,
                  live_only: bool = True) -> dict[int, Profile]:
    """Profiles of the given patients (merged-away ones left out when live_only)."""
    ids = list(ids)
    if not ids:
        return {}
    query = select(*DEMOGRAPHIC_COLUMNS).where(Patient.id.in_(ids))
    if live_only:
        query = query.where(Patient.merged_into_id.is_(None))
    rows = session.execute(query).all()
    idents: dict[int, list[tuple[str, str]]] = {}
    if with_identifiers:
        for pid, value, issuer in session.execute(
                select(PatientIdentifier.patient_id, PatientIdentifier.value, PatientIdentifier.issuer)
                .where(PatientIdentifier.patient_id.in_([r[0] for r in rows]))):
            idents.setdefault(pid, []).append((value, issuer))
    return {r[0]: profile(r[1], r[2], r[3], r[4], r[5], r[6], idents.get(r[0], ())) for r in rows}


def candidate_ids(session: Session, prof: Profile, limit: int) -> list[int]:
    """Patients sharing a blocking key with the profile, those sharing most keys first."""
    keys = list(block_keys(prof))
    if not keys:
        return []
    shared = func.count().label("shared")
    rows = session.execute(
        select(PatientBlockKey.patient_id, shared).where(PatientBlockKey.key.in_(keys))
        .group_by(PatientBlockKey.patient_id).order_by(shared.desc()).limit(limit))
    return [r[0] for r in rows]


def search(session: Session, prof: Profile, policy: Policy, limit: int = 200,
           exclude: Iterable[int] = ()) -> list[tuple[int, Verdict]]:
    """Candidates for a profile, judged, best first (every band, NONE included)."""
    skip = set(exclude)
    ids = [i for i in candidate_ids(session, prof, limit + len(skip)) if i not in skip]
    profiles = load_profiles(session, ids, with_identifiers=bool(policy.trusted_issuers))
    judged = [(pid, judge(prof, other, policy)) for pid, other in profiles.items()]
    judged.sort(key=lambda item: -item[1].comparison.total)
    return judged
