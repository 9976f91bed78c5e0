"""Every live patient's profile, and the pairs of patients the blocking rules bring together.

Shared by the scan (which scores the pairs) and training (which learns from them).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.matching.score import Profile, block_keys, profile
from broker.store.models import Patient, PatientIdentifier

# A key shared by more patients than this says nothing about any pair of them: it is skipped
# (and counted), so a scan's cost stays bounded by the blocks, not by the square of the register.
MAX_BLOCK = 1000


def load_live_profiles(session: Session, with_identifiers: bool) -> tuple[dict[int, Profile], dict[int, str]]:
    """Profiles of every live patient, and each one's primary identifier value."""
    primary: dict[int, str] = {}
    idents: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for pid, value, issuer in session.execute(
            select(PatientIdentifier.patient_id, PatientIdentifier.value, PatientIdentifier.issuer)
            .order_by(PatientIdentifier.id)).yield_per(20000):
        primary.setdefault(pid, value)
        if with_identifiers:
            idents[pid].append((value, issuer))
    profiles = {}
    for r in session.execute(
            select(Patient.id, Patient.family_name, Patient.given_name, Patient.birth_date,
                   Patient.sex, Patient.address, Patient.phone)
            .where(Patient.merged_into_id.is_(None)).order_by(Patient.id)).yield_per(20000):
        profiles[r[0]] = profile(r[1], r[2], r[3], r[4], r[5], r[6], idents.get(r[0], ()))
    return profiles, primary


def blocked_pairs(profiles: dict[int, Profile]) -> tuple[set[tuple[int, int]], int]:
    """Pairs of patients sharing a blocking key (lower id first), and how many oversized blocks
    were skipped. Identifier keys are left out: a shared identifier is found by the intake."""
    blocks: dict[str, list[int]] = defaultdict(list)
    for pid, prof in profiles.items():
        for key in block_keys(prof):
            if not key.startswith("I"):
                blocks[key].append(pid)
    pairs: set[tuple[int, int]] = set()
    skipped = 0
    for members in blocks.values():
        if len(members) < 2:
            continue
        if len(members) > MAX_BLOCK:
            skipped += 1
            continue
        members.sort()
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                pairs.add((a, b))
    return pairs, skipped


def candidates_per_record(pairs: Iterable[tuple[int, int]]) -> dict[int, int]:
    """How many candidates each patient is paired with."""
    counts: dict[int, int] = defaultdict(int)
    for a, b in pairs:
        counts[a] += 1
        counts[b] += 1
    return counts
