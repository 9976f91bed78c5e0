"""A Fellegi-Sunter model learned without labels: m and u per field and level, log2(m/u) weights.

m is the probability of a level among pairs that are one person, u among pairs that are not.
Both are estimated by expectation-maximisation over the site's candidate pairs (the pairs the
blocking rules bring together), starting from u measured on random pairs, which are almost all
non-matches. A pair's match weight is the prior log-odds plus the sum of its fields' weights;
its match probability is 2^w / (1 + 2^w). A name that agrees exactly is weighed by how common
it is (term-frequency adjustment): a shared Smith is weaker evidence than a shared Sondergeld.

Pure: counts in, a Model out; the store keeps models as JSON (Model.as_dict / Model.from_dict).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from broker.matching.score.compare import Comparison, FieldScore
from broker.matching.score.levels import FIELDS, LEVELS, MISSING, describe, levels
from broker.matching.score.normalize import Profile

Pattern = tuple[str, ...]
TF_FIELDS = ("family_name", "given_name")
# Bounds of a weight: a level never seen among one class must not become infinite evidence.
PROB_FLOOR = 1e-5
TF_CLAMP = 5.0  # bits a name's frequency may add to or take from its exact-agreement weight
# The comparison levels a model's m and u belong to. A model of other levels cannot score
# (its tables lack levels, or mean other things by them): bump this whenever LEVELS change.
# 1: the first learned levels; 2: address levels by shared parts, a name swap counted once.
LEVELS_VERSION = 2


class OutdatedModel(ValueError):
    """A stored model fitted on other comparison levels; the message says to retrain."""


@dataclass(frozen=True)
class Model:
    """Learned (or shipped) m and u probabilities, the prior, and the names' frequencies."""
    m: Mapping[str, Mapping[str, float]]
    u: Mapping[str, Mapping[str, float]]
    prior: float                       # share of candidate pairs that are one person
    tf: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # field -> value -> share
    tf_floor: Mapping[str, float] = field(default_factory=dict)  # share of a name not in tf
    tf_mean: Mapping[str, float] = field(default_factory=dict)   # chance two records share a name
    info: Mapping[str, object] = field(default_factory=dict)     # version, date, pair counts...

    def weight(self, name: str, level: str, u_table: str = "") -> float:
        """log2(m/u) of a field's level (u from `u_table` when given and known); 0 for a
        missing value."""
        if level == MISSING:
            return 0.0
        u_of = self.u.get(u_table) or self.u[name]
        m = max(self.m[name].get(level, PROB_FLOOR), PROB_FLOOR)
        u = max(u_of.get(level, PROB_FLOOR), PROB_FLOOR)
        return math.log2(m / u)

    def tf_adjustment(self, name: str, value: str) -> float:
        """Bits added to an exact name agreement: log2(mean chance of agreeing / share of this name)."""
        table = self.tf.get(name)
        if not table or not value:
            return 0.0
        share = table.get(value, self.tf_floor.get(name, 0.0))
        if share <= 0:
            return 0.0
        mean = self.tf_mean.get(name, 0.0)
        if mean <= 0:
            return 0.0
        # A random pair agrees on this name with chance `share`, on some name with chance `mean`.
        return max(-TF_CLAMP, min(TF_CLAMP, math.log2(mean / share)))

    @property
    def prior_weight(self) -> float:
        """The prior log-odds of a candidate pair being one person, in bits."""
        p = min(max(self.prior, 1e-9), 1 - 1e-9)
        return math.log2(p / (1 - p))

    def as_dict(self) -> dict:
        """JSON-friendly form (what the store and the shipped default file hold)."""
        return {"levels_version": LEVELS_VERSION, "m": _plain(self.m), "u": _plain(self.u),
                "prior": self.prior,
                "tf": _plain(self.tf), "tf_floor": dict(self.tf_floor), "tf_mean": dict(self.tf_mean),
                "info": dict(self.info)}

    @classmethod
    def from_dict(cls, data: Mapping) -> Model:
        """The inverse of as_dict; OutdatedModel for a model of other comparison levels."""
        found = data.get("levels_version", 1)
        if found != LEVELS_VERSION:
            version = data.get("info", {}).get("version", "?")
            raise OutdatedModel(
                f"matching model version {version} was fitted on comparison levels "
                f"{found}, this broker compares with levels {LEVELS_VERSION}: run "
                f"`broker patients train` to fit a model this broker can use")
        return cls(m=data["m"], u=data["u"], prior=float(data["prior"]),
                   tf=data.get("tf", {}), tf_floor=data.get("tf_floor", {}),
                   tf_mean=data.get("tf_mean", {}), info=data.get("info", {}))


