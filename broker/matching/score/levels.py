"""Comparison levels: how far two profiles agree on each field, as a small closed vocabulary.

A learned model (broker.matching.score.model) attaches an m and a u probability to every level
of every field, so the levels say the kind of agreement (exact, a one-letter slip, a nickname,
day and month swapped...) and nothing about how much it is worth: that is learned from data.
MISSING (a side has no value) is no evidence and carries no weight.
"""
from __future__ import annotations

from rapidfuzz import fuzz
from rapidfuzz.distance import JaroWinkler, Levenshtein

from broker.matching.score.compare import birth_date_similarity, family_similarity, given_similarity
from broker.matching.score.normalize import NamePart, Profile

MISSING = "missing"
FIELDS = ("family_name", "given_name", "birth_date", "sex", "address", "phone")
# Levels of each field, best first; every pair of non-missing values falls in exactly one.
LEVELS: dict[str, tuple[str, ...]] = {
    "family_name": ("exact", "close", "similar", "swapped", "different"),
    "given_name": ("exact", "nickname", "close", "initial", "similar", "swapped", "different"),
    "birth_date": ("exact", "day_month_swapped", "one_slip", "two_digits", "same_year",
                   "different"),
    "sex": ("exact", "different"),
    "address": ("exact", "close", "similar", "two_parts", "one_part", "different"),
    "phone": ("exact", "close", "different"),
}
# What each level means, in the words an admin reads in the review queue.
WORDS: dict[str, str] = {
    "exact": "same", "close": "one letter differs", "similar": "similar spelling",
    "swapped": "swapped with the other name", "different": "different", "nickname": "nickname",
    "initial": "initial only", "day_month_swapped": "day and month swapped",
    "one_slip": "one digit differs or two transposed", "two_digits": "two digits differ",
    "same_year": "same year only", MISSING: "missing on one side",
}
FIELD_WORDS = {"family_name": {"swapped": "swapped with given"},
               "given_name": {"swapped": "swapped with family"},
               "address": {"close": "nearly the same", "similar": "partly the same",
                           "two_parts": "two of postcode, house number and street the same",
                           "one_part": "one of postcode, house number and street the same"},
               "phone": {"close": "one or two digits differ"}}


def describe(field: str, level: str) -> str:
    """The level of a field in words."""
    return FIELD_WORDS.get(field, {}).get(level) or WORDS.get(level, level)


def family_level(a: NamePart, b: NamePart) -> str:
    """Family names: same, one slip (or one shared part of a double name), similar, different."""
    sim = family_similarity(a, b)
    if sim is None:
        return MISSING
    if sim >= 1.0:
        return "exact"
    if sim >= 0.94:
        return "close"
    if sim >= 0.7 or JaroWinkler.similarity(a.joined, b.joined) >= 0.9:
        return "similar"
    return "different"


def given_level(a: NamePart, b: NamePart) -> str:
    """Given names: same, nickname, one slip, initial of the other, similar, different."""
    sim, note = given_similarity(a, b)
    if sim is None:
        return MISSING
    if sim >= 1.0:
        return "exact"
    if note == "nickname":
        return "nickname"
    if note == "initial":
        return "initial"
    if note == "initial differs":
        return "different"
    if sim >= 0.94 or Levenshtein.distance(a.first, b.first) == 1:
        return "close"
    if sim >= 0.85:
        return "similar"
    return "different"


def birth_level(a: str, b: str) -> str:
    """Birth dates: same, day and month swapped, one slip, two digits, same year, different."""
    sim, note = birth_date_similarity(a, b)
    if sim is None:
        return MISSING
    if sim >= 1.0:
        return "exact"
    return {"day and month swapped": "day_month_swapped", "one digit differs": "one_slip",
            "two digits transposed": "one_slip", "two digits differ": "two_digits",
            "same year": "same_year"}.get(note, "different")


def address_parts(address: str) -> tuple[str, str, str]:
    """Postcode (the last number of 4+ digits), house number (a leading number) and street
    (the first word that is not a number) of a folded address; "" for a part it lacks."""
    words = address.split()
    postcode = next((w for w in reversed(words) if w.isdigit() and len(w) >= 4), "")
    number = words[0] if words and words[0].isdigit() and words[0] != postcode else ""
    street = next((w for w in words if not w.isdigit()), "")
    return postcode, number, street


def address_level(a: str, b: str) -> str:
    """Addresses by their words in any order, then by the parts they share: a mistyped
    address of one person still shares its postcode, house number or street, which two
    strangers' addresses rarely do."""
    if not a or not b:
        return MISSING
    if a == b:
        return "exact"
    sim = fuzz.token_sort_ratio(a, b) / 100.0
    if sim >= 0.9:
        return "close"
    if sim >= 0.7 or fuzz.token_set_ratio(a, b) >= 90:
        return "similar"
    shared = sum(1 for x, y in zip(address_parts(a), address_parts(b)) if x and x == y)
    return "two_parts" if shared >= 2 else "one_part" if shared == 1 else "different"


def phone_level(a: str, b: str) -> str:
    """Phone numbers (their last nine digits)."""
    if not a or not b:
        return MISSING
    if a == b:
        return "exact"
    return "close" if Levenshtein.distance(a, b) <= 2 else "different"


def _names(a: Profile, b: Profile) -> tuple[str, str]:
    family, given = family_level(a.family, b.family), given_level(a.given, b.given)
    if family in ("exact", "close") and given in ("exact", "nickname", "close"):
        return family, given
    # Swapped: one record has the family name in the given field and the given name in the
    # family field. Counted only when both crossed names agree, which chance rarely does; looked
    # for only when they start alike (most candidates are strangers, and this is the scorer's
    # most frequent work).
    if a.given.joined[:1] != b.family.joined[:1] or a.family.joined[:1] != b.given.joined[:1]:
        return family, given
    crossed = (family_level(a.given, b.family), given_level(a.family, b.given))
    if crossed[0] in ("exact", "close") and crossed[1] in ("exact", "nickname", "close") \
            and (family, given) != ("exact", "exact"):
        return "swapped", "swapped"
    return family, given


def levels(a: Profile, b: Profile) -> tuple[str, ...]:
    """The comparison level of every field of FIELDS, in that order."""
    family, given = _names(a, b)
    sex = MISSING if not a.sex or not b.sex else ("exact" if a.sex == b.sex else "different")
    return (family, given, birth_level(a.birth_date, b.birth_date), sex,
            address_level(a.address, b.address), phone_level(a.phone, b.phone))
