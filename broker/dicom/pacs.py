"""Asking the PACS what it holds of a study: C-FIND at STUDY then SERIES level (PS3.4 C.6.2,
Study Root), or QIDO-RS (PS3.18 10.6) when [pacs] qido_url is set."""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from broker.config import PacsSettings


class PacsUnavailable(RuntimeError):
    """The PACS could not be asked (refused, timed out, or answered a failure)."""


@dataclass(frozen=True)
class StudyHoldings:
    """What the PACS holds of one study: instance counts by Series Instance UID."""
    series: dict[str, int]

    @property
    def series_count(self) -> int:
        return len(self.series)

    @property
    def instance_count(self) -> int:
        return sum(self.series.values())


def study_holdings(settings: PacsSettings, calling_ae_title: str,
                   study_instance_uid: str) -> StudyHoldings:
    """The series and instance counts the PACS holds for the study (empty when it has none)."""
    if settings.qido_url:
        return _qido(settings, study_instance_uid)
    return _c_find(settings, calling_ae_title, study_instance_uid)


def _c_find(settings: PacsSettings, calling: str, study_uid: str) -> StudyHoldings:
    ae = AE(ae_title=settings.calling_ae_title or calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = settings.timeout_seconds
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate(settings.host, settings.port, ae_title=settings.ae_title)
    if not assoc.is_established:
        raise PacsUnavailable(f"association with {settings.ae_title}@{settings.host}:"
                              f"{settings.port} refused or failed")
    try:
        study = Dataset()
        study.QueryRetrieveLevel = "STUDY"
        study.StudyInstanceUID = study_uid
        study.NumberOfStudyRelatedInstances = ""
        if not _find(assoc, study):
            return StudyHoldings({})
        series = Dataset()
        series.QueryRetrieveLevel = "SERIES"
        series.StudyInstanceUID = study_uid
        series.SeriesInstanceUID = ""
        series.NumberOfSeriesRelatedInstances = ""
        found = {}
        for item in _find(assoc, series):
            count = item.get("NumberOfSeriesRelatedInstances")
            found[str(item.get("SeriesInstanceUID", ""))] = int(count) if count not in (None, "") else 0
        return StudyHoldings(found)
    finally:
        assoc.release()


def _find(assoc, query: Dataset) -> list[Dataset]:
    results = []
    for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
        if "Status" not in status:
            raise PacsUnavailable("no C-FIND response from the PACS")
        code = int(status.Status)
        if code in (0xFF00, 0xFF01):
            results.append(identifier)
        elif code != 0x0000:
            raise PacsUnavailable(f"C-FIND answered 0x{code:04X}")
    return results


def _qido(settings: PacsSettings, study_uid: str) -> StudyHoldings:
    base = settings.qido_url.rstrip("/")
    url = (f"{base}/studies/{urllib.parse.quote(study_uid)}/series?"
           "includefield=NumberOfSeriesRelatedInstances")
    request = urllib.request.Request(url, headers={"Accept": "application/dicom+json"})
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout_seconds) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return StudyHoldings({})
        raise PacsUnavailable(f"QIDO-RS answered {exc.code}") from None
    except OSError as exc:
        raise PacsUnavailable(f"QIDO-RS: {exc}") from None
    found = {}
    for item in json.loads(body or b"[]"):
        uid = (item.get("0020000E", {}).get("Value") or [""])[0]
        count = (item.get("00201209", {}).get("Value") or [0])[0]
        found[str(uid)] = int(count)
    return StudyHoldings(found)
