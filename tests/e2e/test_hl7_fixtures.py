"""Every fixture in fixtures/hl7/ sent over MLLP by the `hl7` package's client; the ACK codes
and the worklist DCMTK's findscu then reads back must equal the fixture's golden file.

A golden file fixtures/hl7/<name>.json holds {"acks": [MSA-1 per message], "worklist": [items]};
an item maps DICOM keywords (SPS attributes as "SPS.Keyword") to values; a value starting with
"re:" is a regular expression (for UIDs the broker generates).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.dcmtk import findscu
from tests.support.hl7client import send_and_read_ack

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hl7"
TOP_KEYS = ["PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
            "AccessionNumber", "RequestedProcedureID", "StudyInstanceUID",
            "ReferringPhysicianName", "RequestedProcedurePriority",
            "RequestedProcedureDescription"]
SPS_KEYS = ["Modality", "ScheduledStationAETitle", "ScheduledStationName",
            "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime",
            "ScheduledProcedureStepID", "ScheduledProcedureStepDescription",
            "ScheduledProcedureStepStatus", "ScheduledProcedureStepLocation"]
SPS = "ScheduledProcedureStepSequence[0]"


def fixture_messages(path: Path) -> list[bytes]:
    """The messages of a fixture file, each as sent (segment separators kept as written)."""
    data = path.read_bytes()
    parts = re.split(rb"(?:\r\n|\r|\n)+(?=MSH)", data)
    return [p.rstrip(b"\r\n") + b"\r" for p in parts if p.strip()]


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def observe(hl7_port: int, dicom_port: int, path: Path) -> dict:
    """Send the fixture's messages; the ACK codes and every worklist item, flattened."""
    acks = [send_and_read_ack(hl7_port, raw).get("MSA", 1) for raw in fixture_messages(path)]
    keys = TOP_KEYS + [f"{SPS}.{k}" for k in SPS_KEYS]
    items = []
    for ds in findscu(dicom_port, keys):
        item = {k: _text(ds.get(k)) for k in TOP_KEYS}
        sps = ds.ScheduledProcedureStepSequence[0]
        item.update({f"SPS.{k}": _text(sps.get(k)) for k in SPS_KEYS})
        items.append(item)
    items.sort(key=lambda i: (i["AccessionNumber"], i["RequestedProcedureID"],
                              i["SPS.ScheduledProcedureStepID"]))
    return {"acks": acks, "worklist": items}


def _matches(expected: dict, actual: dict) -> bool:
    if expected["acks"] != actual["acks"] or len(expected["worklist"]) != len(actual["worklist"]):
        return False
    for want, got in zip(expected["worklist"], actual["worklist"]):
        for key, value in want.items():
            if value.startswith("re:"):
                if not re.fullmatch(value[3:], got.get(key, "")):
                    return False
            elif got.get(key) != value:
                return False
    return True


FIXTURE_FILES = sorted(FIXTURES.glob("*.hl7"))


def test_there_are_at_least_25_fixtures_each_with_a_golden_file():
    assert len(FIXTURE_FILES) >= 25
    assert [p.name for p in FIXTURE_FILES if not p.with_suffix(".json").is_file()] == []


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.stem)
def test_fixture_produces_its_golden_worklist(broker, path):
    expected = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    actual = observe(broker.listeners.hl7[1], broker.listeners.dicom[1], path)
    assert _matches(expected, actual), json.dumps(actual, indent=1, ensure_ascii=False)
