"""The site mapping files: shipped defaults load; every error names the file and the line."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from broker.cli import main
from broker.mapping.procedures import MappingError
from broker.mapping.site import load_site_mappings, parse_address
from broker.resources import mappings_dir


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(mappings_dir(), target)
    return target


def test_shipped_mappings_load():
    mappings = load_site_mappings(mappings_dir())
    assert "CTHEAD" in mappings.procedures
    assert [str(a) for a in mappings.addresses("accession_number", "2.3.1", None)] == ["OBR-18"]
    assert [str(a) for a in mappings.addresses("accession_number", "2.5.1", None)] == [
        "IPC-1", "OBR-18"]
    assert [str(a) for a in mappings.addresses("end", "2.5.1", None)] == [
        "TQ1-8", "ORC-7.5", "OBR-27.5"]
    assert mappings.procedures["CTHEAD"].duration_minutes == 15
    override = mappings.sender("EPIC", "NORTHGEN")
    assert [str(a) for a in mappings.addresses("accession_number", "2.3.1", override)] == [
        "OBR-18", "ORC-3"]
    rule = mappings.station_for({"modality": "CT", "location": "er"})
    assert rule is not None and rule.station_ae_titles == ("CT_ER",)


def test_station_answers_as_station_for_and_remembers():
    mappings = load_site_mappings(mappings_dir())
    for values in [("CT", "", "er", "EPIC"), ("CT", "", "ward", "EPIC"), ("MR", "", "er", "")]:
        expected = mappings.station_for(dict(zip(
            ("modality", "procedure_code", "location", "sender"), values)))
        assert mappings.station(*values) is expected
        assert mappings.station(*values) is expected  # from the remembered answers
    assert mappings.station("CT", "", "er", "EPIC").station_ae_titles == ("CT_ER",)
    assert mappings.station("XA", "", "", "") is None


@pytest.mark.parametrize("text, address", [
    ("OBR-18", ("OBR", 18, 1, 0)), ("ORC-7.4", ("ORC", 7, 4, 0)),
    ("PID-3.4.1", ("PID", 3, 4, 1)), ("ZDS-1", ("ZDS", 1, 1, 0)),
])
def test_addresses(text, address):
    parsed = parse_address(text)
    assert (parsed.segment, parsed.field, parsed.component, parsed.subcomponent) == address


# (file, text appended or written, line the error must name, words it must contain)
BAD_FILES = [
    ("hl7_fields.toml", '\n[fields]\naccesion_number = ["OBR-18"]\n', None, "unknown field"),
    ("hl7_fields.toml", "[fields]\naccession_number = [\"OBR18\"]\n", 2, "not an HL7 address"),
    ("hl7_fields.toml", "[fields]\n\nmodality = 5\n", 3, "address or a list"),
    ("hl7_fields.toml", "[fields\n", None, "hl7_fields.toml"),
    ("senders.toml", '[senders."X"]\npatient_id_issuer = 1\n', 1, "must be a string"),
    ("senders.toml", '[senders."X"]\ncolour = "red"\n', 1, "unknown key"),
    ("senders.toml", '[senders."X".fields]\nstart = ["TQ1-x"]\n', 2, "not an HL7 address"),
    ("stations.toml", '# c\n[[rule]]\nmodality = "CT"\nstation_ae_titles = ["WAY_TOO_LONG_AE_TITLE"]\n',
     2, "bad station AE title"),
    ("stations.toml", '[[rule]]\nstation_ae_titles = ["CT1"]\n', 1, "matches nothing"),
    ("stations.toml", '[[rule]]\nmodality = "CT"\nroom = "1"\n', 1, "unknown key"),
    ("procedures.toml", '[procedures.X]\nmodality = 3\n', 1, "modality must be str"),
    ("procedures.toml", '# c\n[procedures.X]\nduration_minutes = -5\n', 2, "must not be negative"),
]


@pytest.mark.parametrize("name, text, line, words", BAD_FILES)
def test_errors_name_file_and_line(folder, name, text, line, words):
    path = folder / name
    path.write_text(text, encoding="utf-8") if not text.startswith("\n") else \
        path.write_text(path.read_text() + text.replace("[fields]", "[version.\"9.9\"]"))
    with pytest.raises(MappingError) as caught:
        load_site_mappings(folder)
    message = str(caught.value)
    assert str(path) in message and words in message
    if line is not None:
        assert f"{path}:{line}:" in message


def test_broker_mappings_check_command(folder, capsys, monkeypatch):
    monkeypatch.setenv("BROKER_HL7_MAPPINGS_DIR", str(folder))
    assert main(["mappings", "check"]) == 0
    assert "mappings ok" in capsys.readouterr().out
    (folder / "stations.toml").write_text('[[rule]]\nmodality = "CT"\nstation_name = 7\n')
    assert main(["mappings", "check"]) == 2
    assert f"{folder / 'stations.toml'}:1:" in capsys.readouterr().err


def test_a_broken_mapping_file_stops_start_up(folder, tmp_path):
    from dataclasses import replace

    from broker.service import Broker
    from tests.conftest import make_test_settings
    (folder / "senders.toml").write_text('[senders."X"]\nfields = 3\n')
    settings = make_test_settings(tmp_path)
    settings = replace(settings, hl7=replace(settings.hl7, mappings_dir=str(folder)))
    with pytest.raises(MappingError, match="senders.toml:1:"):
        Broker(settings)
