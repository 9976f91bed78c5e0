"""`broker worklist import`: wlmscpfs and Orthanc folders into the store, then served to findscu."""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from sqlalchemy import func, select

from broker.cli import main
from broker.dicom.importer import order_request
from broker.service import Broker
from broker.store.models import Order, Patient, ScheduledStep
from tests.conftest import make_test_settings
from tests.support.dcmtk import findscu

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "worklist"
SPS = "ScheduledProcedureStepSequence[0]"


def run_import(tmp_path: Path, monkeypatch, capsys) -> tuple[int, str]:
    folder = tmp_path / "in"
    shutil.copytree(FIXTURES, folder, ignore=shutil.ignore_patterns("*.py", "dumps"))
    monkeypatch.setenv("BROKER_DATA_DIR", str(tmp_path / "data"))
    code = main(["worklist", "import", str(folder)])
    return code, capsys.readouterr().out


def test_import_counts_and_names_unreadable_files(tmp_path, monkeypatch, capsys):
    code, out = run_import(tmp_path, monkeypatch, capsys)
    assert code == 1  # some files could not be read
    lines = out.splitlines()
    skipped = sorted(Path(line.split(":")[0]).name for line in lines if "skipped" in line)
    assert skipped == ["broken.wl", "no_steps.wl"]
    assert "files: 8  imported: 6  already imported: 0  unreadable: 2" in out
    assert "patients: 5  orders: 6  requested procedures: 6  scheduled steps: 6" in out
    again = main(["worklist", "import", str(tmp_path / "in")])
    assert again == 1 and "already imported: 6" in capsys.readouterr().out


def test_imported_items_are_served_with_every_attribute(tmp_path, monkeypatch, capsys):
    run_import(tmp_path, monkeypatch, capsys)
    base = make_test_settings(tmp_path)
    broker = Broker(replace(base, hl7=replace(base.hl7, enabled=False),
                            web=replace(base.web, enabled=False)))
    broker.start()
    try:
        with broker.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Patient)) == 5
            assert session.scalar(select(func.count()).select_from(Order)) == 6
            statuses = dict(session.execute(select(ScheduledStep.step_id, ScheduledStep.status)).all())
        assert statuses["SPS192"] == "ARRIVED" and statuses["SPS100"] == "SCHEDULED"
        port = broker.listeners.dicom[1]
        old = findscu(port, [f"{SPS}.ScheduledStationAETitle=AA32", "PatientName", "MedicalAlerts",
                             "Allergies", "PatientBirthDate", "StudyInstanceUID",
                             f"{SPS}.ScheduledProcedureStepStartDate",
                             f"{SPS}.RequestedContrastAgent",
                             f"{SPS}.ScheduledPerformingPhysicianName"])
        assert len(old) == 1
        item = old[0]
        assert str(item.PatientName) == "Müller^Jürgen"
        assert (item.MedicalAlerts, item.Allergies) == ("METASTASIS", "TANTAL")
        assert item.PatientBirthDate == "16780304"
        assert item.StudyInstanceUID == "1.2.276.0.7230010.3.2.101"
        sps = item.ScheduledProcedureStepSequence[0]
        assert sps.ScheduledProcedureStepStartDate == "19951015"
        assert sps.RequestedContrastAgent == "BARIUMSULFAT"
        assert list(sps.ScheduledStationAETitle) == ["AA32", "AA33"]
        assert str(sps.ScheduledPerformingPhysicianName) == "Jöhnson"
        japanese = findscu(port, ["PatientID=JP87", "PatientName", "PatientWeight"])
        assert str(japanese[0].PatientName) == "Yamada^Tarou=山田^太郎=やまだ^たろう"
        assert findscu(port, ["PatientID=UTF192", "PatientWeight"])[0].PatientWeight == 61.5
        minimal = findscu(port, ["PatientID=MIN1", "AccessionNumber", "StudyInstanceUID",
                                 f"{SPS}.ScheduledStationAETitle"])
        assert minimal[0].AccessionNumber == "" and minimal[0].StudyInstanceUID
        assert len(findscu(port, ["PatientName=BRONT*", "AccessionNumber"])) == 2
    finally:
        broker.stop()


