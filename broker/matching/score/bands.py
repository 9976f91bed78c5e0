"""The three bands: automatic link, review, no match.

Automatic linking needs an identifier from a trusted issuer on both records (a national
patient number, say) and demographics that reach the review band on their own: a wrong national
number typed into a twin's record must not merge the twins. Demographics alone only ever reach
review unless a site turns automatic demographic linking on explicitly.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from broker.matching.score.compare import Comparison, FieldScore, compare
from broker.matching.score.normalize import Profile

IDENTIFIER_MATCH_POINTS = 10.0
IDENTIFIER_CONFLICT_POINTS = -5.0


class Band(str, Enum):
    AUTO = "auto"
    REVIEW = "review"
    NONE = "none"


@dataclass(frozen=True)
class Policy:
    """Thresholds of the bands (points of Comparison.total), from the [matching] settings."""
    review_threshold: float = 7.0
    trusted_issuers: frozenset[str] = frozenset()
    auto_link_demographics: bool = False
    auto_threshold: float = 20.0


@dataclass(frozen=True)
class Verdict:
    band: Band
    comparison: Comparison
    reason: str


def identifier_evidence(a: Profile, b: Profile, trusted: frozenset[str]) -> FieldScore | None:
    """Shared or conflicting identifiers of trusted issuers; None when there is no such evidence."""
    a_ids = {(v, i) for v, i in a.identifiers if i in trusted}
    b_ids = {(v, i) for v, i in b.identifiers if i in trusted}
    shared = a_ids & b_ids
    if shared:
        issuers = ",".join(sorted({i for _, i in shared}))
        return FieldScore(1.0, IDENTIFIER_MATCH_POINTS, f"same identifier of trusted issuer {issuers}")
    clash = {i for _, i in a_ids} & {i for _, i in b_ids}
    if clash:
        return FieldScore(0.0, IDENTIFIER_CONFLICT_POINTS,
                          f"different identifiers of trusted issuer {','.join(sorted(clash))}")
    return None


def judge(a: Profile, b: Profile, policy: Policy) -> Verdict:
    """Compare two profiles and place the pair in a band, with the reason in words."""
    demo = compare(a, b)
    evidence = identifier_evidence(a, b, policy.trusted_issuers)
    fields = dict(demo.fields)
    total = demo.total
    if evidence is not None:
        fields["identifier"] = evidence
        total = round(total + evidence.points, 2)
    comparison = Comparison(total, fields)
    if evidence is not None and evidence.points > 0:
        if demo.total >= policy.review_threshold:
            return Verdict(Band.AUTO, comparison, evidence.note)
        return Verdict(Band.REVIEW, comparison,
                       f"{evidence.note}, but demographics score only {demo.total}")
    if policy.auto_link_demographics and total >= policy.auto_threshold:
        return Verdict(Band.AUTO, comparison, f"demographics score {total} >= {policy.auto_threshold}")
    if total >= policy.review_threshold and _corroborated(demo):
        return Verdict(Band.REVIEW, comparison, _summary(comparison))
    return Verdict(Band.NONE, comparison, "")


def _corroborated(demo: Comparison) -> bool:
    """True when something besides the names was compared: a name alone proves nothing."""
    return any(f.similarity is not None for name, f in demo.fields.items()
               if name not in ("family_name", "given_name"))


def _summary(comparison: Comparison) -> str:
    agree = [n for n, f in comparison.fields.items() if f.points > 0]
    notes = [f"{n}: {f.note}" for n, f in comparison.fields.items() if f.note]
    text = f"score {comparison.total}; agree on {', '.join(agree) or 'nothing'}"
    return (text + "; " + "; ".join(notes))[:255] if notes else text[:255]
