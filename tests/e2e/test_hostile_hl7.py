"""What a hospital network sends that is not a clean message: every answer names the message it
answers when its MSH can be read, wrong character sets are kept for reprocessing, and the
broker keeps serving."""
from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest
from sqlalchemy import select

from broker.cli import main
from broker.hl7.message import parse
from broker.hl7.mllp import frame
from broker.store.models import InboundMessage
from tests.support.dcmtk import echoscu, findscu
from tests.support.hl7client import send

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hl7"
ORDER = (FIXTURES / "orm_o01_v231_utf8.hl7").read_bytes()


def _answer(port: int, raw: bytes) -> tuple[str, str, str, str, str]:
    """(MSA-1, MSA-2, MSH-5, MSH-6, MSH-12) of the ACK to `raw`."""
    ack = parse(send(port, raw))
    return (ack.get("MSA", 1), ack.get("MSA", 2), ack.get("MSH", 5), ack.get("MSH", 6),
            ack.get("MSH", 12))


def _with_control_id(raw: bytes, control_id: str) -> bytes:
    return raw.replace(b"|MSG00042|", f"|{control_id}|".encode())


@pytest.mark.parametrize("name, raw, code", [
    ("latin-1 bytes declared as UTF-8",
     _with_control_id(ORDER, "BAD1").replace("Björk".encode(), "Björk".encode("latin-1")), "AE"),
    ("binary garbage inside PID",
     _with_control_id(ORDER, "BAD2").replace(b"\rPID|", b"\r\x00\x01\x7f\x02|PID|"), "AR"),
    ("broken MSH-2",
     _with_control_id(ORDER, "BAD3").replace(b"MSH|^~\\&|", b"MSH||"), "AR"),
    ("unknown segment separator",
     _with_control_id(ORDER, "BAD4").replace(b"\r", b"\x1e"), "AR"),
])
def test_an_unreadable_message_is_answered_naming_its_control_id(broker, name, raw, code):
    control_id = raw.split(b"|")[9].decode()
    assert _answer(broker.listeners.hl7[1], raw) == (code, control_id, "CERNER", "STMARYS",
                                                     "2.3.1")
    with broker.sessions() as session:
        row = session.scalars(select(InboundMessage)).one()
    assert (row.raw, row.control_id, row.sender) == (raw, control_id, "CERNER|STMARYS")


def test_lf_separators_and_trailing_nul_bytes_are_tolerated(broker):
    raw = _with_control_id(ORDER, "LF1").replace(b"\r", b"\n") + b"\n\x00\x00\x00"
    assert _answer(broker.listeners.hl7[1], raw)[:2] == ("AA", "LF1")


def test_a_wrong_character_set_is_answered_with_the_offset_and_reprocessed_with_the_right_one(
        broker, tmp_path, capsys):
    raw = ORDER.replace("Björk".encode(), "Björk".encode("latin-1"))
    ack = parse(send(broker.listeners.hl7[1], raw))
    offset = raw.index("ö".encode("latin-1"))
    assert ack.get("MSA", 1) == "AE" and f"byte {offset} (0xF6)" in ack.get("MSA", 3)
    with broker.sessions() as session:
        row = session.scalars(select(InboundMessage)).one()
    assert row.status == "FAILED"
    config = tmp_path / "broker.toml"
    config.write_text(f'[database]\nurl = "{broker.settings.database_url}"\n')
    assert main(["messages", "reprocess", str(row.id), "--config", str(config)]) == 1
    assert main(["messages", "reprocess", str(row.id), "--charset", "8859/1",
                 "--config", str(config)]) == 0
    assert "PROCESSED" in capsys.readouterr().out
    [item] = findscu(broker.listeners.dicom[1], ["PatientName", "AccessionNumber"])
    assert (str(item.PatientName), item.AccessionNumber) == ("Björk^Ingrid^M", "ACC778")


def _mutated(rng: random.Random, raw: bytes) -> bytes:
    """One realistic corruption of a message: flipped, inserted, deleted or repeated bytes,
    other separators, padding, a cut."""
    data = bytearray(raw)
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["flip", "insert", "delete", "lf", "nul", "cut", "dup", "charset"])
        at = rng.randrange(len(data))
        if kind == "flip":
            data[at] = rng.randrange(256)
        elif kind == "insert":
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif kind == "delete":
            del data[at:at + rng.randint(1, 12)]
        elif kind == "lf":
            data = bytearray(bytes(data).replace(b"\r", rng.choice([b"\n", b"\r\n"])))
        elif kind == "nul":
            data += b"\x00" * rng.randint(1, 6)
        elif kind == "cut":
            data = data[:max(at, 12)]
        elif kind == "dup":
            data[at:at] = data[at:at + rng.randint(1, 40)]
        else:
            data = bytearray(bytes(data).replace(b"UNICODE UTF-8", b"8859/1"))
    # MLLP itself cannot carry its block characters inside a message.
    return bytes(data).replace(b"\x0b", b"?").replace(b"\x1c", b"?")


def _readable_control_id(raw: bytes) -> str | None:
    """MSH-10 when the MSH segment can be read from the field separator at byte 4 alone."""
    if not raw.startswith(b"MSH") or len(raw) < 5 or raw[3:4].isalnum() or raw[3:4] in b"\r\n":
        return None
    fields = raw.replace(b"\n", b"\r").split(b"\r", 1)[0].split(raw[3:4])
    if len(fields) < 10:
        return None
    value = fields[9].strip(b"\x00\r\n\t ")
    text = value.decode("ascii", "replace")
    return text if value and value.isascii() and text.isprintable() else None


def _read_ack(sock: socket.socket) -> bytes:
    reply = b""
    while not reply.endswith(b"\x1c\r"):
        chunk = sock.recv(65536)
        assert chunk, "the broker closed the connection instead of answering"
        reply += chunk
    return reply.strip(b"\x0b\x1c\r")


def test_fuzzed_frames_each_get_an_ack_naming_their_control_id(broker):
    rng = random.Random(20261204)
    sources = sorted(FIXTURES.glob("*.hl7"))
    port = broker.listeners.hl7[1]
    checked = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for n in range(300):
            source = sources[n % len(sources)].read_bytes().split(b"\x1c")[0].strip(b"\x0b")
            raw = _mutated(rng, source.replace(b"|MSG", f"|F{n}-".encode(), 1))
            sock.sendall(frame(raw))
            ack = parse(_read_ack(sock))
            assert ack.get("MSA", 1) in ("AA", "AE", "AR")
            expected = _readable_control_id(raw)
            if expected is not None:
                assert ack.get("MSA", 2) == expected, raw[:120]
                checked += 1
    assert checked >= 200   # most mutations leave the MSH readable: the check is not vacuous
    assert echoscu(broker.listeners.dicom[1]).returncode == 0
    fresh = _with_control_id(ORDER, "AFTER").replace(b"778", b"999")
    assert parse(send(port, fresh)).get("MSA", 1) == "AA"
    assert any(i.AccessionNumber == "ACC999"
               for i in findscu(broker.listeners.dicom[1], ["AccessionNumber"]))