def _plain(table: Mapping[str, Mapping[str, float]]) -> dict:
    return {k: {lv: round(p, 8) for lv, p in v.items()} for k, v in table.items()}


def probability(match_weight: float) -> float:
    """Match probability of a match weight in bits."""
    if match_weight > 60:
        return 1.0
    return 1.0 / (1.0 + 2.0 ** -match_weight)


def tf_values(p: Profile) -> tuple[str, str]:
    """The name values whose frequencies adjust an exact agreement (family, call name)."""
    return p.family.joined, p.given.first


def score(model: Model, a: Profile, b: Profile) -> Comparison:
    """Compare two profiles with the model: per-field weights in bits, with the level in words."""
    found = levels(a, b)
    fields: dict[str, FieldScore] = {}
    total = model.prior_weight
    household = HOUSEHOLD_BIRTH in model.u and in_household(found)
    unknown_contact = HOUSEHOLD_BIRTH in model.u and contact_unknown(found)
    for name, level in zip(FIELDS, found):
        tabled = household and name in HOUSEHOLD_TABLED
        twins = unknown_contact and name == "birth_date"
        weight = model.weight(name, level, f"{name}|household" if tabled or twins else "")
        note = describe(name, level)
        if level == "swapped":
            # One error seen on two fields: weighed once, on the family name, against the
            # chance that a stranger's names agree crosswise.
            weight = swapped_weight(model.m, model.u) if name == "family_name" else 0.0
            if name == "given_name":
                note += " (counted once, with the family name)"
        elif twins and level != MISSING:
            note += ", no address or phone to compare (twins share a birth date)"
        elif tabled and name == "family_name":
            # Everyone in a household shares it: no evidence either way (never a penalty).
            weight = max(weight, 0.0)
            note += ", within one household"
        elif tabled and name == "birth_date" and level != MISSING:
            note += ", same household (twins share a birth date)"
        elif level == "exact" and name in TF_FIELDS:
            adjust = model.tf_adjustment(name, tf_values(a)[TF_FIELDS.index(name)])
            if abs(adjust) >= 0.5:
                note += ", common name" if adjust < 0 else ", rare name"
            weight += adjust
        total += weight
        similarity = None if level == MISSING else _similarity(name, level)
        fields[name] = FieldScore(similarity, weight, note, level)
    return Comparison(round(total, 2), fields, probability(total))


def _similarity(name: str, level: str) -> float:
    """A 0..1 rank of a level (1 for exact, 0 for different): the queue's similarity column."""
    order = [lv for lv in LEVELS[name] if lv != "swapped"]
    if level == "swapped":
        return 0.9
    if level not in order:
        return 0.0
    return round(1.0 - order.index(level) / max(len(order) - 1, 1), 3)


# ---------------------------------------------------------------- estimation

def level_shares(patterns: Mapping[Pattern, float]) -> dict[str, dict[str, float]]:
    """Share of each level among the non-missing values of each field (weighted counts)."""
    shares: dict[str, dict[str, float]] = {}
    for i, name in enumerate(FIELDS):
        counts: Counter[str] = Counter()
        for pattern, n in patterns.items():
            if pattern[i] != MISSING:
                counts[pattern[i]] += n
        shares[name] = _smoothed(name, counts)
    return shares


def _smoothed(name: str, counts: Mapping[str, float]) -> dict[str, float]:
    """Shares with a half-count added to every level, so none is exactly 0 or 1."""
    total = sum(counts.values()) + 0.5 * len(LEVELS[name])
    return {lv: (counts.get(lv, 0.0) + 0.5) / total for lv in LEVELS[name]}


@dataclass
class Fit:
    m: dict[str, dict[str, float]]
    u: dict[str, dict[str, float]]
    prior: float
    iterations: int
    converged: bool


# Address and phone belong to a household, not to a person: two members of one family agree on
# them as a duplicate does, and the blocking rules bring households together. Their u is
# therefore measured among candidate pairs that are surely two people (call name and birth date
# both differ), not among random pairs. The family name is a household field too while m is
# learned (so that a twin, who shares family, address and birth date, does not teach that a
# duplicate may change its given name), but is scored against random pairs' u with its
# frequency adjustment, as a person's name.
CONTACT_FIELDS = frozenset({"address", "phone"})
SESSION_HOUSEHOLD_FIELDS = CONTACT_FIELDS | {"family_name"}
APART_GIVEN = frozenset({"different"})
APART_BIRTH = frozenset({"different", "same_year", "two_digits"})
# Within one household a shared family name says nothing and a shared birth date is far less
# rare than between strangers (twins): pairs that agree on the family name and on an address or
# phone weigh these two fields against their u among the household pairs of different given
# names, kept as u["family_name|household"] and u["birth_date|household"] (no name frequency).
HOUSEHOLD_TABLED = ("family_name", "birth_date")
HOUSEHOLD_BIRTH = "birth_date|household"


