"""The learned matching model: comparison levels, weights, EM without labels, bands."""
import math
import random
from collections import Counter

import pytest

from broker.matching.model_store import default_model
from broker.matching.score import Band, Policy, profile
from broker.matching.score.bands import judge
from broker.matching.score.levels import FIELDS, LEVELS, MISSING, levels
from broker.matching.score.model import (
    Model, expectation_maximisation, fit, level_shares, name_frequencies, probability, score,
)

BASE = dict(family="Lindqvist", given="Anna", birth="19800512", sex_code="F",
            address_text="Storgatan 1 Uppsala", phone_text="018 555 1234")


def _levels(**changes):
    return dict(zip(FIELDS, levels(profile(**BASE), profile(**{**BASE, **changes}))))


@pytest.mark.parametrize("changes, field, level", [
    ({}, "family_name", "exact"),
    ({"family": "Lindqvst"}, "family_name", "close"),
    ({"family": "Lindqvistova"}, "family_name", "similar"),
    ({"family": "Okafor"}, "family_name", "different"),
    ({"family": ""}, "family_name", MISSING),
    ({"given": "Amna"}, "given_name", "close"),
    ({"given": "A."}, "given_name", "initial"),
    ({"given": "Maria"}, "given_name", "different"),
    ({"family": "Anna", "given": "Lindqvist"}, "family_name", "swapped"),
    ({"family": "Anna", "given": "Lindqvist"}, "given_name", "swapped"),
    ({"birth": "19801205"}, "birth_date", "day_month_swapped"),
    ({"birth": "19800513"}, "birth_date", "one_slip"),
    ({"birth": "19800521"}, "birth_date", "one_slip"),
    ({"birth": "19800101"}, "birth_date", "same_year"),
    ({"birth": "19620304"}, "birth_date", "different"),
    ({"birth": "00000000"}, "birth_date", MISSING),
    ({"sex_code": "M"}, "sex", "different"),
    ({"sex_code": "U"}, "sex", MISSING),
    ({"address_text": "Storgatan 1, Uppsala"}, "address", "exact"),
    ({"address_text": "Storgatan 11 Uppsala"}, "address", "close"),
    ({"address_text": "Kungsgatan 40 Lund"}, "address", "different"),
    ({"phone_text": "018 555 1243"}, "phone", "close"),
])
def test_comparison_levels(changes, field, level):
    assert _levels(**changes)[field] == level


def _toy_model(**overrides) -> Model:
    m = {f: {lv: (0.9 if lv == "exact" else 0.1 / (len(LEVELS[f]) - 1)) for lv in LEVELS[f]}
         for f in FIELDS}
    u = {f: {lv: (0.01 if lv == "exact" else 0.99 / (len(LEVELS[f]) - 1)) for lv in LEVELS[f]}
         for f in FIELDS}
    return Model(m, u, 0.01, **overrides)


@pytest.mark.parametrize("field, level, expected", [
    ("family_name", "exact", math.log2(0.9 / 0.01)),
    ("birth_date", "different", math.log2((0.1 / 5) / (0.99 / 5))),
    ("address", MISSING, 0.0),
])
def test_weight_is_log2_of_m_over_u_and_missing_is_no_evidence(field, level, expected):
    assert _toy_model().weight(field, level) == pytest.approx(expected)


@pytest.mark.parametrize("weight, expected", [(0.0, 0.5), (10.0, 1024 / 1025), (-10.0, 1 / 1025)])
def test_match_probability_of_a_match_weight(weight, expected):
    assert probability(weight) == pytest.approx(expected)


@pytest.mark.parametrize("family, sign", [("Smith", -1), ("Sondergeld", 1)])
def test_a_common_family_name_weighs_less_than_a_rare_one(family, sign):
    people = [profile("Smith", "Jo")] * 50 + [profile(f"Name{i:03d}x", "Jo") for i in range(49)] \
        + [profile("Sondergeld", "Jo")]
    freq = name_frequencies(people)
    model = _toy_model(tf=freq.tf, tf_floor=freq.floor, tf_mean=freq.mean)
    a = profile(family, "Anna", "19800512")
    adjusted = score(model, a, a).fields["family_name"].points
    assert sign * (adjusted - model.weight("family_name", "exact")) > 0.5


def test_every_field_explains_itself_in_points_and_words():
    model = default_model()
    a, b = profile(**BASE), profile(**{**BASE, "family": "Lindqvst", "birth": "19801205"})
    comparison = score(model, a, b)
    explained = comparison.explain()
    assert explained["family_name"]["note"].startswith("one letter differs")
    assert explained["birth_date"]["note"].startswith("day and month swapped")
    assert all(set(f) >= {"similarity", "points", "note"} for f in explained.values())
    assert comparison.total == pytest.approx(model.prior_weight + sum(
        f.points for f in comparison.fields.values()), abs=0.05)


def _simulated_patterns(rng: random.Random, truth_m, truth_u, matches: int, others: int):
    def draw(table):
        return tuple(rng.choices(list(table[f]), weights=list(table[f].values()))[0] for f in FIELDS)
    return Counter(draw(truth_m) for _ in range(matches)) + Counter(draw(truth_u) for _ in range(others))


def test_em_recovers_m_and_the_share_of_matches_without_labels():
    rng = random.Random(1)
    truth_m = {f: {lv: (0.85 if lv == "exact" else 0.15 / (len(LEVELS[f]) - 1)) for lv in LEVELS[f]}
               for f in FIELDS}
    truth_u = {f: {lv: (0.02 if lv == "exact" else 0.98 / (len(LEVELS[f]) - 1)) for lv in LEVELS[f]}
               for f in FIELDS}
    candidates = _simulated_patterns(rng, truth_m, truth_u, 2000, 8000)
    randoms = _simulated_patterns(rng, truth_m, truth_u, 0, 20000)
    result = expectation_maximisation(candidates, level_shares(randoms))
    assert result.prior == pytest.approx(0.2, abs=0.03)
    for f in ("given_name", "birth_date"):
        assert result.m[f]["exact"] == pytest.approx(0.85, abs=0.05)


