"""Candidate search: the patients worth scoring against a profile, found through stored keys.

A search looks up the profile's blocking keys (broker.matching.score.blocking) in the indexed
patient_block_key table and scores only the patients found. It is bounded whatever the data:
each key contributes at most `per_key` patients (a birth date shared by hundreds of look-alikes
says little on its own), the patients sharing most keys are kept, and at most `limit` of them
are scored. Its cost depends on those bounds, not on the number of patients or the block sizes.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterable

from sqlalchemy import Select, bindparam, func, select, union_all
from sqlalchemy.orm import Session

from broker.config import MatchingSettings
from broker.matching.score import Policy, Profile, Verdict, block_keys, judge, profile
from broker.matching.score.model import Model
from broker.store.models import Patient, PatientBlockKey, PatientIdentifier

DEMOGRAPHIC_COLUMNS = (Patient.id, Patient.family_name, Patient.given_name, Patient.birth_date,
                       Patient.sex, Patient.address, Patient.phone)


def policy_of(settings: MatchingSettings, model: Model | None = None) -> Policy:
    """The matching engine's band policy from the [matching] settings: on the model's match
    probability when one is given, on the hand-set points otherwise."""
    return Policy(review_threshold=settings.review_threshold,
                  trusted_issuers=frozenset(i.strip().upper() for i in settings.trusted_issuers),
                  auto_link_demographics=settings.auto_link_demographics,
                  auto_threshold=settings.auto_threshold, model=model,
                  review_probability=settings.review_probability,
                  auto_probability=settings.auto_probability)


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
    if with_identifiers and rows:
        for pid, value, issuer in session.execute(
                select(PatientIdentifier.patient_id, PatientIdentifier.value, PatientIdentifier.issuer)
                .where(PatientIdentifier.patient_id.in_([r[0] for r in rows]))):
            idents.setdefault(pid, []).append((value, issuer))
    return {r[0]: profile(r[1], r[2], r[3], r[4], r[5], r[6], idents.get(r[0], ())) for r in rows}


@lru_cache(maxsize=128)
def _candidate_query(key_count: int) -> Select:
    """The candidate statement for `key_count` keys, built once: its parameters are bound, so
    SQLAlchemy's compiled cache serves every search with that many keys."""
    members = []
    for n in range(key_count):
        query = (select(PatientBlockKey.patient_id.label("pid"))
                 .where(PatientBlockKey.key == bindparam(f"key{n}"),
                        PatientBlockKey.patient_id.not_in(bindparam("exclude", expanding=True)))
                 .order_by(PatientBlockKey.patient_id).limit(bindparam("per_key")))
        # Each member is its own subquery: SQLite allows no LIMIT on a bare UNION member.
        capped = query.subquery()
        members.append(select(capped.c.pid))
    found = union_all(*members).subquery()
    shared = func.count().label("shared")
    return (select(found.c.pid, shared).group_by(found.c.pid)
            .order_by(shared.desc(), found.c.pid).limit(bindparam("limit")))


def candidate_ids(session: Session, prof: Profile, limit: int, per_key: int | None = None,
                  exclude: Iterable[int] = ()) -> list[int]:
    """Patients sharing a blocking key with the profile, those sharing most keys first.

    One statement reading at most `per_key` index entries per key (default: `limit`).
    """
    keys = sorted(block_keys(prof))
    if not keys or limit <= 0:
        return []
    params = {f"key{n}": key for n, key in enumerate(keys)}
    params.update(exclude=sorted(set(exclude)), limit=limit,
                  per_key=limit if per_key is None else per_key)
    return list(session.scalars(_candidate_query(len(keys)), params))


def search(session: Session, prof: Profile, policy: Policy, limit: int = 200,
           exclude: Iterable[int] = (), per_key: int | None = None) -> list[tuple[int, Verdict]]:
    """Candidates for a profile, judged, best first (every band, NONE included); at most
    `limit` are scored."""
    ids = candidate_ids(session, prof, limit, per_key, exclude)
    profiles = load_profiles(session, ids, with_identifiers=bool(policy.trusted_issuers))
    judged = [(pid, judge(prof, other, policy)) for pid, other in profiles.items()]
    judged.sort(key=lambda item: -item[1].comparison.total)
    return judged
