"""Malformed Modality Worklist queries from a scanner nobody tested against: every C-FIND gets
matches or a failure status, and afterwards the broker still serves C-ECHO and new orders.

The identifiers are written as raw elements (pydicom RawDataElement), so wrong VRs, bad
lengths and garbage values reach the broker byte for byte, as a broken scanner sends them.
"""
from __future__ import annotations

import random
import struct
import warnings
from pathlib import Path

import pytest
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pynetdicom import AE
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import ModalityWorklistInformationFind

from broker.hl7.message import parse
from tests.support.dcmtk import echoscu, findscu
from tests.support.hl7client import send

# pydicom warns, on the broker's side, about every over-long value this test sends.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hl7"
ORDER = (FIXTURES / "orm_o01_v231_utf8.hl7").read_bytes()

# Explicit VR LE: these VRs carry a 4-byte length after two reserved bytes (PS3.5 7.1.2).
LONG_LENGTH_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
SPS = 0x00400100
CHARSET = 0x00080005
ITEM = 0xFFFEE000

# (tag, VR, value): value is bytes, or a list of items (each a list of elements) for SQ.
Element = tuple[int, str, object]


def template() -> list[Element]:
    """A valid MWL query: return keys on the patient, the order and one SPS item."""
    return [
        (0x00080050, "SH", b""), (0x00100010, "PN", b""), (0x00100020, "LO", b""),
        (0x00100030, "DA", b""), (0x00100040, "CS", b""), (0x0020000D, "UI", b""),
        (SPS, "SQ", [[(0x00080060, "CS", b""), (0x00400001, "AE", b""),
                      (0x00400002, "DA", b""), (0x00400003, "TM", b""),
                      (0x00400009, "SH", b"")]]),
    ]


BAD_DATES = [b"2026-13-45", b"20261340", b"-", b"--", b"2026", b"20261125-20261124", b"abc",
             b"\x00\x00", b"20260230", b"99999999-", b"-0", b"20261124\\20261125", b"2026112?"]
BAD_UIDS = [b"1..2", b"abc", b"1." * 40, b"1.2.3.", b"1.2.3\x00", b"0.1.02", b"*", b"1.2.?",
            b"\\", b"1.2.3\\1.2.4"]
ODD_CHARSETS = [b"ISO_IR 999", b"\\ISO 2022 IR 87", b"ISO 2022 IR 149", b"GB18030",
                b"ISO_IR 192", b"ISO_IR 100\\ISO_IR 126", b"\x1b$B", b"UNICODE UTF-8"]
ODD_NAMES = ["Müll*".encode("latin-1"), "Müll*".encode(), "山田*".encode("shift_jis"),
             b"\x1b$B;3ED\x1b(B*", b"\x1b$)C\xc0\xcc*", b"\xff\xfe\xfd", b"^^^^^^", b"=*=*",
             b"' OR 1=1 --", b"%_%", b"*" * 64, b"a\\b\\c\\*"]
WRONG_VRS = ["US", "UL", "SS", "FD", "OB", "SQ", "DA", "UI", "PN", "AT", "XX", "UN"]


def element_bytes(tag: int, vr: str, value: object) -> bytes:
    """One explicit VR little endian element, as it goes inside a sequence item."""
    data = value if isinstance(value, bytes) else items_bytes(value)
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode("latin-1")
    if vr in LONG_LENGTH_VRS:
        return head + b"\x00\x00" + struct.pack("<L", len(data)) + data
    return head + struct.pack("<H", len(data) & 0xFFFF) + data


def items_bytes(items: list[list[Element]]) -> bytes:
    """A sequence's items with explicit lengths."""
    out = b""
    for item in items:
        content = b"".join(element_bytes(*e) for e in sorted(item, key=lambda e: e[0]))
        out += struct.pack("<HHL", ITEM >> 16, ITEM & 0xFFFF, len(content)) + content
    return out


