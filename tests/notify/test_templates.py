"""mappings/notify.toml: the shipped templates render, a wrong file is refused with file:line,
and the [notify]/[pacs] settings read from TOML and BROKER_* variables."""
import pytest

from broker.config import ConfigError, load_settings
from broker.hl7.message import parse
from broker.mapping.procedures import MappingError
from broker.notify.templates import escape, load_templates
from broker.resources import mappings_dir

SHIPPED = load_templates(None, mappings_dir())


def test_a_value_with_delimiters_is_escaped_not_structural():
    raw = SHIPPED.render("oru_r01", {"control_id": "C1", "patient_family_name": "O|Brien^X&Y~Z\\"})
    message = parse(raw)
    assert message.get("PID", 5, comp=1) == "O|Brien^X&Y~Z\\"
    assert message.control_id == "C1"
    assert escape("a|b") == "a\\F\\b"


@pytest.mark.parametrize("name,kind", [("orm_o01", "ORM^O01"), ("omi_o23", "OMI^O23"),
                                       ("oru_r01", "ORU^R01")])
def test_shipped_messages_render_with_their_status(name, kind):
    message = parse(SHIPPED.render(name, {"control_id": "X", "order_status": "IP",
                                          "accession_number": "ACC1"}))
    assert message.message_type == kind
    assert message.get("OBR", 18) == "ACC1"


@pytest.mark.parametrize("body,line,words", [
    ("[message.a]\nsegments = [\n  'MSH|^~\\&|{control_id}|{nope}',\n]\n", 3, "unknown value {nope}"),
    ("[message.a]\nsegments = ['PID|1']\n", 1, "first segment must be MSH"),
    ("[destination.\"*\"]\nstatus = \"orm_o01\"\n", 1, "no [message.orm_o01]"),
    ("[destination.\"*\"]\nstatus = \"fax\"\n", 1, "'fax' is not one of"),
    ("[sending]\n", 1, "unknown table"),
])
def test_a_wrong_file_is_refused_naming_file_and_line(tmp_path, body, line, words):
    (tmp_path / "notify.toml").write_text(body)
    with pytest.raises(MappingError) as refused:
        load_templates(tmp_path, mappings_dir())
    assert f"notify.toml:{line}:" in str(refused.value) and words in str(refused.value)


def test_settings_of_the_issue_come_from_the_environment():
    settings = load_settings(path=None, default_file=None, environ={
        "BROKER_PACS_AE_TITLE": "ORTHANC", "BROKER_PACS_HOST": "pacs", "BROKER_PACS_PORT": "4242",
        "BROKER_NOTIFY_HL7_TO": "ehr:2575, ehr2:6661", "BROKER_NOTIFY_TRIGGER": "ian",
        "BROKER_NOTIFY_FHIR": "true"})
    assert (settings.pacs.ae_title, settings.pacs.host, settings.pacs.port) == ("ORTHANC", "pacs", 4242)
    assert settings.notify.hl7_to == ("ehr:2575", "ehr2:6661")
    assert settings.notify.trigger == "ian" and settings.notify.fhir is True
    assert load_settings(path=None, default_file=None, environ={}).notify.trigger == "pacs"


@pytest.mark.parametrize("name,value", [("BROKER_NOTIFY_TRIGGER", "sometimes"),
                                        ("BROKER_NOTIFY_HL7_TO", "nohostport")])
def test_a_wrong_notify_setting_stops_start_up(name, value):
    with pytest.raises(ConfigError, match="notify"):
        load_settings(path=None, default_file=None, environ={name: value})