def test_a_fitted_model_round_trips_through_its_stored_form():
    rng = random.Random(2)
    table = {f: {lv: 1 / len(LEVELS[f]) for lv in LEVELS[f]} for f in FIELDS}
    model = fit(_simulated_patterns(rng, table, table, 100, 100),
                _simulated_patterns(rng, table, table, 0, 200), info={"version": 3})
    again = Model.from_dict(model.as_dict())
    assert again.info["version"] == 3 and again.prior == pytest.approx(model.prior)
    assert again.weight("sex", "exact") == pytest.approx(model.weight("sex", "exact"), abs=1e-4)


TRUST = Policy(trusted_issuers=frozenset({"NHS"}), model=default_model(), review_probability=0.95)


@pytest.mark.parametrize("ids_a, ids_b, band, field_note", [
    # Two MRNs of one hospital: the ordinary duplicate, no evidence either way.
    ([("A1", "HOSP")], [("A2", "HOSP")], Band.REVIEW, None),
    # The enterprise number of a trusted issuer shared: linked automatically.
    ([("A1", "HOSP"), ("943", "NHS")], [("A2", "HOSP"), ("943", "NHS")], Band.AUTO,
     "same identifier of trusted issuer NHS"),
    # A trusted issuer's numbers that differ: evidence against, never a link.
    ([("943", "NHS")], [("555", "NHS")], None, "different identifiers of trusted issuer NHS"),
])
def test_only_a_trusted_issuers_identifier_is_evidence(ids_a, ids_b, band, field_note):
    a = profile(**BASE, identifiers=ids_a)
    b = profile(**{**BASE, "given": "Anne"}, identifiers=ids_b)
    verdict = judge(a, b, TRUST)
    plain = judge(profile(**BASE), profile(**{**BASE, "given": "Anne"}), TRUST)
    if band is not None:
        assert verdict.band is band
    if field_note is None:
        assert "identifier" not in verdict.comparison.fields
        assert verdict.comparison.total == plain.comparison.total
    else:
        assert verdict.comparison.fields["identifier"].note == field_note
    if "different" in (field_note or ""):
        assert verdict.comparison.total < plain.comparison.total and verdict.band is not Band.AUTO


@pytest.mark.parametrize("other, band", [
    ({"given": "Anne", "birth": "19801205"}, Band.REVIEW),           # two slips: a duplicate
    ({"given": "Erik", "sex_code": "M", "birth": "19780101"}, Band.NONE),  # her husband
    ({"given": "Maria"}, Band.NONE),                                 # her twin sister
])
def test_default_model_bands(other, band):
    policy = Policy(model=default_model(), review_probability=0.95)
    assert judge(profile(**BASE), profile(**{**BASE, **other}), policy).band is band


@pytest.mark.parametrize("changes, level", [
    ({"address_text": "7 Storgatan Kvarnbyhagen Norrtalje 75320"}, "one_part"),   # street
    ({"address_text": "1 Storgatan Kvarnbyhagen Norrtalje 75320"}, "two_parts"),  # number, street
    ({"address_text": "1 Lilla Vasterbrogatan Norrby 22350"}, "two_parts"),        # number, postcode
    ({"address_text": "9 Kungsgatan Kvarnbyhagen Lund 22350"}, "one_part"),        # postcode
    ({"address_text": "40 Kungsgatan Lund 75320"}, "different"),
])
def test_a_mistyped_address_is_judged_by_the_parts_it_shares(changes, level):
    a = profile(**{**BASE, "address_text": "1 Storgatan Uppsala 22350"})
    b = profile(**{**BASE, **changes})
    assert dict(zip(FIELDS, levels(a, b)))["address"] == level


def test_a_name_swap_is_one_error_counted_once():
    model = default_model()
    a = profile(**BASE)
    swapped = score(model, a, profile(**{**BASE, "family": "Anna", "given": "Lindqvist"}))
    fields = swapped.fields
    assert fields["family_name"].level == fields["given_name"].level == "swapped"
    assert fields["given_name"].points == 0.0 and "counted once" in fields["given_name"].note
    # A swap is weaker evidence than two names agreeing in place, and still a duplicate.
    assert 0 < fields["family_name"].points < model.weight("family_name", "exact") \
        + model.weight("given_name", "exact")
    assert judge(a, profile(**{**BASE, "family": "Anna", "given": "Lindqvist"}),
                 Policy(model=default_model())).band is Band.REVIEW


def test_twins_without_contact_details_are_not_flagged_but_a_transposed_birth_date_is():
    policy = Policy(model=default_model(), review_probability=0.95)
    bare = {**BASE, "address_text": "", "phone_text": ""}
    twin = judge(profile(**bare), profile(**{**bare, "given": "Maria"}), policy)
    assert twin.band is Band.NONE
    assert "twins" in twin.comparison.fields["birth_date"].note
    typo = judge(profile(**BASE), profile(**{**BASE, "birth": "19800521"}), policy)
    assert typo.band is Band.REVIEW
    assert typo.comparison.fields["birth_date"].level == "one_slip"


def test_a_model_of_older_comparison_levels_is_refused_with_a_message_to_retrain():
    from broker.matching.score.model import OutdatedModel
    stored = default_model().as_dict()
    stored.pop("levels_version")
    with pytest.raises(OutdatedModel, match="broker patients train"):
        Model.from_dict(stored)
