"""[matching] settings reach the engine's policy; candidate search uses the stored keys."""
import pytest

from broker.config import ConfigError, load_settings
from broker.domain.records import Identifier, PatientRecord, PersonName
from broker.matching.score import profile
from broker.matching.search import policy_of, search
from broker.store.patients import upsert_patient


def test_matching_settings_from_environment():
    settings = load_settings(path=None, default_file=None, environ={
        "BROKER_MATCHING_TRUSTED_ISSUERS": "nhs, SSA",
        "BROKER_MATCHING_REVIEW_THRESHOLD": "9.5",
        "BROKER_MATCHING_AUTO_LINK_DEMOGRAPHICS": "false"})
    policy = policy_of(settings.matching)
    assert policy.trusted_issuers == frozenset({"NHS", "SSA"})
    assert policy.review_threshold == 9.5 and policy.auto_link_demographics is False


def test_wrong_matching_setting_names_the_key():
    with pytest.raises(ConfigError, match="BROKER_MATCHING_REVIEW_THRESHOLD"):
        load_settings(path=None, default_file=None,
                      environ={"BROKER_MATCHING_REVIEW_THRESHOLD": "high"})


@pytest.mark.parametrize("family, given, birth", [
    ("Nakamura", "Yuki", "19920917"),      # exact
    ("Nakamura", "Yuki", ""),              # birth date missing: name-pair key
    ("Nakamura", "Yuki", "19921709"),      # not a date: treated as missing
    ("Nakamura", "Yuki", "19820917"),      # year mistyped: name-pair key
    ("Nakamuro", "Yuki", "19920917"),      # family typo: birth-date key
    ("Yuki", "Nakamura", "19920917"),      # swapped
    ("Nakamura", "Y.", "19921017"),        # initial, wrong month: family + year + initial
])
def test_search_finds_the_stored_patient(sessions, family, given, birth):
    with sessions.begin() as session:
        for n, name in enumerate(["Tanaka", "Suzuki", "Nakamura", "Nakagawa"]):
            upsert_patient(session, PatientRecord((Identifier(f"M{n}", "HOSP"),),
                                                  PersonName(name, "Yuki"), f"199{n}0917", "F"))
    with sessions() as session:
        found = [pid for pid, _ in search(session, profile(family, given, birth), policy_of(
            load_settings(path=None, default_file=None, environ={}).matching))]
        assert found and found[0] == 3
