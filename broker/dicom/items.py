"""Worklist response items: each requested key from a row of plain columns (PS3.4 K.6.1.2).

Every requested key comes back, zero length when the broker does not know it (Type 2
semantics, C.2.2.1.1). Attributes an imported worklist file carried without a column of their
own come from scheduled_step.extra (DICOM JSON), parsed only when a query asks for one.
Type 3 keys with a column (the step's end) are values only when known, so an unknown one falls
through to the imported file like any other attribute.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator, Mapping

from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from broker.dicom.encoding import TEXT_VRS, encode_value

SPS = "ScheduledProcedureStepSequence"
# PS3.4 Table K.6-1 Type 3 return keys the store has a column for.
_SPS_END = ("ScheduledProcedureStepEndDate", "ScheduledProcedureStepEndTime")
_TEXT_VRS = TEXT_VRS
_SKIP = {"SpecificCharacterSet", "QueryRetrieveLevel"}


def _top_values(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "PatientName": row["patient_name"], "PatientID": row["patient_id"] or "",
        "IssuerOfPatientID": row["issuer"] or "", "PatientBirthDate": row["birth_date"],
        "PatientSex": row["sex"], "AccessionNumber": row["accession_number"] or "",
        # PS3.3 C.4.10 / IHE RAD-4: the namespace the accession was issued in, when known.
        "IssuerOfAccessionNumberSequence": (
            [{"LocalNamespaceEntityID": row["accession_issuer"]}] if row["accession_issuer"]
            else []),
        "ReferringPhysicianName": row["referring_physician"],
        "RequestedProcedureID": row["procedure_id"],
        "RequestedProcedureDescription": row["code_meaning"][:64],
        "StudyInstanceUID": row["study_instance_uid"],
        "RequestedProcedurePriority": row["priority"],
        "ReasonForTheRequestedProcedure": (row["reason"] or "")[:64],
        "PlacerOrderNumberImagingServiceRequest": row["placer_order_number"] or "",
        "FillerOrderNumberImagingServiceRequest": row["filler_order_number"] or "",
        "RequestedProcedureCodeSequence": (
            [_code(row["code_value"], row["code_scheme"] or "L", row["code_meaning"])]
            if row["code_value"] else []),
    }


def _sps_values(row: Mapping[str, Any]) -> dict[str, Any]:
    start = row["start_at"]
    titles = row["station_ae_title"].split("\\") if row["station_ae_title"] else []
    values = {
        "Modality": row["modality"],
        "ScheduledStationAETitle": titles if len(titles) > 1 else (titles[0] if titles else ""),
        "ScheduledStationName": row["station_name"],
        "ScheduledProcedureStepLocation": row["location"],
        "ScheduledProcedureStepStartDate": start.strftime("%Y%m%d") if start else "",
        "ScheduledProcedureStepStartTime": start.strftime("%H%M%S") if start else "",
        "ScheduledPerformingPhysicianName": row["performing_physician"],
        "ScheduledProcedureStepDescription": row["description"][:64],
        "ScheduledProcedureStepID": row["step_id"],
        "ScheduledProcedureStepStatus": row["status"],
        "ScheduledProtocolCodeSequence": [_code(*c[:3]) for c in (row["protocol_codes"] or [])],
    }
    end = row["end_at"]
    if end is not None:
        # Type 3: only here when known. A zero-item SPS key asks for "the entire Sequence of
        # Items" (C.2.2.2.6), which then carries it; a named key gets it, or zero length.
        values[_SPS_END[0]], values[_SPS_END[1]] = end.strftime("%Y%m%d"), end.strftime("%H%M%S")
    return values


def _code(value: str, scheme: str, meaning: str) -> dict[str, str]:
    return {"CodeValue": value, "CodingSchemeDesignator": scheme, "CodeMeaning": meaning[:64]}


class _Extra:
    """The imported file's dataset, parsed on first use only."""

    def __init__(self, extra: Mapping[str, Any] | None) -> None:
        self.dicom_json = (extra or {}).get("dicom")
        self.dataset: Dataset | None = None

    def get(self, keyword: str, sps: bool = False) -> Any:
        if not self.dicom_json:
            return None
        if self.dataset is None:
            self.dataset = Dataset.from_json(self.dicom_json)
        source = self.dataset
        if sps:
            seq = source.get(SPS)
            source = seq[0] if seq else Dataset()
        return source[keyword] if keyword in source else None


@dataclass(frozen=True)
class Key:
    """One requested key of the identifier, read once per query rather than once per item."""
    tag: int
    vr: str
    keyword: str
    sub: tuple["Key", ...] = ()  # a sequence's item keys; empty: the whole item (universal)


