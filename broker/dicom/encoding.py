"""Encoding response values to bytes once, in the answer's transfer syntax and character set.

pydicom converts and validates every element it writes; for a worklist answer of many items that
is most of the cost. Here each value is encoded straight to bytes (PS3.5 7.1 data elements, 7.5
sequences with defined-length items) and handed to pydicom as raw elements it writes unchanged.
"""
from __future__ import annotations

import struct
from typing import Any

from pydicom.charset import encode_string
from pydicom.dataelem import DataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.valuerep import PersonName

TEXT_VRS = {"PN", "LO", "SH", "ST", "LT", "UT", "UC"}
_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
_ITEM = struct.pack("<HH", 0xFFFE, 0xE000)


def encode_value(vr: str, value: Any, codecs: list[str], implicit: bool) -> bytes:
    """A value's bytes, padded to even length (PS3.5 7.1.1); a sequence as its items."""
    if isinstance(value, DataElement):
        whole = encode_element(value.tag, value.VR, value, codecs, implicit)
        header = 8 if implicit or value.VR not in _LONG_VRS else 12
        return whole[header:]
    if vr == "SQ":
        return b"".join(_item(fields, codecs, implicit) for fields in value)
    if value is None or value == "" or value == []:
        return b""
    text = value if isinstance(value, str) else "\\".join(str(v) for v in value)
    if text.isascii():
        data = text.encode("ascii")
    elif vr == "PN":
        data = PersonName(text).encode(codecs)
    elif vr in TEXT_VRS:
        data = encode_string(text, codecs)
    else:
        data = text.encode("ascii", "replace")
    if len(data) % 2:
        data += b"\0" if vr == "UI" else b" "
    return data


def encode_element(tag: int, vr: str, value: Any, codecs: list[str], implicit: bool) -> bytes:
    """One whole data element: tag, (VR,) length and value, little endian."""
    if isinstance(value, DataElement):
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, implicit
        write_data_element(buffer, value, codecs)
        return buffer.getvalue()
    data = encode_value(vr, value, codecs, implicit)
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if implicit:
        return head + struct.pack("<I", len(data)) + data
    if vr in _LONG_VRS:
        return head + vr.encode() + b"\0\0" + struct.pack("<I", len(data)) + data
    return head + vr.encode() + struct.pack("<H", len(data)) + data


def _item(fields: list[tuple[int, str, Any]], codecs: list[str], implicit: bool) -> bytes:
    content = b"".join(encode_element(tag, vr, value, codecs, implicit)
                       for tag, vr, value in sorted(fields, key=lambda f: f[0]))
    return _ITEM + struct.pack("<I", len(content)) + content
