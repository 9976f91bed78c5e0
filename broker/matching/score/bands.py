"""The three bands: automatic link, review, no match.

Automatic linking needs an identifier from a trusted issuer on both records (a national
patient number, say) and demographics that reach the review band on their own: a wrong national
number typed into a twin's record must not merge the twins. Demographics alone only ever reach
review unless a site turns automatic demographic linking on explicitly.

With a learned model (Policy.model) the bands are drawn on the match probability; without one
(the previous hand-set points, kept for comparison and for the intake's conflict test) on points.
Identifiers of issuers that are not trusted say nothing either way: two records of one person in
one EHR normally carry two different MRNs of the same issuer, which is the ordinary duplicate.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from broker.matching.score.compare import Comparison, FieldScore, compare
from broker.matching.score.model import Model, probability, score
from broker.matching.score.normalize import Profile

IDENTIFIER_MATCH_POINTS = 10.0
IDENTIFIER_CONFLICT_POINTS = -5.0


class Band(str, Enum):
    AUTO = "auto"
    REVIEW = "review"
    NONE = "none"


@dataclass(frozen=True)
class Policy:
    """Thresholds of the bands, from the [matching] settings: match probabilities with a model,
    points of the hand-set scorer without one."""
    review_threshold: float = 7.0
    trusted_issuers: frozenset[str] = frozenset()
    auto_link_demographics: bool = False
    auto_threshold: float = 20.0
    model: Model | None = None
    review_probability: float = 0.95
    auto_probability: float = 0.9999


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
    if policy.model is not None:
        return _judge_model(a, b, policy, policy.model)
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


def _judge_model(a: Profile, b: Profile, policy: Policy, model: Model) -> Verdict:
    """The bands on the learned model's match probability."""
    demo = score(model, a, b)
    evidence = identifier_evidence(a, b, policy.trusted_issuers)
    fields, total = dict(demo.fields), demo.total
    if evidence is not None:
        fields["identifier"] = evidence
        total = round(total + evidence.points, 2)
    comparison = Comparison(total, fields, probability(total))
    demo_p = demo.probability or 0.0
    if evidence is not None and evidence.points > 0:
        if demo_p >= policy.review_probability:
            return Verdict(Band.AUTO, comparison, evidence.note)
        return Verdict(Band.REVIEW, comparison,
                       f"{evidence.note}, but demographics give a match probability of only "
                       f"{demo_p:.3f}")
    p = comparison.probability or 0.0
    if policy.auto_link_demographics and p >= policy.auto_probability:
        return Verdict(Band.AUTO, comparison,
                       f"match probability {p:.4f} >= {policy.auto_probability}")
    if p >= policy.review_probability and _corroborated(demo):
        return Verdict(Band.REVIEW, comparison, _summary(comparison))
    return Verdict(Band.NONE, comparison, "")


def _corroborated(demo: Comparison) -> bool:
    """True when something besides the names was compared: a name alone proves nothing."""
    return any(f.similarity is not None for name, f in demo.fields.items()
               if name not in ("family_name", "given_name"))


def _summary(comparison: Comparison) -> str:
    agree = [n for n, f in comparison.fields.items() if f.points > 0]
    notes = [f"{n}: {f.note}" for n, f in comparison.fields.items()
             if f.note and f.level not in ("exact", "missing")]
    text = f"score {comparison.total}; agree on {', '.join(agree) or 'nothing'}"
    if comparison.probability is not None:
        text = (f"match probability {comparison.probability:.3f} (weight {comparison.total} "
                f"bits); agree on {', '.join(agree) or 'nothing'}")
    return (text + "; " + "; ".join(notes))[:255] if notes else text[:255]
