"""HL7 v2 data types read into the broker's terms: TS, XPN, XCN, CX, priority."""
from __future__ import annotations

import re
from datetime import datetime

from broker.domain.records import Identifier, PersonName, pn_group
from broker.hl7.message import Message


# DTM: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]
_TS = re.compile(r"^(\d{4,14})(?:\.\d{1,4})?(?:[+-]\d{4})?$")


class FieldError(ValueError):
    """A field's value is not of its data type; the message names the field."""


def parse_ts(value: str, where: str) -> datetime | None:
    """HL7 TS/DTM (YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]) as a naive local datetime."""
    if not value:
        return None
    if len(value) <= 14 and value.isascii() and value.isdigit():
        core = value  # the usual value: digits only, without fraction or offset
    else:
        found = _TS.match(value)
        core = found.group(1) if found else ""
    if len(core) in (4, 6):  # DTM precision to the year or month (HL7 v2.5.1 2.A.22)
        core = core + "0101"[len(core) - 4:]
    if len(core) not in (8, 10, 12, 14):
        raise FieldError(f"{where}: not a valid date/time ({len(value)} characters)")
    try:
        return datetime(int(core[:4]), int(core[4:6]), int(core[6:8]), int(core[8:10] or 0),
                        int(core[10:12] or 0), int(core[12:14] or 0))
    except ValueError:
        # The value itself is not quoted: it may be a birth date, and errors reach the log.
        raise FieldError(f"{where}: not a valid date/time ({len(value)} characters)") from None


def parse_date(value: str, where: str) -> str:
    """HL7 DT/TS as a DICOM DA string (YYYYMMDD); '' when empty or not precise to the day."""
    stamp = parse_ts(value[:8], where) if value else None
    if stamp is None or len(value[:8]) < 8:
        return ""  # a year or month alone is not a DA value; inventing the day would mislead
    return value[:8]  # eight digits that parse_ts found to be a real date


def xpn(msg: Message, segment: list[str] | None, number: int, rep: int = 1) -> PersonName:
    """An XPN (family^given^middle^suffix^prefix) as a PersonName; FN.1 is the surname's
    first subcomponent (v2.4+ splits FN into subcomponents)."""
    return _name(msg.components(segment, number, rep), 0)


def xcn_as_pn(msg: Message, segment: list[str] | None, number: int) -> str:
    """An XCN (id^family^given^middle^suffix^prefix) as a DICOM PN value (the alphabetic
    group of PersonName, built without one: two are read per order)."""
    parts = msg.components(segment, number)[1:6]
    if len(parts) < 5:
        parts += [""] * (5 - len(parts))
    return pn_group(parts[0], parts[1], parts[2], parts[4], parts[3])


def _name(parts: list[str], first: int) -> PersonName:
    """family^given^middle^suffix^prefix from `parts`, starting at index `first`."""
    parts = parts[first:first + 5]
    if len(parts) < 5:
        parts += [""] * (5 - len(parts))
    return PersonName(family=parts[0], given=parts[1], middle=parts[2], suffix=parts[3],
                      prefix=parts[4])


def cx_list(msg: Message, segment: list[str] | None, number: int) -> list[Identifier]:
    """All repetitions of a CX field (id^check^scheme^authority^type)."""
    result = []
    for rep in range(1, msg.repetitions(segment, number) + 1):
        parts = msg.components(segment, number, rep)
        if parts and parts[0]:
            result.append(Identifier(value=parts[0], issuer=parts[3] if len(parts) > 3 else "",
                                     type_code=parts[4] if len(parts) > 4 else ""))
    return result


def dicom_sex(value: str) -> str:
    """HL7 administrative sex (table 0001) as DICOM PatientSex (M, F, O or empty)."""
    value = value.upper()[:1]
    return value if value in ("M", "F") else ("O" if value in ("O", "A", "N") else "")


# HL7 priority (TQ-6, table 0027) -> DICOM RequestedProcedurePriority (PS3.3 C.4.11).
_PRIORITIES = {"S": "STAT", "A": "HIGH", "T": "HIGH", "R": "ROUTINE", "P": "MEDIUM",
               "C": "MEDIUM", "PRN": "LOW"}


def dicom_priority(value: str) -> str:
    """HL7 TQ priority as a DICOM priority word; empty stays empty."""
    return _PRIORITIES.get(value.upper(), _PRIORITIES.get(value.upper()[:1], "")) if value else ""
