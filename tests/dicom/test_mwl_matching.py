"""Every PS3.4 C.2.2.2 matching rule of the worklist, table-driven, on SQLite and PostgreSQL."""
from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import date

import pytest
from pydicom.dataset import Dataset
from sqlalchemy.orm import sessionmaker

from broker.config import WorklistSettings
from broker.dicom.query_match import InvalidQuery
from broker.dicom.worklist import QueryContext, find_rows
from broker.store.db import make_engine
from broker.store.migrate import upgrade
from tests.dicom.seed import SERVED, seed

_dbs = itertools.count(1)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def seeded(request, tmp_path_factory):
    """One seeded store per backend, shared by the read-only cases of this module."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('mwl') / 'broker.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database(f"mwl_match_{next(_dbs)}")
    engine = make_engine(url)
    upgrade(engine)
    sessions = sessionmaker(engine)
    with sessions() as session:
        seed(session)
    yield sessions
    engine.dispose()


def identifier(keys: dict[str, str]) -> Dataset:
    """A query identifier: 'sps.X' keys go into the one ScheduledProcedureStepSequence item."""
    ds, sps = Dataset(), Dataset()
    for key, value in keys.items():
        target, keyword = (sps, key[4:]) if key.startswith("sps.") else (ds, key)
        setattr(target, keyword, value)
    ds.ScheduledProcedureStepSequence = [sps]
    return ds


def matched(sessions, keys: dict[str, str], settings=WorklistSettings(), calling="",
            today=date(2026, 11, 24)) -> set[str]:
    with sessions() as session:
        rows = find_rows(session, identifier(keys), QueryContext(settings, calling, today))
    return {row["step_id"] for row in rows}


CASES = [
    ("universal: no keys gets every served step", {}, SERVED),
    ("universal: zero-length keys", {"PatientName": "", "sps.Modality": ""}, SERVED),
    ("PN single value, case-insensitive, non-ASCII", {"PatientName": "MÜLLER^JÜRGEN"}, {"S1"}),
    ("PN wild card *, lower-case query", {"PatientName": "mül*"}, {"S1"}),
    ("PN wild card: ASCII prefix", {"PatientName": "MUL*"}, {"S2"}),
    ("PN wild card ?", {"PatientName": "Müller^J?rgen"}, {"S1"}),
    ("PN lower-case data, upper-case query", {"PatientName": "SMITH*"}, {"S5"}),
    ("PN apostrophe", {"PatientName": "O'BRIEN*"}, {"S6"}),
    ("PN * alone is universal", {"PatientName": "*"}, SERVED),
    ("PN ideographic group", {"PatientName": "=山田^太郎"}, {"S3"}),
    ("PN ideographic wild card", {"PatientName": "=山田*"}, {"S3"}),
    ("PN phonetic group", {"PatientName": "==やまだ*"}, {"S3"}),
    ("PN all groups", {"PatientName": "YAMADA^TAROU=山田^太郎=やまだ^たろう"}, {"S3"}),
    ("PatientID single value", {"PatientID": "P1"}, {"S1"}),
    ("PatientID wild card", {"PatientID": "P*"}, SERVED),
    ("IssuerOfPatientID", {"IssuerOfPatientID": "OTHER"}, {"S2"}),
    ("PatientID with the wrong issuer", {"PatientID": "P1", "IssuerOfPatientID": "OTHER"}, set()),
    ("SQL LIKE metacharacters are literal", {"AccessionNumber": "A_*"}, {"S1"}),
    ("percent sign is literal", {"AccessionNumber": "A?1%"}, {"S1"}),
    ("list of UID matching", {"StudyInstanceUID": "1.2.3.1\\1.2.3.3"}, {"S1", "S3"}),
    ("CS single value", {"sps.Modality": "CT"}, {"S1", "S3", "S5"}),
    ("CS list read as any-of", {"sps.Modality": "CT\\MR"}, {"S1", "S2", "S3", "S5", "S6"}),
    ("CS lower case from a sloppy scanner", {"sps.Modality": "mr"}, {"S2", "S6"}),
    ("multi-valued stored AE title", {"sps.ScheduledStationAETitle": "CT2"}, {"S1", "S5"}),
    ("multi-valued stored AE title, second value", {"sps.ScheduledStationAETitle": "MR2"}, {"S6"}),
    ("AE list any-of", {"sps.ScheduledStationAETitle": "CT1\\MR1"}, {"S1", "S2", "S3", "S6"}),
    ("AE wild card", {"sps.ScheduledStationAETitle": "CT*"}, {"S1", "S3", "S5"}),
    ("DA single value", {"sps.ScheduledProcedureStepStartDate": "20261124"}, {"S1", "S2"}),
    ("DA range", {"sps.ScheduledProcedureStepStartDate": "20261124-20261125"}, {"S1", "S2", "S3"}),
    ("DA open start", {"sps.ScheduledProcedureStepStartDate": "-20261124"}, {"S1", "S2", "S5"}),
    ("DA open end", {"sps.ScheduledProcedureStepStartDate": "20261125-"}, {"S3", "S6"}),
    ("DA single date, TM range", {"sps.ScheduledProcedureStepStartDate": "20261124",
                                  "sps.ScheduledProcedureStepStartTime": "1000-1500"}, {"S2"}),
    ("C.2.2.2.5 combined date-time range",
     {"sps.ScheduledProcedureStepStartDate": "20261124-20261125",
      "sps.ScheduledProcedureStepStartTime": "1000-0900"}, {"S2", "S3"}),
    ("TM range alone: time of day on any date",
     {"sps.ScheduledProcedureStepStartTime": "0800-1000"}, {"S1", "S3", "S5"}),
    ("TM open end", {"sps.ScheduledProcedureStepStartTime": "1400-"}, {"S2"}),
    ("DT range", {"sps.ScheduledProcedureStepStartDateTime": "20261124093000-20261124100000"},
     {"S1"}),
    ("DT open end with a day", {"sps.ScheduledProcedureStepStartDateTime": "20261125-"},
     {"S3", "S6"}),
    ("birth date range", {"PatientBirthDate": "19600101-19750101"}, {"S1"}),
    ("PatientSex", {"PatientSex": "F"}, {"S5"}),
    ("status key narrows the served statuses", {"sps.ScheduledProcedureStepStatus": "ARRIVED"},
     {"S2"}),
    ("status key cannot reach an unserved status",
     {"sps.ScheduledProcedureStepStatus": "COMPLETED"}, set()),
    ("performing physician, case-insensitive wild card",
     {"sps.ScheduledPerformingPhysicianName": "jones*"}, {"S1"}),
    ("scheduled step ID", {"sps.ScheduledProcedureStepID": "S3"}, {"S3"}),
    ("several keys together", {"PatientName": "*", "sps.Modality": "CT",
                               "sps.ScheduledStationAETitle": "CT1",
                               "sps.ScheduledProcedureStepStartDate": "20261125"}, {"S3"}),
]


@pytest.mark.parametrize("keys,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_matching_rule(seeded, keys, expected):
    assert matched(seeded, keys) == expected


def test_sequence_matching_in_requested_procedure_code(seeded):
    ds = identifier({})
    code = Dataset()
    code.CodeValue = "CS2"
    ds.RequestedProcedureCodeSequence = [code]
    with seeded() as session:
        rows = find_rows(session, ds, QueryContext(WorklistSettings()))
    assert [row["step_id"] for row in rows] == ["S2"]


def test_results_are_sorted_by_start_and_capped(seeded):
    with seeded() as session:
        rows = find_rows(session, identifier({}), QueryContext(WorklistSettings()))
        capped = find_rows(session, identifier({}), QueryContext(WorklistSettings(max_results=2)))
    assert [r["step_id"] for r in rows] == ["S5", "S1", "S2", "S3", "S6"]
    assert [r["step_id"] for r in capped] == ["S5", "S1"]


SETTINGS_CASES = [
    ("exact names: matching case", {"case_insensitive_names": False}, {"PatientName": "Müller*"}, "",
     {"S1"}),
    ("exact names: other case misses", {"case_insensitive_names": False},
     {"PatientName": "müller*"}, "", set()),
    ("exact names: whole value with groups", {"case_insensitive_names": False},
     {"PatientName": "Yamada^Tarou"}, "", {"S3"}),
    ("served statuses", {"served_statuses": ("ARRIVED",)}, {}, "", {"S2"}),
    ("date window: today only", {"days_behind": 0, "days_ahead": 0}, {}, "", {"S1", "S2"}),
    ("date window: one day ahead", {"days_behind": 0, "days_ahead": 1}, {}, "", {"S1", "S2", "S3"}),
    ("AE rule: empty station key means the caller's own", {
        "calling_ae_rules": ("CT2: station=@calling",)}, {}, "CT2", {"S1", "S5"}),
    ("AE rule: an explicit station key wins", {"calling_ae_rules": ("CT2: station=@calling",)},
     {"sps.ScheduledStationAETitle": "MR1"}, "CT2", {"S2", "S6"}),
    ("AE rule: other callers unaffected", {"calling_ae_rules": ("CT2: station=@calling",)}, {},
     "MR1", SERVED),
    ("AE rule: wild-card caller with a modality", {"calling_ae_rules": ("*: modality=MR",)}, {},
     "ANY", {"S2", "S6"}),
]


@pytest.mark.parametrize("overrides,keys,calling,expected", [c[1:] for c in SETTINGS_CASES],
                         ids=[c[0] for c in SETTINGS_CASES])
def test_opt_in_settings(seeded, overrides, keys, calling, expected):
    settings = replace(WorklistSettings(), **overrides)
    assert matched(seeded, keys, settings, calling) == expected


INVALID = [
    ("birth date not a date", {"PatientBirthDate": "19721399"}, 0xC000),
    ("DA not a date", {"sps.ScheduledProcedureStepStartDate": "20261340"}, 0xC000),
    ("DA with wild card", {"sps.ScheduledProcedureStepStartDate": "2026112?"}, 0xC000),
    ("TM not a time", {"sps.ScheduledProcedureStepStartTime": "25x0"}, 0xC000),
    ("CS longer than 16", {"sps.Modality": "AVERYLONGMODALITYCODE"}, 0xC000),
    ("UI with letters", {"StudyInstanceUID": "1.2.abc"}, 0xC000),
    ("AE non-ASCII", {"sps.ScheduledStationAETitle": "CTé"}, 0xC000),
    ("SH list for a single-valued key", {"AccessionNumber": "A1\\A2"}, 0xC000),
    ("DT garbage", {"sps.ScheduledProcedureStepStartDateTime": "2026ab"}, 0xC000),
]


@pytest.mark.parametrize("keys,status", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_values_are_refused_with_a_status(seeded, keys, status):
    with pytest.raises(InvalidQuery) as caught:
        matched(seeded, keys)
    assert caught.value.status == status
    for value in keys.values():  # messages reach the log: they name the key, not the value
        assert value not in str(caught.value)


def test_two_step_items_do_not_fit_the_model(seeded):
    ds = identifier({})
    ds.ScheduledProcedureStepSequence.append(Dataset())
    with pytest.raises(InvalidQuery) as caught, seeded() as session:
        find_rows(session, ds, QueryContext(WorklistSettings()))
    assert caught.value.status == 0xA900

