"""Scoring and bands: each registration error still reaches review; other people do not."""
import pytest

from broker.matching.score import Band, Policy, block_keys, compare, judge, profile

BASE = dict(family="Müller", given="Hans", birth="19720304", sex_code="M",
            address_text="Hauptstraße 5, 10115 Berlin", phone_text="+49 30 1234567")
POLICY = Policy(review_threshold=8.0)


def person(**changes):
    return profile(**{**BASE, **changes})


# (error kind, changes to the base record, field that explains it, note expected on that field)
SAME_PERSON = [
    ("case", dict(family="MÜLLER", given="hans"), "family_name", ""),
    ("diacritics transliterated", dict(family="Mueller"), "family_name", ""),
    ("diacritics dropped", dict(family="Muller"), "family_name", ""),
    ("punctuation", dict(given="Hans."), "given_name", ""),
    ("nickname", dict(given="Johannes"), "given_name", "nickname"),
    ("initial", dict(given="H."), "given_name", "initial"),
    ("given and family swapped", dict(family="Hans", given="Müller"), "family_name",
     "swapped with given"),
    ("family typo", dict(family="Müler"), "family_name", ""),
    ("given typo", dict(given="Hnas"), "given_name", "one letter differs"),
    ("one wrong digit in birth date", dict(birth="19720305"), "birth_date", "one digit differs"),
    ("two digits transposed", dict(birth="19270304"), "birth_date", "two digits transposed"),
    ("day and month swapped", dict(birth="19720403"), "birth_date", "day and month swapped"),
    ("birth date missing", dict(birth=""), "birth_date", ""),
    ("sex unknown", dict(sex_code="U"), "sex", ""),
    ("address and phone missing", dict(address_text="", phone_text=""), "address", ""),
    ("moved house", dict(address_text="Lindenweg 2, München", phone_text="089 555 0101"),
     "address", ""),
]


@pytest.mark.parametrize("kind, changes, field, note", SAME_PERSON, ids=[r[0] for r in SAME_PERSON])
def test_registration_errors_reach_review(kind, changes, field, note):
    verdict = judge(person(**changes), person(), POLICY)
    assert verdict.band is Band.REVIEW, verdict.comparison.explain()
    assert verdict.comparison.fields[field].note == note
    assert block_keys(person(**changes)) & block_keys(person())  # candidate search finds it


SAME_PERSON_ALSO = [
    ("hyphen", dict(family="Al-Rashid"), dict(family="Alrashid")),
    ("space", dict(family="Al-Rashid"), dict(family="Al Rashid")),
    ("particle dropped", dict(family="van der Berg"), dict(family="Berg")),
    ("double-barrelled", dict(family="Smith-Jones"), dict(family="Smith")),
    ("initial for Mohammed", dict(family="Khan", given="Mohammed"), dict(family="Khan", given="M.")),
    ("nickname Bill", dict(given="William"), dict(given="Bill")),
]


@pytest.mark.parametrize("kind, a, b", SAME_PERSON_ALSO, ids=[r[0] for r in SAME_PERSON_ALSO])
def test_name_variants_reach_review(kind, a, b):
    verdict = judge(person(**a), person(**b), POLICY)
    assert verdict.band is Band.REVIEW, verdict.comparison.explain()


DIFFERENT_PEOPLE = [
    ("twin brother", dict(given="Peter")),
    ("twin sister", dict(given="Hanna", sex_code="F")),
    ("father, same name", dict(birth="19450911")),
    ("wife", dict(given="Greta", sex_code="F", birth="19740522")),
    ("stranger", dict(family="Okafor", given="Ngozi", birth="19881117", sex_code="F",
                      address_text="12 Mill Road, Leeds", phone_text="0113 496 0000")),
    ("namesake elsewhere, two digits of birth date differ", dict(
        birth="19750804", address_text="", phone_text="")),
]


@pytest.mark.parametrize("kind, changes", DIFFERENT_PEOPLE, ids=[r[0] for r in DIFFERENT_PEOPLE])
def test_other_people_are_no_match(kind, changes):
    verdict = judge(person(**changes), person(), POLICY)
    assert verdict.band is Band.NONE, verdict.comparison.explain()


def test_total_is_the_sum_of_field_points():
    result = compare(person(given="H.", birth="19720403"), person())
    assert result.total == pytest.approx(sum(f.points for f in result.fields.values()), abs=0.01)
    assert set(result.explain()) == {"family_name", "given_name", "birth_date", "sex", "address", "phone"}
    assert result.explain()["birth_date"]["similarity"] == 0.9


def test_missing_field_is_no_evidence():
    result = compare(person(birth="", sex_code=""), person())
    assert result.fields["birth_date"].points == 0 and result.fields["birth_date"].similarity is None
    assert result.fields["sex"].points == 0


def test_names_alone_are_not_enough_for_review():
    bare = dict(birth="", sex_code="", address_text="", phone_text="")
    assert judge(person(**bare), person(**bare), POLICY).band is Band.NONE
    assert judge(person(**{**bare, "sex_code": "M"}), person(**{**bare, "sex_code": "M"}),
                 POLICY).band is Band.REVIEW


def test_demographics_alone_never_link_automatically_by_default():
    verdict = judge(person(), person(), POLICY)
    assert verdict.band is Band.REVIEW


def test_demographic_auto_link_only_when_the_site_turns_it_on():
    policy = Policy(review_threshold=8.0, auto_link_demographics=True, auto_threshold=15.0)
    assert judge(person(), person(), policy).band is Band.AUTO
    assert judge(person(given="H."), person(), policy).band is Band.REVIEW


NATIONAL = Policy(review_threshold=8.0, trusted_issuers=frozenset({"NHS"}))


@pytest.mark.parametrize("a_ids, b_ids, changes, band, note", [
    ([("943", "NHS")], [("943", "nhs")], {}, Band.AUTO, "same identifier of trusted issuer NHS"),
    ([("943", "NHS")], [("943", "NHS")], dict(given="Peter"), Band.REVIEW, "same identifier"),
    ([("943", "HOSP")], [("943", "HOSP")], {}, Band.REVIEW, None),   # untrusted issuer
    ([("943", "NHS")], [("944", "NHS")], {}, Band.REVIEW, "different identifiers"),
    ([("943", "NHS")], [("944", "NHS")], dict(birth="19720305"), Band.REVIEW, "different"),
    ([("943", "NHS")], [("944", "NHS")], dict(given="Peter"), Band.NONE, "different"),  # twin
])
def test_identifier_evidence(a_ids, b_ids, changes, band, note):
    a = profile(**{**BASE, **changes, "identifiers": a_ids})
    b = profile(**{**BASE, "identifiers": b_ids})
    verdict = judge(a, b, NATIONAL)
    assert verdict.band is band, verdict.comparison.explain()
    if note is None:
        assert "identifier" not in verdict.comparison.fields
    else:
        assert note in verdict.comparison.fields["identifier"].note