def raw_identifier(elements: list[Element]) -> Dataset:
    """A Dataset whose elements pydicom writes back exactly as given."""
    raw = {}
    for tag, vr, value in elements:
        data = value if isinstance(value, bytes) else items_bytes(value)
        raw[Tag(tag)] = RawDataElement(Tag(tag), vr, len(data), data, 0, False, True)
    ds = Dataset(raw)
    charset = dict((t, v) for t, _, v in elements).get(CHARSET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unknown character set is what this test sends
        terms = charset.decode("latin-1").split("\\") if isinstance(charset, bytes) else None
        encoding = convert_encodings(terms) if terms else default_encoding
    # Same encoding as the wire: pydicom then writes raw elements unchanged.
    ds.set_original_encoding(False, True, encoding)
    return ds


def mutate(rng: random.Random, elements: list[Element]) -> list[Element]:
    """One to three corruptions: wrong VRs, bad dates and UIDs, odd character sets, nested
    sequences, garbage values."""
    elements = list(elements)
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["vr", "date", "uid", "charset", "name", "nest", "garbage", "long",
                           "item", "sps_vr"])
        at = rng.randrange(len(elements))
        tag, vr, value = elements[at]
        if kind == "vr":
            new_vr = rng.choice(WRONG_VRS)
            data = value if isinstance(value, bytes) else items_bytes(value)
            elements[at] = (tag, new_vr, data if new_vr != "SQ" or data else rng.randbytes(13))
        elif kind == "date":
            dated = [i for i, e in enumerate(elements) if e[1] == "DA"]
            if dated:
                i = rng.choice(dated)
                elements[i] = (elements[i][0], "DA", rng.choice(BAD_DATES))
            else:
                elements.append((0x00100030, "DA", rng.choice(BAD_DATES)))
        elif kind == "uid":
            elements = [e for e in elements if e[0] != 0x0020000D]
            elements.append((0x0020000D, rng.choice(["UI", "UI", "LO"]), rng.choice(BAD_UIDS)))
        elif kind == "charset":
            elements = [e for e in elements if e[0] != CHARSET]
            elements.append((CHARSET, "CS", rng.choice(ODD_CHARSETS)))
        elif kind == "name":
            elements = [e for e in elements if e[0] != 0x00100010]
            elements.append((0x00100010, "PN", rng.choice(ODD_NAMES)))
        elif kind == "nest":
            depth = rng.randint(2, 8)
            inner: list[list[Element]] = [[(0x00400009, "SH", b"*")]]
            for _ in range(depth):
                inner = [[(SPS, "SQ", inner), (0x00080060, "CS", b"CT")]]
            elements = [e for e in elements if e[0] != SPS] + [(SPS, "SQ", inner)]
        elif kind == "garbage":
            elements[at] = (tag, vr if vr != "SQ" else "SQ", rng.randbytes(rng.randint(0, 301)))
        elif kind == "long":
            elements[at] = (tag, "LO", rng.choice([b"A", b"*", b"\\"]) * rng.randint(300, 9000))
        elif kind == "item":
            items = rng.choice([[], [[]], [[], []], [[(0x00400001, "AE", b"CT1")]] * 3])
            elements = [e for e in elements if e[0] != SPS] + [(SPS, "SQ", items)]
        else:
            elements = [e for e in elements if e[0] != SPS] + [(SPS, "SQ", [[
                (0x00400002, rng.choice(WRONG_VRS), rng.randbytes(rng.randint(0, 20))),
                (0x00400001, "AE", rng.choice([b"CT1", b"", b"\x00", b"*" * 40]))]])]
    return elements


def is_failure(status: int) -> bool:
    """A C-FIND failure status (PS3.4 C.4.1.1.4: 0xA700, 0xA900, 0xCxxx; PS3.7 C: 0x01xx)."""
    return status in (0xA700, 0xA900, 0x0122, 0x0106) or 0xC000 <= status <= 0xCFFF


def test_malformed_identifiers_get_matches_or_a_failure(broker):
    hl7_port, dicom_port = broker.listeners.hl7[1], broker.listeners.dicom[1]
    assert parse(send(hl7_port, ORDER)).get("MSA", 1) == "AA"
    rng = random.Random(20261216)
    ae = AE(ae_title="FUZZSCU")
    ae.add_requested_context(ModalityWorklistInformationFind, ["1.2.840.10008.1.2.1"])
    outcomes = {"matches": 0, "failure": 0, "empty": 0}
    assoc = ae.associate("127.0.0.1", dicom_port, ae_title="BROKER")
    try:
        for n in range(300):
            elements = mutate(rng, template())
            identifier = raw_identifier(elements)
            assert encode(identifier, False, True) is not None, elements
            assert assoc.is_established, f"query {n}: the broker dropped the association"
            answers = list(assoc.send_c_find(identifier, ModalityWorklistInformationFind))
            statuses = [status.get("Status") for status, _ in answers]
            assert statuses and None not in statuses, (n, elements)
            *pending, final = statuses
            assert all(s in (0xFF00, 0xFF01) for s in pending), (n, statuses)
            assert final == 0x0000 or is_failure(final), (n, hex(final), elements)
            outcomes["failure" if final else "matches" if pending else "empty"] += 1
    finally:
        assoc.release()
    # Neither answer is vacuous: many queries still match, many are refused.
    assert outcomes["matches"] >= 30 and outcomes["failure"] >= 30, outcomes
    assert echoscu(dicom_port).returncode == 0
    fresh = ORDER.replace(b"|MSG00042|", b"|AFTERFUZZ|").replace(b"778", b"999")
    assert parse(send(hl7_port, fresh)).get("MSA", 1) == "AA"
    assert any(i.AccessionNumber == "ACC999" for i in findscu(dicom_port, ["AccessionNumber"]))
