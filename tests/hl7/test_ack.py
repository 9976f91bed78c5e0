"""ACKs from hl7apy-built templates equal what hl7apy builds from scratch, and escape values."""
from __future__ import annotations

from datetime import datetime

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message as Hl7apyMessage
from hl7apy.parser import parse_message

from broker.hl7 import ack
from broker.hl7.message import parse

NOW = datetime(2026, 11, 23, 8, 15, 0)


def _from_scratch(header: ack.AckHeader, code: str, text: str, error, control: str) -> str:
    """The ACK hl7apy builds field by field (what the template must reproduce)."""
    text = ack._safe(text)  # hl7apy does not escape values: the broker does, in both paths
    msg = Hl7apyMessage("ACK", version=header.version, validation_level=VALIDATION_LEVEL.TOLERANT)
    msg.msh.msh_3 = "BROKER"
    msg.msh.msh_5, msg.msh.msh_6 = header.sending_application, header.sending_facility
    msg.msh.msh_7 = NOW.strftime("%Y%m%d%H%M%S")
    msg.msh.msh_9 = f"ACK^{header.trigger_event}^ACK"
    msg.msh.msh_10 = control
    msg.msh.msh_11 = header.processing_id
    msg.msa.msa_1, msg.msa.msa_2 = code, header.control_id
    if text:
        msg.msa.msa_3 = text
    if error:
        msg.add_segment("ERR")
        if header.version >= "2.5":
            msg.err.err_3 = f"{error[0]}^{error[1]}^HL70357"
            msg.err.err_4 = "E"
            if text:
                msg.err.err_8 = text
        else:
            msg.err.err_1 = f"^^^{error[0]}&{error[1]}&HL70357"
    return msg.to_er7()


@pytest.mark.parametrize("version", ["2.3.1", "2.4", "2.5.1"])
@pytest.mark.parametrize("code, text, error", [
    ("AA", "", None),
    ("AE", "order P1 is not known", ack.ERR_UNKNOWN_KEY),
    ("AR", "message type QRY^A19 is not supported", ack.ERR_UNSUPPORTED_MESSAGE_TYPE),
])
def test_template_ack_equals_hl7apy_built_from_scratch(version, code, text, error):
    header = ack.AckHeader("EHR", "HOSP", "MSG1", "O01", "P", version)
    built = ack.build_ack(header, code, text, error, now=NOW).decode()
    control = parse(built.encode()).get("MSH", 10)
    assert built == _from_scratch(header, code, text, error, control)
    parse_message(built, validation_level=VALIDATION_LEVEL.TOLERANT)  # hl7apy reads it back


def test_sender_values_with_delimiters_are_escaped_not_injected():
    header = ack.AckHeader("EH|R", "HO^SP", "MSG\r1", "O01", "P", "2.5.1")
    built = parse(ack.build_ack(header, "AE", "bad ~ value & more", ack.ERR_APPLICATION))
    assert [name for name, _ in built.segments] == ["MSH", "MSA", "ERR"]
    assert (built.get("MSH", 5), built.get("MSH", 6)) == ("EH|R", "HO^SP")
    assert built.get("MSA", 3) == "bad ~ value & more"


def test_each_ack_has_its_own_control_id():
    header = ack.AckHeader("EHR", "HOSP", "MSG1", "O01")
    ids = {parse(ack.build_ack(header, "AA")).get("MSH", 10) for _ in range(5)}
    assert len(ids) == 5
