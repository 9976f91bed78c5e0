"""`broker worklist import DIR`: DCMTK wlmscpfs .wl folders and Orthanc worklist folders.

Each file is one worklist item (PS3.4 K.6): a patient, an order, a requested procedure and one
scheduled step per ScheduledProcedureStepSequence item. Everything the file carries is kept: the
mapped attributes in their columns, the whole dataset as DICOM JSON in scheduled_step.extra.

Files are stored a batch per transaction, each in its own savepoint: one durable commit covers
many files, and a file that cannot be stored (imported before) undoes only its own rows.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from broker.domain.records import (
    Identifier, OrderRequest, PatientRecord, PersonName, ProcedureRequest, StepRequest,
)
from broker.domain.schedule import scheduled_end
from broker.store.models import RequestedProcedure, ScheduledStep
from broker.store.orders import OrderConflict, create_order

SOURCE = "wl-import"
_STATUSES = {"SCHEDULED", "ARRIVED", "READY", "STARTED", "DEPARTED", "CANCELED", "DISCONTINUED",
             "COMPLETED"}
# Files per transaction: enough that one durable commit serves many files, few enough that the
# HL7 intake and MPPS, which share the store's write lock, never wait longer than one batch.
BATCH_FILES = 250

# The steps create_order wrote for an order, in the order of its step requests.
_ORDER_STEPS = (select(ScheduledStep.id).join(RequestedProcedure)
                .where(RequestedProcedure.order_id == bindparam("order_id"))
                .order_by(ScheduledStep.id))
# What the file adds to each step: its whole dataset, and its status when it names one the
# broker knows ("" keeps the status create_order gave).
_steps = ScheduledStep.__table__
_STEP_EXTRA = (update(_steps).where(_steps.c.id == bindparam("step")).values(
    extra=bindparam("extra"),
    status=func.coalesce(func.nullif(bindparam("status"), ""), _steps.c.status)))


class UnreadableFile(ValueError):
    """A file that is not a worklist item; the message says why."""


@dataclass
class ImportReport:
    """What an import did: counts, and the files it skipped or had imported before."""
    files: int = 0
    patients: set[int] = field(default_factory=set)
    orders: int = 0
    procedures: int = 0
    steps: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    already: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class WorklistItem:
    """One file read: its order request, its dataset as DICOM JSON, each step's status."""
    path: Path
    request: OrderRequest
    dicom_json: dict[str, Any]
    statuses: tuple[str, ...]  # per ScheduledProcedureStepSequence item; "" when unknown


def worklist_files(folder: Path) -> Iterator[Path]:
    """Every regular file below `folder` (wlmscpfs keeps .wl files per AE-title folder;
    Orthanc's worklist folder holds .wl or extensionless DICOM files), lock files excepted."""
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name.lower() not in ("lockfile", ".lockfile"):
            yield path


def read_item(path: Path) -> WorklistItem:
    """The worklist item of one file, its text decoded from the file's own character set."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(path, force=True)
            if not any(elem.keyword for elem in ds):
                raise InvalidDicomError("no known DICOM attributes")
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as exc:
        raise UnreadableFile(f"not a DICOM file ({exc.__class__.__name__}: {exc})") from None
    try:
        steps = ds.get("ScheduledProcedureStepSequence")
        if not steps:
            raise UnreadableFile("no ScheduledProcedureStepSequence: not a worklist item")
        if not str(ds.get("PatientID", "") or "") and not ds.get("PatientName"):
            raise UnreadableFile("neither PatientID nor PatientName")
        # Converting every element (each text in the file's SpecificCharacterSet, PS3.5 6.1)
        # is also what finds a damaged one, while the file can still be named.
        dicom_json = ds.to_json_dict(bulk_data_threshold=10**9)
        request = order_request(ds, path)
    except UnreadableFile:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged element: report the file, keep going
        raise UnreadableFile(f"cannot decode ({exc.__class__.__name__}: {exc})") from None
    statuses = tuple(_status(sps) for sps in steps)
    return WorklistItem(path, request, dicom_json, statuses)


def import_folder(folder: Path, sessions: sessionmaker[Session], new_uid: Callable[[], str],
                  echo: Callable[[str], None] = print) -> ImportReport:
    """Import every worklist file below `folder`, a batch of files per transaction."""
    report = ImportReport()
    for batch in _batches(_read_all(worklist_files(folder), report, echo), BATCH_FILES):
        with sessions.begin() as session:
            for item in batch:
                _store_in_savepoint(session, item, new_uid, report, echo)
    return report


def _read_all(paths: Iterable[Path], report: ImportReport,
              echo: Callable[[str], None]) -> Iterator[WorklistItem]:
    """The readable files as items; the others are reported as skipped."""
    for path in paths:
        report.files += 1
        try:
            yield read_item(path)
        except UnreadableFile as exc:
            report.skipped.append((path, str(exc)))
            echo(f"{path}: skipped: {exc}")


def _batches(items: Iterable[WorklistItem], size: int) -> Iterator[list[WorklistItem]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _store_in_savepoint(session: Session, item: WorklistItem, new_uid: Callable[[], str],
                        report: ImportReport, echo: Callable[[str], None]) -> None:
    """Store one item; an order imported before rolls back this file's rows only."""
    try:
        with session.begin_nested():
            order = create_order(session, item.request, new_uid, source_channel=SOURCE)
            _add_file_to_steps(session, order.id, item)
    except OrderConflict as exc:  # imported before: a re-run changes nothing
        report.already.append(item.path)
        echo(f"{item.path}: already imported ({exc})")
        return
    report.orders += 1
    report.patients.add(order.patient_id)
    report.procedures += len(item.request.procedures)
    report.steps += sum(len(p.steps) for p in item.request.procedures)