def compile_plan(query: Dataset) -> tuple[Key, ...]:
    """The identifier's return keys, in a form cheap to walk for every answer item."""
    keys = []
    for elem in query:
        if elem.keyword in _SKIP or elem.tag.is_private:
            continue
        sub = compile_plan(elem.value[0]) if elem.VR == "SQ" and elem.value else ()
        keys.append(Key(int(elem.tag), elem.VR, elem.keyword, sub))
    return tuple(keys)


def build_item(row: Mapping[str, Any], plan: tuple[Key, ...] | Dataset, query_charset: list[str],
               implicit_vr: bool = False) -> Dataset:
    """The response item for one row: exactly the keys the identifier asked for, encoded in the
    query's character set when every value fits it, else in UTF-8 (PS3.5 6.1).

    `implicit_vr` is the transfer syntax the answer will be written in: values are encoded here
    once, and pydicom writes them as they are."""
    if isinstance(plan, Dataset):
        plan = compile_plan(plan)
    fields = _collect(plan, _top_values(row), _Extra(row["extra"]), _sps_values(row))
    charset = choose_charset(list(_texts(fields)), query_charset)
    codecs = convert_encodings(charset or ["ISO_IR 6"])
    if charset:
        fields.append((0x00080005, "CS", charset))
    out = Dataset()
    for tag, vr, value in fields:
        data = encode_value(vr, value, codecs, implicit_vr)
        out[tag] = RawDataElement(Tag(tag), vr, len(data), data, 0, implicit_vr, True)
    # The values are in the output encoding already. Recorded as the dataset's original
    # encoding (as pydicom derives it from SpecificCharacterSet, or its default without one),
    # they are written unchanged instead of decoded and encoded again.
    out.set_original_encoding(implicit_vr, True, codecs if charset else default_encoding)
    return out


# A collected field: (tag, VR, value) with a str/list value, a list of sub-field lists for a
# sequence, or a pydicom DataElement taken as it is from an imported file.
Field = tuple[int, str, Any]


@lru_cache(maxsize=512)
def _tag_vr(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    return tag, dictionary_VR(tag)


def _collect(plan: tuple[Key, ...], known: dict[str, Any], extra: _Extra,
             sps_values: dict[str, Any] | None = None, in_sps: bool = False) -> list[Field]:
    fields: list[Field] = []
    for key in plan:
        if key.keyword == SPS and sps_values is not None:
            item = (_collect(key.sub, sps_values, extra, in_sps=True) if key.sub
                    else _all_fields(sps_values))
            fields.append((key.tag, "SQ", [item]))
        elif key.keyword in known:
            fields.append(_known_field(key, known[key.keyword]))
        else:
            stored = extra.get(key.keyword, sps=in_sps) if key.keyword else None
            fields.append((key.tag, key.vr, stored if stored is not None else
                           ([] if key.vr == "SQ" else "")))
    return fields


def _known_field(key: Key, value: Any) -> Field:
    tag, vr = _tag_vr(key.keyword)
    if vr != "SQ":
        return tag, vr, value
    items = []
    for fields in value:
        item = _all_fields(fields)
        if key.sub:
            have = {f[0]: f for f in item}
            item = [have.get(k.tag, (k.tag, k.vr, "")) for k in key.sub]
        items.append(item)
    return tag, "SQ", items


def _all_fields(values: Mapping[str, Any]) -> list[Field]:
    fields = []
    for keyword, value in values.items():
        tag, vr = _tag_vr(keyword)
        fields.append((tag, vr, [_all_fields(v) for v in value] if vr == "SQ" else value))
    return fields


def _texts(fields: list[Field]) -> Iterator[str]:
    for _tag, vr, value in fields:
        if isinstance(value, DataElement):
            if value.VR in _TEXT_VRS and value.value not in (None, ""):
                yield str(value.value)
        elif vr == "SQ":
            for item in value:
                yield from _texts(item)
        elif vr in _TEXT_VRS and value:
            yield value if isinstance(value, str) else "\\".join(value)


def choose_charset(texts: list[str], query_charset: list[str]) -> list[str] | None:
    """The SpecificCharacterSet to answer with (PS3.5 6.1): the query's own when every value
    fits it, UTF-8 (ISO_IR 192) otherwise; None when all text is ASCII and none was asked."""
    if all(t.isascii() for t in texts):
        return query_charset or None
    if query_charset and all(_encodable(t, query_charset) for t in texts):
        return query_charset
    return ["ISO_IR 192"]


def _encodable(text: str, charset: list[str]) -> bool:
    """True when each character fits one of the character sets (ISO 2022 switches per char)."""
    # The default repertoire (ISO_IR 6, written as an empty first value) is ASCII only.
    terms = [t for t in charset if t not in ("", "ISO_IR 6", "ISO 2022 IR 6")]
    codecs = convert_encodings(terms) if terms else []
    for char in set(text):
        if char.isascii():
            continue
        for codec in codecs:
            try:
                char.encode(codec)
                break
            except (UnicodeEncodeError, LookupError):
                continue
        else:
            return False
    return True