def in_household(pattern: Pattern) -> bool:
    """True when the pair agrees on the family name and on an address or phone number."""
    return pattern[_FAMILY] in ("exact", "close") and (
        pattern[_ADDRESS] == "exact" or pattern[_PHONE] == "exact")


def contact_unknown(pattern: Pattern) -> bool:
    """True when the pair agrees on the family name and has no address or phone to compare:
    it may be one household, so its birth date is weighed as within one (twins share it)."""
    return pattern[_FAMILY] in ("exact", "close") and pattern[_ADDRESS] == MISSING \
        and pattern[_PHONE] == MISSING


def swapped_weight(m: Mapping, u: Mapping) -> float:
    """Bits of a family/given swap, one event: m of the swap over the chance that two
    strangers' names agree crosswise (both names agreeing, as between random pairs)."""
    chance = u["family_name"].get("exact", PROB_FLOOR) * u["given_name"].get("exact", PROB_FLOOR)
    return math.log2(max(m["family_name"].get("swapped", PROB_FLOOR), PROB_FLOOR)
                     / max(chance, PROB_FLOOR ** 2))


def _index(name: str) -> int:
    return FIELDS.index(name)


_FAMILY, _BIRTH, _ADDRESS, _PHONE = (_index(f) for f in ("family_name", "birth_date", "address",
                                                         "phone"))


@dataclass(frozen=True)
class Session:
    """One EM training session: the pairs it selects, the fields those pairs agree on by
    selection (left out of its E step), and the fields whose m it estimates."""
    name: str
    selects: Callable[[Pattern], bool]
    blocked: tuple[str, ...]
    estimates: tuple[str, ...]


# As Splink does it: the m of a field is learned among pairs selected on other fields, where its
# agreement is free to vary. Pairs born the same day teach the names, sex and contact; pairs
# with the same names teach the birth date.
SESSIONS = (
    Session("same birth date", lambda pt: pt[_index("birth_date")] == "exact", ("birth_date",),
            ("family_name", "given_name", "sex", "address", "phone")),
    Session("same names", lambda pt: pt[_index("family_name")] in ("exact", "close")
            and pt[_index("given_name")] in ("exact", "nickname", "close"),
            ("family_name", "given_name"), ("birth_date",)),
)


def _posterior(pattern: Pattern, m: Mapping, u: Mapping, prior: float,
               used: Iterable[int]) -> float:
    pm, pu = prior, 1.0 - prior
    household = HOUSEHOLD_BIRTH in u and in_household(pattern)
    twins = HOUSEHOLD_BIRTH in u and contact_unknown(pattern)
    for i in used:
        level = pattern[i]
        if level != MISSING:
            name = FIELDS[i]
            if level == "swapped":  # one event on two fields: counted once
                if name == "family_name":
                    pm *= m[name][level]
                    pu *= u["family_name"]["exact"] * u["given_name"]["exact"]
                continue
            tabled = (household and name in HOUSEHOLD_TABLED) or (twins and i == _BIRTH)
            pm *= m[name][level]
            pu *= u[f"{name}|household" if tabled else name][level]
    return pm / (pm + pu) if pm + pu > 0 else 0.0


def starting_m() -> dict[str, dict[str, float]]:
    """A starting m: one person's two records mostly agree, the better the level the likelier."""
    start = {}
    for name, lv in LEVELS.items():
        raw = {level: 0.9 if i == 0 else 0.1 / (i + 1) for i, level in enumerate(lv)}
        raw["different"] = 0.01
        total = sum(raw.values())
        start[name] = {k: v / total for k, v in raw.items()}
    return start


def em_session(patterns: Mapping[Pattern, int], session: Session, u: Mapping,
               max_iterations: int = 100, tolerance: float = 1e-6) -> tuple[dict, int, bool]:
    """m of the session's fields by EM over the patterns it selects, u held fixed."""
    items = [(pt, n) for pt, n in patterns.items() if session.selects(pt)]
    m: dict = starting_m()
    if not items:
        return m, 0, False
    used = [i for i, f in enumerate(FIELDS) if f not in session.blocked]
    prior, total = 0.5, sum(n for _, n in items)
    for iteration in range(1, max_iterations + 1):
        weights = {pt: n * _posterior(pt, m, u, prior, used) for pt, n in items}
        new_m = level_shares(weights)
        new_prior = min(max(sum(weights.values()) / total, 1e-6), 1 - 1e-6)
        change = max(abs(new_prior - prior), *(abs(new_m[f][lv] - m[f][lv])
                                               for f in FIELDS if f not in session.blocked
                                               for lv in LEVELS[f]))
        m = {f: (m[f] if f in session.blocked else new_m[f]) for f in FIELDS}
        prior = new_prior
        if change < tolerance:
            return m, iteration, True
    return m, max_iterations, False


