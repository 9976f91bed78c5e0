"""IHE RAD-4 v2.5.1 orders whose Accession Identifier is only in IPC-1 (an EI: number, then
namespace): the worklist serves it with its issuer, finds each procedure by its own accession,
and a later XO changes the same order."""
from __future__ import annotations

from pathlib import Path

from tests.e2e.test_hl7_fixtures import fixture_messages
from tests.support.dcmtk import findscu
from tests.support.hl7client import send_and_read_ack

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hl7"


def _send(broker, name: str) -> list[str]:
    return [send_and_read_ack(broker.listeners.hl7[1], raw).get("MSA", 1)
            for raw in fixture_messages(FIXTURES / name)]


def test_the_accession_and_its_namespace_come_from_ipc_1(broker):
    assert _send(broker, "omi_o23_v251_accession_in_ipc.hl7") == ["AA", "AA"]
    [item] = findscu(broker.listeners.dicom[1], [
        "AccessionNumber=ACC-0002", "IssuerOfAccessionNumberSequence[0].LocalNamespaceEntityID",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime"])
    assert item.IssuerOfAccessionNumberSequence[0].LocalNamespaceEntityID == "NORTHCLINIC"
    assert item.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime == "113000"


def test_each_ipc_accession_is_its_own_worklist_item(broker):
    assert _send(broker, "omi_o23_v251_two_accessions.hl7") == ["AA"]
    found = {acc: findscu(broker.listeners.dicom[1], [f"AccessionNumber={acc}",
                                                       "RequestedProcedureID"])
             for acc in ("ACC-0003", "ACC-0004")}
    assert {acc: [i.RequestedProcedureID for i in items] for acc, items in found.items()} == \
        {"ACC-0003": ["RP0003A"], "ACC-0004": ["RP0003B"]}


def test_an_accession_taken_by_another_orders_procedure_is_refused(broker):
    assert _send(broker, "omi_o23_v251_two_accessions.hl7") == ["AA"]
    clash = (FIXTURES / "omi_o23_v251_accession_in_ipc.hl7").read_bytes().split(b"\r\r")[0] \
        .replace(b"ACC-0002", b"ACC-0004")
    ack = send_and_read_ack(broker.listeners.hl7[1], clash + b"\r")
    assert ack.get("MSA", 1) == "AE" and "ACC-0004" in ack.get("MSA", 3)
