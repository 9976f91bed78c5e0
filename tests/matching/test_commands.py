"""The reconciliation CLI in the exact forms outside scripts use."""
import csv
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from broker.cli import main
from broker.store.db import make_engine, make_session_factory
from broker.store.models import AuditEvent, MatchCandidate, Patient, PatientIdentifier

HEADER = "identifier,issuer,family_name,given_name,birth_date,sex,address,phone\n"
ROWS = [
    "A1,HOSP,Müller,Hans,19720304,M,Hauptstraße 5 Berlin,030 1234567",
    "B7,CLINIC,Mueller,Hans,1972-03-04,M,Hauptstrasse 5 Berlin,",
    "C3,HOSP,Okafor,Ngozi,19881117,F,,",
    "D4,HOSP,Al-Rashid,Omar,19600101,M,,",
    "E5,CLINIC,Alrashid,Omar,19600110,m,,",
]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BROKER_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def _sessions(workdir: Path):
    return make_session_factory(make_engine(f"sqlite:///{workdir / 'data' / 'broker.db'}"))


def _import(workdir: Path, rows: list[str], name: str = "patients.csv") -> int:
    path = workdir / name
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    return main(["patients", "import", str(path)])


@pytest.mark.parametrize("row, reason", [
    (",HOSP,Smith,Anna,19800101,F,,", "identifier is empty"),
    ("X1,HOSP,Smith,Anna,19800101,Q,,", "sex 'Q' is not one of M, F, O, U"),
    ("X1,HOSP," + "S" * 65 + ",Anna,,,,", "family_name is longer than 64 characters"),
    ("A1,HOSP,Smith,Anna,,,,", "identifier A1 (issuer HOSP) already on line 2"),
])
def test_import_reports_bad_row_with_line_number_and_imports_the_rest(workdir, capsys, row, reason):
    status = _import(workdir, ROWS[:1] + [row] + ROWS[1:])
    out, err = capsys.readouterr()
    assert status == 1
    assert f"patients.csv:3: {reason}" in err
    assert "imported 5 new, updated 0, rejected 1" in out
    with _sessions(workdir)() as session:
        assert sorted(session.scalars(select(PatientIdentifier.value))) == ["A1", "B7", "C3", "D4", "E5"]
        b7 = session.scalar(select(Patient).join(PatientIdentifier).where(PatientIdentifier.value == "B7"))
        assert (b7.birth_date, b7.address) == ("19720304", "Hauptstrasse 5 Berlin")


@pytest.mark.parametrize("birth", ["19801301", "00000000", "19800230", "19214019", "01/02/1980"])
def test_import_keeps_a_row_whose_birth_date_is_not_a_date_as_unknown_with_a_warning(
        workdir, capsys, birth):
    status = _import(workdir, ROWS[:1] + [f"X1,HOSP,Smith,Anna,{birth},F,,"] + ROWS[1:])
    out, err = capsys.readouterr()
    assert status == 0
    assert f"patients.csv:3: warning: birth_date '{birth}' is not a date" in err
    assert "imported 6 new, updated 0, rejected 0, 1 with warnings" in out
    with _sessions(workdir)() as session:
        x1 = session.scalar(select(Patient).join(PatientIdentifier).where(PatientIdentifier.value == "X1"))
        assert (x1.family_name, x1.birth_date, x1.extra) == ("Smith", "", {"birth_date_raw": birth})


def test_import_of_known_identifier_updates_and_empty_columns_are_allowed(workdir, capsys):
    assert _import(workdir, ROWS) == 0
    assert _import(workdir, ["A1,HOSP,Müller,Hans,19720304,M,Lindenweg 2 Berlin,", "Z9,,,,,,,"],
                   "second.csv") == 0
    assert "imported 1 new, updated 1, rejected 0" in capsys.readouterr().out
    with _sessions(workdir)() as session:
        a1 = session.scalar(select(Patient).join(PatientIdentifier).where(PatientIdentifier.value == "A1"))
        assert a1.address == "Lindenweg 2 Berlin"
        assert session.scalar(select(AuditEvent.detail).where(AuditEvent.action == "patients.import")
                              .order_by(AuditEvent.id.desc()).limit(1)) == {
            "created": 1, "updated": 1, "rejected": 0}


