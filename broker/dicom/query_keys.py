"""Reading and checking the keys of a Modality Worklist identifier (PS3.4 K.6.1.2, C.2.2.2).

Values are read as text in the query's own character set (pydicom decodes with the identifier's
SpecificCharacterSet). A value that breaks its VR raises InvalidQuery with a 0xC000-range status;
a structure the information model does not allow raises it with 0xA900.
"""
from __future__ import annotations

import re

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset

from broker.dicom.query_match import STATUS_IDENTIFIER_MISMATCH, InvalidQuery

# Longest value per VR (PS3.5 6.2); PN per component group. Ranges double DA/TM/DT.
_MAX_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "UI": 64,
               "DA": 18, "TM": 28, "DT": 54, "AS": 4, "IS": 12, "DS": 16}
_UI_CHARS = re.compile(r"^[0-9.]*$")
# VRs whose values may be given as a list meaning "any of these" (C.2.2.2.2 for UI; a CS or AE
# list from a single-valued key is what scanners send for "CT or MR").
LIST_VRS = {"CS", "AE", "UI"}
_NO_WILDCARD_VRS = {"UI", "DA", "TM", "DT"}


def values(ds: Dataset, keyword: str) -> list[str]:
    """The values of one key as text: [] for universal matching (zero length) or absence."""
    if keyword not in ds:
        return []
    elem = ds[keyword]
    value = elem.value
    if value is None or value == "":
        return []
    items = list(value) if elem.VM > 1 or type(value).__name__ == "MultiValue" else [value]
    texts = [str(v).strip() for v in items]
    texts = [t for t in texts if t not in ("", "*")]  # "*" alone is universal for any VR
    check_vr(keyword, elem.VR, texts)
    return texts


def single(ds: Dataset, keyword: str) -> str:
    """A key that takes one value: '' for universal matching; InvalidQuery for a list."""
    found = values(ds, keyword)
    if len(found) > 1:
        raise InvalidQuery(f"{keyword} takes a single value, got {len(found)}")
    return found[0] if found else ""


def check_vr(keyword: str, vr: str, texts: list[str]) -> None:
    """Refuse values that break their VR: too long, non-ASCII where only ASCII is allowed."""
    limit = _MAX_LENGTH.get(vr)
    for text in texts:
        parts = text.split("=") if vr == "PN" else [text]
        if limit is not None and any(len(part) > limit for part in parts):
            raise InvalidQuery(f"{keyword}: value longer than {vr} allows")
        if vr in ("AE", "CS", "UI", "DA", "TM", "DT") and not text.isascii():
            raise InvalidQuery(f"{keyword}: non-ASCII characters in a {vr} value")
        if vr == "UI" and not _UI_CHARS.match(text):
            raise InvalidQuery(f"{keyword}: {vr} value holds characters other than digits and dots")
        if vr in _NO_WILDCARD_VRS and ("*" in text.strip("*") or "?" in text):
            raise InvalidQuery(f"{keyword}: wild cards are not allowed for {vr}")


def check_structure(identifier: Dataset) -> None:
    """Refuse an identifier the model does not allow (0xA900): wrong VR for a key, bad sequences."""
    for elem in identifier.iterall():
        if not elem.keyword:
            continue
        try:
            expected = dictionary_VR(elem.tag)
        except KeyError:
            continue
        # A sequence where the model has a value, or the other way round, cannot be matched.
        if elem.VR != expected and "SQ" in (elem.VR, expected):
            raise InvalidQuery(f"{elem.keyword} sent with VR {elem.VR}, the model says {expected}",
                               STATUS_IDENTIFIER_MISMATCH)
    for keyword in ("ScheduledProcedureStepSequence", "RequestedProcedureCodeSequence",
                    "ScheduledProtocolCodeSequence"):
        for ds in _datasets_with(identifier, keyword):
            if len(ds[keyword].value) > 1:
                raise InvalidQuery(f"{keyword} may hold only one item in a query",
                                   STATUS_IDENTIFIER_MISMATCH)


def _datasets_with(identifier: Dataset, keyword: str) -> list[Dataset]:
    found = [identifier] if keyword in identifier else []
    sps = identifier.get("ScheduledProcedureStepSequence")
    if sps and keyword in sps[0]:
        found.append(sps[0])
    return found


def sequence_item(ds: Dataset, keyword: str) -> Dataset | None:
    """The one query item of a sequence key, or None when absent or empty (universal)."""
    if keyword not in ds or not ds[keyword].value:
        return None
    return ds[keyword].value[0]


def name_groups(value: str) -> tuple[str, str, str]:
    """A PN query value as its alphabetic, ideographic and phonetic groups."""
    groups = (value.split("=") + ["", ""])[:3]
    return groups[0], groups[1], groups[2]
