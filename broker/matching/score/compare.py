"""Field-by-field comparison of two profiles: a total score and the per-field scores behind it.

The total is a sum of points in the spirit of Fellegi-Sunter weights: agreement on a field that
rarely agrees by chance (birth date, given name) earns much; disagreement on a field that is
rarely wrong costs much (a different given name is what tells twins apart). A field missing on
either side is no evidence and scores 0 points.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler, Levenshtein
from rapidfuzz import fuzz

from broker.matching.score.normalize import PARTICLES, NamePart, Profile


@dataclass(frozen=True)
class Weight:
    agree: float      # points at full similarity
    disagree: float   # points at or below `low` similarity (negative)
    low: float = 0.0  # similarity at or below which the field counts as disagreeing
    high: float = 1.0  # similarity at or above which the field counts as agreeing


WEIGHTS: dict[str, Weight] = {
    "family_name": Weight(4.0, -3.0, 0.80, 0.94),
    "given_name": Weight(4.0, -6.0, 0.80, 0.94),
    "birth_date": Weight(5.0, -5.0, 0.0, 1.0),
    "sex": Weight(0.5, -2.0),
    "address": Weight(1.5, -1.5, 0.60, 0.90),
    "phone": Weight(2.0, -1.0, 0.70, 1.0),
}
SWAP_PENALTY = 0.5


@dataclass(frozen=True)
class FieldScore:
    similarity: float | None  # 0..1, None when a side is missing
    points: float
    note: str = ""
    level: str = ""  # the learned model's comparison level (broker.matching.score.levels)

    def as_dict(self) -> dict:
        """JSON-friendly form for the review queue."""
        sim = None if self.similarity is None else round(self.similarity, 3)
        out = {"similarity": sim, "points": round(self.points, 2), "note": self.note}
        if self.level:
            out["level"] = self.level
        return out


@dataclass(frozen=True)
class Comparison:
    total: float
    fields: dict[str, FieldScore] = field(default_factory=dict)
    probability: float | None = None  # match probability, when a learned model scored the pair

    def explain(self) -> dict[str, dict]:
        """Per-field scores as plain data."""
        return {name: score.as_dict() for name, score in self.fields.items()}


def points(name: str, similarity: float | None) -> float:
    """Points a field earns for a similarity: linear between its disagree and agree weights."""
    if similarity is None:
        return 0.0
    w = WEIGHTS[name]
    if similarity >= w.high:
        return w.agree
    if similarity <= w.low:
        return w.disagree
    return w.disagree + (w.agree - w.disagree) * (similarity - w.low) / (w.high - w.low)


def spelling_similarity(a: str, b: str) -> float:
    """1 for equal, 0.95 for one slip (substitution, drop, insertion, transposition), else the
    normalised edit similarity. Jaro-Winkler is not used for family names: it rates a shared
    prefix so highly that Nilsson and Nilssoner, different families, would look alike."""
    if a == b:
        return 1.0
    if min(len(a), len(b)) >= 4 and DamerauLevenshtein.distance(a, b) == 1:
        return 0.95
    return Levenshtein.normalized_similarity(a, b)


def family_similarity(a: NamePart, b: NamePart) -> float | None:
    """Family names: joined forms, forms without particles, or one double-barrelled part."""
    if a.empty or b.empty:
        return None
    best = max(spelling_similarity(a.joined, b.joined), spelling_similarity(a.core, b.core))
    if best < 0.95 and (len(a.tokens) > 1 or len(b.tokens) > 1):
        shared = set(a.tokens) & set(b.tokens) - PARTICLES
        if any(len(t) > 2 for t in shared):  # Smith-Jones ~ Smith
            best = max(best, 0.95)
    return best


def given_similarity(a: NamePart, b: NamePart) -> tuple[float | None, str]:
    """Given names: equal, nickname, initial, or spelling similarity of the call name."""
    if a.empty or b.empty:
        return None, ""
    if a.first == b.first or a.joined == b.joined:
        return 1.0, ""
    if a.canon == b.canon:
        return 0.97, "nickname"
    if a.initial or b.initial:
        return (0.9, "initial") if a.first[0] == b.first[0] else (0.0, "initial differs")
    if min(len(a.spelt), len(b.spelt)) >= 4 and DamerauLevenshtein.distance(a.spelt, b.spelt) == 1:
        return 0.94, "one letter differs"  # a slip of the keyboard, however short the name
    return max(JaroWinkler.similarity(a.first, b.first),
               JaroWinkler.similarity(a.spelt, b.spelt),
               JaroWinkler.similarity(a.canon, b.canon),
               JaroWinkler.similarity(a.joined, b.joined)), ""


def birth_date_similarity(a: str, b: str) -> tuple[float | None, str]:
    """Birth dates: equal, day and month swapped, one wrong digit, two digits transposed."""
    if not a or not b:
        return None, ""
    if a == b:
        return 1.0, ""
    if a[:4] + a[6:8] + a[4:6] == b:
        return 0.9, "day and month swapped"
    diffs = [i for i in range(8) if a[i] != b[i]]
    if len(diffs) == 1:
        return 0.85, "one digit differs"
    if len(diffs) == 2 and diffs[1] == diffs[0] + 1 and a[diffs[0]] == b[diffs[1]] \
            and a[diffs[1]] == b[diffs[0]]:
        return 0.85, "two digits transposed"
    if len(diffs) == 2:
        return 0.4, "two digits differ"
    if a[:4] == b[:4]:
        return 0.3, "same year"
    return 0.0, ""


def _names(a: Profile, b: Profile) -> tuple[FieldScore, FieldScore]:
    fam = family_similarity(a.family, b.family)
    giv, note = given_similarity(a.given, b.given)
    straight = points("family_name", fam) + points("given_name", giv)
    # Swapped: a's given field holds the family name and its family field the given name.
    sfam = family_similarity(a.given, b.family)
    sgiv, snote = given_similarity(a.family, b.given)
    swapped = points("family_name", sfam) + points("given_name", sgiv) - 2 * SWAP_PENALTY
    if sfam is not None and sgiv is not None and swapped > straight:
        return (FieldScore(sfam, points("family_name", sfam) - SWAP_PENALTY, "swapped with given"),
                FieldScore(sgiv, points("given_name", sgiv) - SWAP_PENALTY,
                           "swapped with family" + (f", {snote}" if snote else "")))
    return FieldScore(fam, points("family_name", fam)), FieldScore(giv, points("given_name", giv), note)


def _simple(name: str, similarity: float | None, note: str = "") -> FieldScore:
    return FieldScore(similarity, points(name, similarity), note)


def compare(a: Profile, b: Profile) -> Comparison:
    """Score two profiles field by field; the total is the sum of the fields' points."""
    family, given = _names(a, b)
    dob, dob_note = birth_date_similarity(a.birth_date, b.birth_date)
    sex = None if not a.sex or not b.sex else float(a.sex == b.sex)
    addr = None if not a.address or not b.address else \
        fuzz.token_sort_ratio(a.address, b.address) / 100.0
    tel = None if not a.phone or not b.phone else Levenshtein.normalized_similarity(a.phone, b.phone)
    fields = {
        "family_name": family, "given_name": given,
        "birth_date": _simple("birth_date", dob, dob_note),
        "sex": _simple("sex", sex), "address": _simple("address", addr),
        "phone": _simple("phone", tel),
    }
    return Comparison(round(sum(f.points for f in fields.values()), 2), fields)
