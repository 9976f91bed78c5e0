import subprocess
import sys
from pathlib import Path

import pytest

from broker.config import ConfigError, load_settings

SCRIPT_KEYS = [  # keys that scripts outside the project set
    ("BROKER_DATABASE_URL", "postgresql+psycopg://u@db/broker", lambda s: s.database.url),
    ("BROKER_HL7_HOST", "0.0.0.0", lambda s: s.hl7.host),
    ("BROKER_HL7_PORT", "3575", lambda s: s.hl7.port),
    ("BROKER_DICOM_HOST", "10.1.2.3", lambda s: s.dicom.host),
    ("BROKER_DICOM_PORT", "4104", lambda s: s.dicom.port),
    ("BROKER_DICOM_AE_TITLE", "RIS_MWL", lambda s: s.dicom.ae_title),
    ("BROKER_WEB_HOST", "0.0.0.0", lambda s: s.web.host),
    ("BROKER_WEB_PORT", "9090", lambda s: s.web.port),
]


def test_embedded_defaults():
    s = load_settings(environ={}, default_file=None)
    assert s.database_url == "sqlite:///broker-data/broker.db"
    assert (s.hl7.host, s.hl7.port) == ("127.0.0.1", 2575)
    assert (s.dicom.host, s.dicom.port, s.dicom.ae_title) == ("127.0.0.1", 11112, "BROKER")
    assert (s.web.host, s.web.port) == ("127.0.0.1", 8080)


@pytest.mark.parametrize("name,value,read", SCRIPT_KEYS)
def test_environment_overrides(name, value, read):
    s = load_settings(environ={name: value}, default_file=None)
    assert str(read(s)) == value


def test_file_then_environment(tmp_path: Path):
    config = tmp_path / "site.toml"
    config.write_text('data_dir = "/var/lib/broker"\n[hl7]\nport = 2600\n'
                      '[worklist]\nserved_statuses = ["SCHEDULED"]\n')
    s = load_settings(config, environ={"BROKER_HL7_PORT": "2700"})
    assert s.hl7.port == 2700
    assert s.worklist.served_statuses == ("SCHEDULED",)
    assert s.database_url == "sqlite:////var/lib/broker/broker.db"


def test_default_file_is_read_when_present(tmp_path: Path):
    config = tmp_path / "broker.toml"
    config.write_text("[dicom]\nae_title = \"SITE_MWL\"\n")
    assert load_settings(environ={}, default_file=config).dicom.ae_title == "SITE_MWL"


@pytest.mark.parametrize("environ,message", [
    ({"BROKER_HL7_PORT": "abc"}, "BROKER_HL7_PORT"),
    ({"BROKER_DICOM_PORT": "70000"}, "dicom.port"),
    ({"BROKER_DICOM_AE_TITLE": "A_TITLE_FAR_TOO_LONG"}, "dicom.ae_title"),
    ({"BROKER_WEB_ENABLED": "maybe"}, "BROKER_WEB_ENABLED"),
    ({"BROKER_LOGGING_LEVEL": "LOUD"}, "logging.level"),
])
def test_wrong_values_name_the_key(environ, message):
    with pytest.raises(ConfigError) as err:
        load_settings(environ=environ, default_file=None)
    assert message in str(err.value)


def test_unknown_key_in_file(tmp_path: Path):
    config = tmp_path / "site.toml"
    config.write_text("[hl7]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"hl7\.prot .*unknown setting"):
        load_settings(config, environ={})


def test_cli_stops_with_one_line_and_status_2(tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "broker", "serve"], cwd=tmp_path,
                            env={"BROKER_HL7_PORT": "not-a-port", "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "broker: BROKER_HL7_PORT: 'not-a-port' is not valid (expected int)"]


def test_cli_reports_a_missing_config_file(tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "broker", "serve", "--config", "nope.toml"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "nope.toml: not found" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["db", "--help"],
                                  ["db", "upgrade", "--help"], ["demo", "--help"]])
def test_help_everywhere(args):
    result = subprocess.run([sys.executable, "-m", "broker", *args], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    assert "usage: broker" in result.stdout
