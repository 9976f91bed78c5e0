"""Worklist response items: each requested key from a row of plain columns (PS3.4 K.6.1.2).

Every requested key comes back, zero length when the broker does not know it (Type 2
semantics, C.2.2.1.1). Attributes an imported worklist file carried without a column of their
own come from scheduled_step.extra (DICOM JSON), parsed only when a query asks for one.
"""
from __future__ import annotations

from typing import Any, Mapping

from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

SPS = "ScheduledProcedureStepSequence"
_TEXT_VRS = {"PN", "LO", "SH", "ST", "LT", "UT", "UC"}
_SKIP = {"SpecificCharacterSet", "QueryRetrieveLevel"}


def _top_values(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "PatientName": row["patient_name"], "PatientID": row["patient_id"] or "",
        "IssuerOfPatientID": row["issuer"] or "", "PatientBirthDate": row["birth_date"],
        "PatientSex": row["sex"], "AccessionNumber": row["accession_number"] or "",
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
    return {
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


def _code(value: str, scheme: str, meaning: str) -> dict[str, str]:
    return {"CodeValue": value, "CodingSchemeDesignator": scheme, "CodeMeaning": meaning[:64]}


class _Extra:
    """The imported file's dataset, parsed on first use only."""

    def __init__(self, extra: Mapping[str, Any] | None) -> None:
        self._json = (extra or {}).get("dicom")
        self._ds: Dataset | None = None

    def get(self, keyword: str, sps: bool = False) -> Any:
        if not self._json:
            return None
        if self._ds is None:
            self._ds = Dataset.from_json(self._json)
        source = self._ds
        if sps:
            seq = source.get(SPS)
            source = seq[0] if seq else Dataset()
        return source[keyword] if keyword in source else None


def build_item(row: Mapping[str, Any], identifier: Dataset) -> Dataset:
    """The response item for one row: exactly the keys the identifier asked for."""
    extra = _Extra(row["extra"])
    return _project(identifier, _top_values(row), extra, sps_values=_sps_values(row))


def _project(query: Dataset, known: dict[str, Any], extra: _Extra,
             sps_values: dict[str, Any] | None = None, in_sps: bool = False) -> Dataset:
    out = Dataset()
    for elem in query:
        keyword = elem.keyword
        if not keyword or keyword in _SKIP:
            if not keyword and not elem.tag.is_private:
                out.add_new(elem.tag, elem.VR, None)
            continue
        if keyword == SPS and sps_values is not None:
            template = elem.value[0] if elem.value else Dataset()
            out.add_new(elem.tag, "SQ", Sequence([
                _project(template, sps_values, extra, in_sps=True) if len(template)
                else _full(sps_values)]))
        elif keyword in known:
            _put(out, keyword, known[keyword], elem)
        else:
            stored = extra.get(keyword, sps=in_sps)
            if stored is not None:
                out.add(stored)
            else:
                out.add_new(elem.tag, elem.VR, Sequence() if elem.VR == "SQ" else None)
    return out


def _put(out: Dataset, keyword: str, value: Any, query_elem: Any) -> None:
    tag = tag_for_keyword(keyword)
    vr = dictionary_VR(tag)
    if vr == "SQ":
        template = query_elem.value[0] if query_elem.value else None
        items = []
        for fields in value:
            item = _full(fields)
            if template is not None and len(template):
                item = _pick(item, template)
            items.append(item)
        out.add_new(tag, "SQ", Sequence(items))
    else:
        out.add_new(tag, vr, value if value != "" else None)


def _full(fields: Mapping[str, Any]) -> Dataset:
    ds = Dataset()
    for keyword, value in fields.items():
        if isinstance(value, list) and dictionary_VR(tag_for_keyword(keyword)) == "SQ":
            ds.add_new(tag_for_keyword(keyword), "SQ", Sequence(_full(v) for v in value))
        else:
            ds.add_new(tag_for_keyword(keyword), dictionary_VR(tag_for_keyword(keyword)),
                       value if value != "" else None)
    return ds


def _pick(item: Dataset, template: Dataset) -> Dataset:
    out = Dataset()
    for elem in template:
        out.add(item[elem.tag]) if elem.tag in item else out.add_new(elem.tag, elem.VR, None)
    return out


def choose_charset(item: Dataset, query_charset: list[str]) -> list[str] | None:
    """The SpecificCharacterSet to answer with (PS3.5 6.1): the query's own when every value
    fits it, UTF-8 (ISO_IR 192) otherwise; None when all text is ASCII and none was asked."""
    texts = [str(e.value) for e in item.iterall()
             if e.VR in _TEXT_VRS and e.value not in (None, "")]
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