def household_u(patterns: Mapping[Pattern, int], u_random: Mapping,
                fields: frozenset[str]) -> dict:
    """u of every field: surely-apart candidates' for `fields`, random pairs' for the others
    (and for all when the candidates hold too few surely-apart pairs); with the birth date's u
    among household pairs of different given names."""
    given = _index("given_name")
    apart = {pt: n for pt, n in patterns.items()
             if pt[given] in APART_GIVEN and pt[_BIRTH] in APART_BIRTH}
    shares = level_shares(apart)
    enough = sum(apart.values()) >= 50
    u = {f: dict(shares[f] if f in fields and enough else u_random[f]) for f in FIELDS}
    household = {pt: n for pt, n in patterns.items() if pt[given] in APART_GIVEN and in_household(pt)}
    if sum(household.values()) >= 50:
        shares = level_shares(household)
        for name in HOUSEHOLD_TABLED:
            u[f"{name}|household"] = shares[name]
    return u


def expectation_maximisation(patterns: Mapping[Pattern, int], u_random: Mapping,
                             max_iterations: int = 200, tolerance: float = 1e-7) -> Fit:
    """Fit m, u and the prior to unlabelled candidate pairs, given as counts of level patterns:
    m by the training sessions, u as household_u says, then the share of true pairs among the
    candidates by EM with m and u held."""
    session_u = household_u(patterns, u_random, SESSION_HOUSEHOLD_FIELDS)
    m, iterations, converged = starting_m(), 0, True
    for session in SESSIONS:
        learned, its, ok = em_session(patterns, session, session_u)
        for f in session.estimates:
            m[f] = learned[f]
        iterations, converged = iterations + its, converged and ok
    u = household_u(patterns, u_random, CONTACT_FIELDS)
    items = list(patterns.items())
    total = sum(n for _, n in items) or 1
    prior = 0.1
    for iteration in range(1, max_iterations + 1):
        new_prior = sum(n * _posterior(pt, m, u, prior, range(len(FIELDS))) for pt, n in items)
        new_prior = min(max(new_prior / total, 1e-9), 1 - 1e-9)
        done = abs(new_prior - prior) < tolerance
        prior = new_prior
        if done:
            return Fit(m, u, prior, iterations + iteration, converged)
    return Fit(m, u, prior, iterations + max_iterations, False)


def pattern_counts(pairs: Iterable[tuple[Profile, Profile]]) -> Counter[Pattern]:
    """How many pairs show each level pattern."""
    return Counter(levels(a, b) for a, b in pairs)


@dataclass
class Frequencies:
    tf: dict[str, dict[str, float]]
    floor: dict[str, float]
    mean: dict[str, float]


def name_frequencies(profiles: Iterable[Profile], keep: int = 5000) -> Frequencies:
    """Each field's commonest names with their share of records, the share assumed for any
    other name (that of the rarest one kept, or of a name seen once), and the chance that two
    random records share a name."""
    counts = {name: Counter() for name in TF_FIELDS}
    records = 0
    for p in profiles:
        records += 1
        for name, value in zip(TF_FIELDS, tf_values(p)):
            if value:
                counts[name][value] += 1
    out = Frequencies({}, {}, {})
    for name, counter in counts.items():
        seen = sum(counter.values())
        if not seen:
            continue
        common = counter.most_common(keep)
        out.tf[name] = {value: n / seen for value, n in common}
        out.floor[name] = common[-1][1] / seen if len(counter) > keep else 1 / seen
        out.mean[name] = sum((n / seen) ** 2 for n in counter.values())
    return out


def fit(candidate_patterns: Mapping[Pattern, int], random_patterns: Mapping[Pattern, int],
        frequencies: Frequencies | None = None, info: Mapping[str, object] | None = None) -> Model:
    """A model from the level patterns of candidate pairs (EM) and of random pairs (u).

    The prior is the share of true pairs among the candidates: a probability is only ever
    asked of a candidate pair (a scan's or a search's)."""
    u_random = level_shares(random_patterns)
    result = expectation_maximisation(candidate_patterns, u_random)
    details = {**(info or {}), "em_iterations": result.iterations, "em_converged": result.converged,
               "candidate_match_share": round(result.prior, 6), "u_random": _plain(u_random)}
    freq = frequencies or Frequencies({}, {}, {})
    return Model(result.m, result.u, result.prior, freq.tf, freq.floor, freq.mean, details)
