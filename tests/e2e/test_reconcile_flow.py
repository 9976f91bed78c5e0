"""A known patient arrives again over HL7 under another identifier with a typo: the review queue
catches it, and linking puts the new order on the surviving patient in the worklist at once."""
from pathlib import Path

from tests.support.dcmtk import findscu
from tests.support.hl7client import send_and_read_ack
from tests.support.matching import run_searches

from broker.matching.queue import list_matches
from broker.matching.review import link_match

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hl7"
SPS = "ScheduledProcedureStepSequence[0]"


def _second_registration() -> bytes:
    """The same woman registered at a clinic: new MRN, no SSN, given name mistyped."""
    raw = (FIXTURES / "orm_o01_v231_utf8.hl7").read_bytes()
    replacements = [
        (b"MSG00042", b"MSG00043"),
        (b"778899^^^STMARYS^MR~123-45-6789^^^SSA^SS", b"CL5521^^^CLINIC^MR"),
        (b"Bj\xc3\xb6rk^Ingrid^M", b"BJORK^Ingird"),
        (b"ORD778", b"ORD779"), (b"FIL778", b"FIL779"), (b"ACC778", b"ACC779"),
        (b"RP778", b"RP779"), (b"SPS778", b"SPS779"), (b"778899.1", b"778899.2"),
    ]
    for old, new in replacements:
        assert old in raw
        raw = raw.replace(old, new)
    return raw


def test_typo_under_another_identifier_lands_in_review_and_link_shows_survivor(broker):
    hl7_port, dicom_port = broker.listeners.hl7[1], broker.listeners.dicom[1]
    first = send_and_read_ack(hl7_port, (FIXTURES / "orm_o01_v231_utf8.hl7").read_bytes())
    second = send_and_read_ack(hl7_port, _second_registration())
    assert (first.get("MSA", 1), second.get("MSA", 1)) == ("AA", "AA")
    run_searches(broker.sessions)  # the scheduled job's work, after the ACKs

    with broker.sessions() as session:
        queue = list_matches(session)
    assert len(queue) == 1
    entry = queue[0]
    assert entry.incoming["identifiers"] == ["CL5521^^^CLINIC"]
    assert entry.candidate["identifiers"] == ["778899^^^STMARYS", "123-45-6789^^^SSA"]
    # Within one household (same family name and address) the family name is no evidence.
    assert entry.fields["birth_date"]["points"] > 0 and entry.fields["family_name"]["points"] >= 0
    assert entry.fields["family_name"]["level"] == "exact"
    assert entry.fields["given_name"]["note"] == "one letter differs"
    assert entry.source == "hl7" and entry.status == "OPEN"

    # Before the link the clinic order shows the clinic's identity.
    before = findscu(dicom_port, ["AccessionNumber=ACC779", "PatientID", "PatientName"])
    assert [(i.PatientID, str(i.PatientName)) for i in before] == [("CL5521", "BJORK^Ingird")]
    with broker.sessions.begin() as session:
        link_match(session, entry.id, actor="admin")
    after = findscu(dicom_port, ["AccessionNumber=ACC779", "PatientID", "PatientName"])
    assert [(i.PatientID, str(i.PatientName)) for i in after] == [("778899", "Björk^Ingrid^M")]
