"""Blocking keys: the indexed values candidate search looks up instead of scanning every patient.

Several keys per patient, so that one error hides no true match: a wrong birth date still meets
its twin record on the name-pair key, a misspelt name on the birth-date key, a name swap on the
keys that do not say which name is which.
"""
from __future__ import annotations

from broker.matching.normalize import NamePart, Profile
from broker.matching.phonetic import soundex


def _codes(part: NamePart, given: bool) -> set[str]:
    if part.empty or part.initial:
        return set()
    if given:
        return {soundex(part.canon)}
    return {soundex(part.joined), soundex(part.core)}


def block_keys(p: Profile) -> set[str]:
    """The blocking keys of a profile (each at most 96 characters)."""
    keys: set[str] = set()
    year = p.birth_date[:4]
    if p.birth_date:
        keys.add("D" + p.birth_date)                      # birth date: survives any name error
    family, given = _codes(p.family, False), _codes(p.given, True)
    if year:
        for code in family | given:                       # name + year: survives day/month errors
            keys.add(f"N{code}{year}")                    # and, with no type tag, a name swap
    for f in family:
        for g in given:
            keys.add("P" + "".join(sorted((f, g))))       # name pair: survives a missing/wrong date
    if len(p.phone) >= 7:
        keys.add("T" + p.phone)
    for value, issuer in p.identifiers:
        keys.add(f"I{value}|{issuer}"[:96])
    return keys