def test_files_made_by_dcmtk_dump2dcm_import_and_answer(tmp_path, monkeypatch, capsys):
    """A wlmscpfs folder as sites build it: dump text turned into .wl files by DCMTK's dump2dcm."""
    folder = tmp_path / "wlistdb" / "BROKER"
    folder.mkdir(parents=True)
    for dump in sorted((FIXTURES / "dumps").glob("*.dump")):
        subprocess.run(["/usr/bin/dump2dcm", "+te", str(dump), str(folder / f"{dump.stem}.wl")],
                       check=True, capture_output=True)
    (folder / "lockfile").touch()
    monkeypatch.setenv("BROKER_DATA_DIR", str(tmp_path / "data"))
    assert main(["worklist", "import", str(tmp_path / "wlistdb")]) == 0
    assert "imported: 2" in capsys.readouterr().out
    base = make_test_settings(tmp_path)
    broker = Broker(replace(base, hl7=replace(base.hl7, enabled=False),
                            web=replace(base.web, enabled=False)))
    broker.start()
    try:
        port = broker.listeners.dicom[1]
        found = findscu(port, [f"{SPS}.ScheduledStationAETitle=MR2", "PatientName", "MedicalAlerts",
                               "RequestedProcedurePriority", f"{SPS}.ScheduledProcedureStepDescription"])
        assert len(found) == 1
        assert str(found[0].PatientName) == "Schön^Renée"
        assert found[0].MedicalAlerts == "CONTRAST ALLERGY"
        assert found[0].RequestedProcedurePriority == "HIGH"
        assert found[0].ScheduledProcedureStepSequence[0].ScheduledProcedureStepDescription == \
            "Schädel nativ"
        bare = findscu(port, ["PatientID=DUMP02", "AccessionNumber", f"{SPS}.Modality"])
        assert bare[0].ScheduledProcedureStepSequence[0].Modality == "CR"
        # (0040,0004/0005) of the file land in scheduled_step.end_at and are served from it.
        with broker.sessions() as session:
            ends = dict(session.execute(select(ScheduledStep.step_id, ScheduledStep.end_at)).all())
        assert ends == {"DSPS01": datetime(1996, 2, 3, 8, 15), "1": None}
        end_keys = [f"{SPS}.ScheduledProcedureStepEndDate", f"{SPS}.ScheduledProcedureStepEndTime"]
        for patient, expected in (("DUMP01", ("19960203", "081500")), ("DUMP02", ("", ""))):
            sps = findscu(port, [f"PatientID={patient}", *end_keys])[0].ScheduledProcedureStepSequence[0]
            assert (sps.ScheduledProcedureStepEndDate, sps.ScheduledProcedureStepEndTime) == expected
    finally:
        broker.stop()


@pytest.mark.parametrize("end_date, end_time, expected", [
    ("20261124", "1145", datetime(2026, 11, 24, 11, 45)),
    ("20261125", "013000.5", datetime(2026, 11, 25, 1, 30)),   # past midnight, fraction dropped
    ("", "", None),
    ("20261124", "", None),        # a date alone is no instant: served from the file as it is
    ("20261124", "0900", None),    # before the 10:15 start: not this step's end
])
def test_imported_step_end(end_date, end_time, expected):
    sps = Dataset()
    sps.ScheduledProcedureStepStartDate, sps.ScheduledProcedureStepStartTime = "20261124", "101500"
    if end_date:
        sps.ScheduledProcedureStepEndDate = end_date
    if end_time:
        sps.ScheduledProcedureStepEndTime = end_time
    ds = Dataset()
    ds.PatientID, ds.ScheduledProcedureStepSequence = "X1", [sps]
    [step] = order_request(ds, Path("x.wl")).procedures[0].steps
    assert step.end == expected


def _item_file(path: Path, patient_id: str, accession: str) -> None:
    ds = Dataset()
    ds.PatientName, ds.PatientID, ds.AccessionNumber = f"Test^{patient_id}", patient_id, accession
    sps = Dataset()
    sps.Modality, sps.ScheduledStationAETitle = "CT", "CT1"
    sps.ScheduledProcedureStepStartDate, sps.ScheduledProcedureStepStartTime = "20261124", "0900"
    sps.ScheduledProcedureStepID = f"SPS-{patient_id}"
    ds.ScheduledProcedureStepSequence = [sps]
    ds.save_as(path, implicit_vr=False, little_endian=True)


def test_a_clashing_file_is_reported_and_leaves_nothing_while_the_others_are_stored(
        tmp_path, monkeypatch, capsys, database_url):
    folder = tmp_path / "wl"
    folder.mkdir()
    _item_file(folder / "a.wl", "CLASH1", "ACC1")
    _item_file(folder / "b.wl", "CLASH2", "ACC1")  # same accession number as a.wl
    _item_file(folder / "c.wl", "CLASH3", "ACC3")
    monkeypatch.setenv("BROKER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BROKER_DATABASE_URL", database_url)
    assert main(["worklist", "import", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "files: 3  imported: 2  already imported: 1  unreadable: 0" in out
    assert any(line.startswith(str(folder / "b.wl")) for line in out.splitlines())
    base = make_test_settings(tmp_path, database_url)
    broker = Broker(replace(base, hl7=replace(base.hl7, enabled=False),
                            web=replace(base.web, enabled=False)))
    broker.start()
    try:
        answers = findscu(broker.listeners.dicom[1], ["PatientID", "AccessionNumber"])
        assert sorted((a.PatientID, a.AccessionNumber) for a in answers) == [
            ("CLASH1", "ACC1"), ("CLASH3", "ACC3")]
        with broker.sessions() as session:  # b.wl's patient went with its order
            assert session.scalar(select(func.count()).select_from(Patient)) == 2
    finally:
        broker.stop()


def test_a_rerun_after_new_files_arrived_imports_only_those(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "in"
    (folder / "wlmscpfs" / "BROKER").mkdir(parents=True)
    for name in ("minimal.wl", "utf8.wl"):
        shutil.copy(FIXTURES / "wlmscpfs" / "BROKER" / name, folder / "wlmscpfs" / "BROKER" / name)
    monkeypatch.setenv("BROKER_DATA_DIR", str(tmp_path / "data"))
    assert main(["worklist", "import", str(folder)]) == 0
    assert "imported: 2  already imported: 0" in capsys.readouterr().out
    shutil.copytree(FIXTURES, folder, ignore=shutil.ignore_patterns("*.py", "dumps"),
                    dirs_exist_ok=True)
    assert main(["worklist", "import", str(folder)]) == 1  # broken.wl and no_steps.wl
    out = capsys.readouterr().out
    assert "files: 8  imported: 4  already imported: 2  unreadable: 2" in out
    assert "patients: 3  orders: 4  requested procedures: 4  scheduled steps: 4" in out