def test_import_of_the_same_file_again_changes_nothing(workdir, capsys):
    assert _import(workdir, ROWS) == 0
    with _sessions(workdir)() as session:
        before = session.execute(select(Patient.id, Patient.updated_at).order_by(Patient.id)).all()
    capsys.readouterr()
    assert _import(workdir, ROWS, "again.csv") == 0
    assert "imported 0 new, updated 5, rejected 0" in capsys.readouterr().out
    with _sessions(workdir)() as session:
        assert session.execute(select(Patient.id, Patient.updated_at).order_by(Patient.id)).all() == before
        assert session.scalars(select(MatchCandidate)).all() == []


def test_import_refuses_a_file_without_the_header(workdir, capsys):
    path = workdir / "bad.csv"
    path.write_text("id,name\n1,Smith\n")
    assert main(["patients", "import", str(path)]) == 2
    assert "header lacks identifier, issuer" in capsys.readouterr().err


def test_import_shows_progress(workdir, capsys):
    rows = [f"P{n},HOSP,Family{n},Given,19800101,F,," for n in range(12000)]
    assert _import(workdir, rows) == 0
    err = capsys.readouterr().err
    assert "import [" in err and "12000/12000" in err


def test_scan_queues_pairs_and_writes_them(workdir, capsys):
    _import(workdir, ROWS)
    assert main(["patients", "scan", "--output", str(workdir / "pairs.csv")]) == 0
    out = capsys.readouterr().out
    assert "scanned 5 patients" in out and "2 new queue entries" in out
    with open(workdir / "pairs.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["patient_a"], r["patient_b"], r["decision"]) for r in rows} == {
        ("A1", "B7", "review"), ("D4", "E5", "review")}
    assert all(float(r["score"]) >= 8 for r in rows)
    assert main(["patients", "scan"]) == 0  # a second scan queues nothing new
    assert "0 new queue entries" in capsys.readouterr().out


def test_list_link_dismiss_and_unmerge(workdir, capsys):
    _import(workdir, ROWS)
    main(["patients", "scan"])
    capsys.readouterr()
    assert main(["matches", "list"]) == 0
    listing = capsys.readouterr().out
    assert "2 open entries" in listing
    assert "#1 open duplicate" in listing and "Müller^Hans" in listing
    assert re.search(r"birth_date \+\d+\.\d \(same", listing)  # points, then the level in words
    with _sessions(workdir)() as session:
        first, second = session.scalars(select(MatchCandidate).order_by(MatchCandidate.id)).all()

    assert main(["matches", "link", str(first.id), "--actor", "alice"]) == 0
    assert "merged into" in capsys.readouterr().out
    assert main(["matches", "dismiss", str(second.id), "--actor", "alice"]) == 0
    assert main(["matches", "dismiss", str(second.id)]) == 1
    assert "is dismissed (by alice" in capsys.readouterr().err
    assert main(["matches", "list", "--status", "all"]) == 0
    listing = capsys.readouterr().out
    assert "linked" in listing and "dismissed" in listing and "resolved by alice" in listing

    merged = first.incoming_patient_id
    assert main(["patients", "unmerge", str(merged), "--actor", "alice"]) == 0
    assert f"patient #{merged} unmerged" in capsys.readouterr().out
    assert main(["patients", "unmerge", str(merged)]) == 1
    assert "is not merged" in capsys.readouterr().err
    with _sessions(workdir)() as session:
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.actor == "alice")
                                  .order_by(AuditEvent.id)).all()
        assert actions == ["patient.merge", "match.link", "match.dismiss", "patient.unmerge",
                           "match.unlink"]
    assert main(["patients", "scan"]) == 0  # neither the dismissed nor the unlinked pair returns
    assert "0 new queue entries" in capsys.readouterr().out


def test_unknown_match_is_an_error(workdir, capsys):
    assert main(["matches", "link", "99"]) == 1
    assert "no match #99" in capsys.readouterr().err


def test_conflict_is_listed_with_the_held_back_record(workdir, capsys):
    _import(workdir, ROWS[:1])
    _import(workdir, ["A1,HOSP,Okafor,Ngozi,19881117,F,,"], "second.csv")
    capsys.readouterr()
    assert main(["matches", "list"]) == 0
    out = capsys.readouterr().out
    assert "conflict" in out and "(held-back record) Okafor^Ngozi born 19881117" in out
    assert "#1 Müller^Hans born 19720304 sex M [A1^^^HOSP]" in out
