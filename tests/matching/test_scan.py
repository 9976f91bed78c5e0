"""Import and scan through their functions, on SQLite and PostgreSQL."""
from pathlib import Path

from sqlalchemy import func, select

from broker.config import MatchingSettings
from broker.matching.importer import import_csv
from broker.matching.queue import list_matches
from broker.matching.review import dismiss_match
from broker.matching.scan import scan
from broker.store.models import AuditEvent, PatientBlockKey

CSV = """identifier,issuer,family_name,given_name,birth_date,sex,address,phone
A1,HOSP,van der Berg,Johanna,19550612,F,Kerkstraat 1 Utrecht,030 555 0101
A2,CLINIC,Berg,Johanna,19551206,F,,030 555 0101
B1,HOSP,Nguyen,Minh,19900101,M,,
B2,CLINIC,Minh,Nguyen,19900101,M,,
C1,HOSP,Berg,Pieter,19520711,M,Kerkstraat 1 Utrecht,030 555 0101
"""


def test_import_then_scan_queues_each_duplicate_once(sessions, tmp_path: Path):
    path = tmp_path / "p.csv"
    path.write_text(CSV, encoding="utf-8")
    report = import_csv(sessions, path)
    assert (report.created, report.errors) == (5, [])
    with sessions() as session:
        assert session.scalar(select(func.count(func.distinct(PatientBlockKey.patient_id)))) == 5
    result = scan(sessions, MatchingSettings(), output=tmp_path / "pairs.csv")
    assert result.queued == 2 and result.auto_linked == 0
    lines = (tmp_path / "pairs.csv").read_text().splitlines()
    assert lines[0] == "patient_a,patient_b,score,decision"
    assert {tuple(line.split(",")[:2]) for line in lines[1:]} == {("A1", "A2"), ("B1", "B2")}
    with sessions() as session:
        queue = list_matches(session)
        notes = {e.candidate["identifiers"][0]: e.fields for e in queue}
        assert notes["A1^^^HOSP"]["birth_date"]["note"].startswith("day and month swapped")
        assert notes["B1^^^HOSP"]["family_name"]["note"] == "swapped with given"
    with sessions.begin() as session:
        dismiss_match(session, queue[0].id, actor="admin")
    again = scan(sessions, MatchingSettings())
    assert again.queued == 0 and len(again.flagged) == 1  # the dismissed pair is not flagged
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)
                              .where(AuditEvent.action == "patients.scan")) == 2


def test_scan_links_a_trusted_identifier_spelt_two_ways_and_writes_auto(sessions, tmp_path: Path):
    path = tmp_path / "p.csv"
    path.write_text("identifier,issuer,family_name,given_name,birth_date,sex,address,phone\n"
                    "943 476 5919,NHS,Okafor,Ngozi,19881117,F,,\n"
                    "943 476 5919,nhs,Okafor,Ngozi,19881117,F,,\n"
                    "555,NHS,Okafor,Ngozi,19881117,F,,\n", encoding="utf-8")
    import_csv(sessions, path)
    result = scan(sessions, MatchingSettings(trusted_issuers=("NHS",)), output=tmp_path / "o.csv")
    assert result.auto_linked == 1
    rows = (tmp_path / "o.csv").read_text().splitlines()[1:]
    decisions = sorted(r.split(",")[-1] for r in rows)
    assert decisions == ["auto", "review", "review"]  # the 555 twin conflicts on NHS: review
    with sessions() as session:
        [linked] = list_matches(session, status="LINKED")
        assert linked.resolved_by == "matching" and linked.reason.startswith("automatic:")
