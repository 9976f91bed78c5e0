"""Shared steps of the notification tests: an order over HL7, the worklist, an MPPS."""
from __future__ import annotations

from pathlib import Path

from broker.hl7.message import parse
from tests.support.dcmtk import findscu
from tests.support.hl7client import send
from tests.support.modality import Modality, finished, in_progress, scheduled_item

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hl7"
ORM = FIXTURES / "orm_o01_v231_utf8.hl7"
SPS = "ScheduledProcedureStepSequence[0]"
QUERY = [f"{SPS}.Modality=CT", f"{SPS}.ScheduledProcedureStepStartDate=20261124",
         f"{SPS}.ScheduledProcedureStepID", "PatientName", "PatientID", "AccessionNumber",
         "RequestedProcedureID", "StudyInstanceUID"]


def order_message(n: int = 778) -> bytes:
    """The sample ORM^O01 as order number `n` (its own placer, accession, study, control id)."""
    raw = ORM.read_bytes()
    for old, new in ((b"ORD778", f"ORD{n}"), (b"FIL778", f"FIL{n}"), (b"ACC778", f"ACC{n}"),
                     (b"RP778", f"RP{n}"), (b"SPS778", f"SPS{n}"), (b"MSG00042", f"MSG{n}"),
                     (b"778899.1", f"778899.{n}")):
        raw = raw.replace(old, new.encode())
    return raw


def order_and_worklist(broker, n: int = 778):
    """Send order `n` over MLLP; its worklist item, as DCMTK findscu gets it."""
    assert parse(send(broker.listeners.hl7[1], order_message(n))).get("MSA", 1) == "AA"
    keys = [k for k in QUERY if k != "AccessionNumber"] + [f"AccessionNumber=ACC{n}"]
    items = findscu(broker.listeners.dicom[1], keys, calling="CT1")
    assert len(items) == 1, items
    return items[0]


def reference_of(item):
    """The MPPS's Scheduled Step Attributes item for a worklist item."""
    sps = item.ScheduledProcedureStepSequence[0]
    return scheduled_item(item.StudyInstanceUID, item.AccessionNumber,
                          item.RequestedProcedureID, sps.ScheduledProcedureStepID)


def perform(broker, item, status: str = "COMPLETED", images: int = 3, modification=None):
    """MPPS N-CREATE IN PROGRESS then N-SET `status` for the worklist item; the N-SET list."""
    reference = reference_of(item)
    done = modification if modification is not None else finished(status, images=images)
    with Modality(broker.listeners.dicom[1], calling="CT1") as ct:
        created, uid = ct.create(in_progress([reference], patient_id=item.PatientID,
                                             name=str(item.PatientName)))
        assert created.Status == 0x0000
        assert ct.set(done, uid).Status == 0x0000
    return done