def _add_file_to_steps(session: Session, order_id: int, item: WorklistItem) -> None:
    """Keep the file's dataset with each of the order's steps, and the status it gives."""
    step_ids = session.scalars(_ORDER_STEPS, {"order_id": order_id}).all()
    extra = {"dicom": item.dicom_json, "source_file": item.path.name}
    session.execute(_STEP_EXTRA, [
        {"step": step_id, "extra": extra, "status": status}
        for step_id, status in zip(step_ids, item.statuses)])


def _status(sps: Dataset) -> str:
    """The item's ScheduledProcedureStepStatus when the broker knows it, else ""."""
    status = str(sps.get("ScheduledProcedureStepStatus", "") or "").upper()
    return status if status in _STATUSES else ""


def order_request(ds: Dataset, path: Path) -> OrderRequest:
    """The file's worklist attributes as an order request."""
    patient_id = _text(ds, "PatientID") or f"WL-{path.stem}"
    accession = _text(ds, "AccessionNumber")
    placer = _text(ds, "PlacerOrderNumberImagingServiceRequest") or accession or f"WL-{path.stem}"
    code = ds.RequestedProcedureCodeSequence[0] if ds.get("RequestedProcedureCodeSequence") else None
    steps = tuple(_step(sps, i) for i, sps in enumerate(ds.ScheduledProcedureStepSequence, 1))
    return OrderRequest(
        patient=PatientRecord(
            identifiers=(Identifier(patient_id, _text(ds, "IssuerOfPatientID")),),
            name=person_name(ds.get("PatientName")), birth_date=_text(ds, "PatientBirthDate")[:8],
            sex=_text(ds, "PatientSex")[:1]),
        placer_order_number=placer,
        filler_order_number=_text(ds, "FillerOrderNumberImagingServiceRequest"),
        accession_number=accession,
        priority=_text(ds, "RequestedProcedurePriority"),
        referring_physician=str(ds.get("ReferringPhysicianName", "") or ""),
        reason=_text(ds, "ReasonForTheRequestedProcedure"),
        procedures=(ProcedureRequest(
            procedure_id=_text(ds, "RequestedProcedureID") or accession or placer,
            code_value=_text(code, "CodeValue") if code else "",
            code_scheme=_text(code, "CodingSchemeDesignator") if code else "",
            code_meaning=(_text(code, "CodeMeaning") if code else "")
            or _text(ds, "RequestedProcedureDescription"),
            study_instance_uid=_text(ds, "StudyInstanceUID"), steps=steps),))


def _step(sps: Dataset, number: int) -> StepRequest:
    titles = sps.get("ScheduledStationAETitle") or []
    titles = [titles] if isinstance(titles, str) else list(titles)
    protocol = tuple((_text(c, "CodeValue"), _text(c, "CodingSchemeDesignator"),
                      _text(c, "CodeMeaning")) for c in sps.get("ScheduledProtocolCodeSequence") or [])
    start = start_datetime(_text(sps, "ScheduledProcedureStepStartDate"),
                           _text(sps, "ScheduledProcedureStepStartTime"))
    # The file's own end (no procedure table applies to an imported item). A date without a
    # time is no instant to store: like an end before the start, it is served from extra as
    # the file has it.
    end_time = _text(sps, "ScheduledProcedureStepEndTime")
    end = scheduled_end(start, start_datetime(_text(sps, "ScheduledProcedureStepEndDate"),
                                              end_time) if end_time else None)
    return StepRequest(
        step_id=_text(sps, "ScheduledProcedureStepID") or str(number),
        modality=_text(sps, "Modality").upper(),
        station_ae_titles=tuple(t.strip() for t in titles if str(t).strip()),
        station_name=_text(sps, "ScheduledStationName"),
        location=_text(sps, "ScheduledProcedureStepLocation"),
        start=start, end=end,
        performing_physician=str(sps.get("ScheduledPerformingPhysicianName", "") or ""),
        description=_text(sps, "ScheduledProcedureStepDescription")[:64],
        protocol_codes=protocol)


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None or value == "":
        return ""
    if not isinstance(value, str) and hasattr(value, "__iter__"):
        value = "\\".join(str(v) for v in value)
    return str(value).strip()


def start_datetime(day: str, tm: str) -> datetime | None:
    """DA + TM as a naive local datetime (old YYYY.MM.DD and HH:MM forms accepted)."""
    day = day.replace(".", "").replace("-", "")
    if len(day) != 8 or not day.isdigit():
        return None
    clock = tm.replace(":", "").split(".", 1)[0].ljust(6, "0")[:6]
    if not clock.isdigit():
        clock = "000000"
    try:
        return datetime.strptime(day + clock, "%Y%m%d%H%M%S")
    except ValueError:
        return datetime.strptime(day, "%Y%m%d")


def person_name(value: object) -> PersonName:
    """A decoded PN value as the domain's PersonName, all three component groups kept."""
    text = str(value or "")
    groups = (text.split("=") + ["", ""])[:3]
    parts = (groups[0].split("^") + [""] * 5)[:5]
    return PersonName(family=parts[0], given=parts[1], middle=parts[2], prefix=parts[3],
                      suffix=parts[4], ideographic=groups[1], phonetic=groups[2])
