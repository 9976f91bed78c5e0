"""The scheduled end over real sockets: an HL7 order in, DCMTK's findscu asking for
Scheduled Procedure Step End Date/Time (0040,0004/0005) out."""
from pathlib import Path

from tests.e2e.test_hl7_fixtures import fixture_messages
from tests.support.dcmtk import findscu
from tests.support.hl7client import send_and_read_ack

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hl7"
SPS = "ScheduledProcedureStepSequence[0]"
END_KEYS = [f"{SPS}.ScheduledProcedureStepStartTime", "(0040,0100)[0].(0040,0004)",
            "(0040,0100)[0].(0040,0005)"]


def _send(broker, raw: bytes) -> None:
    assert send_and_read_ack(broker.listeners.hl7[1], raw).get("MSA", 1) == "AA"


def _times(broker, keys: list[str]) -> list[tuple]:
    """(start time, end date, end time) of every served item, as findscu reads them back."""
    items = findscu(broker.listeners.dicom[1], keys)
    result = []
    for item in items:
        sps = item.ScheduledProcedureStepSequence[0]
        result.append((sps.get("ScheduledProcedureStepStartTime"),
                       sps.get("ScheduledProcedureStepEndDate"),
                       sps.get("ScheduledProcedureStepEndTime")))
    return result


def test_v251_order_without_tq1_8_ends_after_the_procedure_duration(broker):
    # OMI^O23 for CTCHEST at 12:30 (TQ1-7); procedures.toml gives CTCHEST 20 minutes.
    [raw] = fixture_messages(FIXTURES / "omi_o23_v251_one_ipc.hl7")
    _send(broker, raw)
    assert _times(broker, END_KEYS) == [("123000", "20261124", "125000")]


def test_v251_order_with_tq1_8_is_served_that_end(broker):
    [raw] = fixture_messages(FIXTURES / "omi_o23_v251_one_ipc.hl7")
    tq1 = b"TQ1|1||||||202611241230||R"
    assert tq1 in raw
    _send(broker, raw.replace(tq1, b"TQ1|1||||||202611241230|202611241405|R"))
    assert _times(broker, END_KEYS) == [("123000", "20261124", "140500")]


def test_end_keys_come_back_only_when_asked(broker):
    [raw] = fixture_messages(FIXTURES / "omi_o23_v251_one_ipc.hl7")
    _send(broker, raw)
    assert _times(broker, [f"{SPS}.ScheduledProcedureStepStartTime"]) == [("123000", None, None)]


def test_unknown_procedure_asked_for_its_end_gets_zero_length(broker):
    # No duration and no TQ1-8: the keys asked for come back empty (K.6.1.2.2).
    [raw] = fixture_messages(FIXTURES / "omi_o23_v251_one_ipc.hl7")
    _send(broker, raw.replace(b"CTCHEST^", b"CTXYZ^"))
    assert _times(broker, END_KEYS) == [("123000", "", "")]


def test_xo_moves_the_end_with_the_start(broker):
    # NW for CTHEAD (15 minutes) at 09:00, then XO to 16:45 (fixture orm_o01_xo_change).
    new, change = fixture_messages(FIXTURES / "orm_o01_xo_change.hl7")
    _send(broker, new)
    assert _times(broker, END_KEYS) == [("090000", "20261124", "091500")]
    _send(broker, change)
    assert _times(broker, END_KEYS) == [("164500", "20261124", "170000")]
