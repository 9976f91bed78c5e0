"""[worklist] and [dicom] settings of issue 4: rules parse, bad values stop start-up by name."""
import pytest

from broker.config import ConfigError, load_settings
from broker.dicom.rules import AeRule, RuleError, parse_rules


@pytest.mark.parametrize("entries,expected", [
    (("CT1: station=@calling",), {"CT1": AeRule(("@calling",), ())}),
    (("CT1: station=CT1,CT2 modality=ct",), {"CT1": AeRule(("CT1", "CT2"), ("CT",))}),
    (("*: modality=MR", "US1 : station=US1"), {"*": AeRule((), ("MR",)),
                                               "US1": AeRule(("US1",), ())}),
])
def test_rules_parse(entries, expected):
    assert parse_rules(entries) == expected


@pytest.mark.parametrize("entry", ["CT1 station=CT1", "CT1: colour=red", "CT1: station"])
def test_bad_rule_is_refused(entry):
    with pytest.raises(RuleError):
        parse_rules((entry,))


def test_calling_station_stands_for_the_caller():
    assert parse_rules(("*: station=@calling",))["*"].stations_for("MR7") == ["MR7"]


@pytest.mark.parametrize("environ,fragment", [
    ({"BROKER_WORKLIST_CALLING_AE_RULES": "CT1 station=CT1"}, "calling_ae_rules"),
    ({"BROKER_DICOM_TLS_CERT_FILE": "/x.pem"}, "tls_key_file"),
    ({"BROKER_WORKLIST_DAYS_AHEAD": "soon"}, "BROKER_WORKLIST_DAYS_AHEAD"),
    ({"BROKER_DICOM_ALLOWED_CALLING_ADDRESSES": "scanner-7"}, "allowed_calling_addresses"),
])
def test_bad_settings_stop_start_up_naming_the_key(environ, fragment):
    with pytest.raises(ConfigError) as caught:
        load_settings(path=None, environ=environ, default_file=None)
    assert fragment in str(caught.value)


def test_settings_from_the_environment():
    settings = load_settings(path=None, environ={
        "BROKER_WORKLIST_CALLING_AE_RULES": "CT1: station=@calling,*: modality=MR",
        "BROKER_WORKLIST_DAYS_BEHIND": "1",
        "BROKER_DICOM_ALLOWED_CALLING_ADDRESSES": "10.0.0.0/8,127.0.0.1"}, default_file=None)
    assert settings.worklist.days_behind == 1
    assert settings.dicom.allowed_calling_addresses == ("10.0.0.0/8", "127.0.0.1")
    assert settings.worklist.calling_ae_rules == ("CT1: station=@calling", "*: modality=MR")
