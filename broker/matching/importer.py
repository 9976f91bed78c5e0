"""`broker patients import FILE.csv`: many patients at once, with bulk inserts.

Header: identifier,issuer,family_name,given_name,birth_date,sex,address,phone. A bad row is
reported with its line number and reason and the rest are imported. A birth date that is not a
date (00000000, 19800230, 19214019) loses nothing a person would keep: the patient is imported
with the birth date unknown, the text as received kept in patient.extra["birth_date_raw"], and
the line reported as a warning. A row whose identifier is
already known goes through upsert_patient like any update (so conflicts are flagged) unless its
demographics are unchanged; new rows are inserted in batches with their identifiers and blocking
keys, one transaction per batch. Duplicates among the imported
patients are found afterwards by `broker patients scan`.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import insert, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from broker.clock import utcnow
from broker.domain.records import Identifier, PatientRecord, PersonName
from broker.matching.score import block_keys, profile
from broker.matching.score.normalize import birth_date as parse_birth_date
from broker.store.audit import record_event
from broker.store.models import Patient, PatientBlockKey, PatientIdentifier
from broker.store.patients import DEMOGRAPHIC_FIELDS, demographic_values, upsert_patient

COLUMNS = ("identifier", "issuer", "family_name", "given_name", "birth_date", "sex", "address", "phone")
LIMITS = {"identifier": 64, "issuer": 64, "family_name": 64, "given_name": 64, "address": 255,
          "phone": 64}
SEXES = {"", "M", "F", "O", "U"}
BATCH = 5000


class ImportError_(ValueError):
    """The file cannot be imported at all (missing, unreadable, wrong header)."""


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Row:
    line: int
    record: PatientRecord
    extra: dict[str, Any]   # what is kept beside the demographics (the raw birth date)
    warning: str = ""


def parse_row(row: dict[str, str]) -> PatientRecord:
    """A CSV row as a PatientRecord; ValueError says what is wrong with it."""
    return parse_row_kept(row)[0]


def parse_row_kept(row: dict[str, str]) -> tuple[PatientRecord, dict[str, Any], str]:
    """A CSV row as a PatientRecord, the raw values kept beside it, and a warning ("" for
    none); ValueError says why the row cannot be imported at all."""
    values = {k: (row.get(k) or "").strip() for k in COLUMNS}
    if not values["identifier"]:
        raise ValueError("identifier is empty")
    for name, limit in LIMITS.items():
        if len(values[name]) > limit:
            raise ValueError(f"{name} is longer than {limit} characters")
    birth, extra, warning = values["birth_date"], {}, ""
    if birth:
        normal = parse_birth_date(birth)
        if not normal or len(birth.replace("-", "")) != 8 or not _date_shape(birth):
            extra = {"birth_date_raw": birth[:32]}
            warning = (f"birth_date {birth[:32]!r} is not a date (YYYYMMDD or YYYY-MM-DD): "
                       f"imported as unknown, the text kept")
            normal = ""
        birth = normal
    sex = values["sex"].upper()
    if sex not in SEXES:
        raise ValueError(f"sex {values['sex']!r} is not one of M, F, O, U")
    record = PatientRecord((Identifier(values["identifier"], values["issuer"]),),
                           PersonName(values["family_name"], values["given_name"]), birth, sex,
                           values["address"], values["phone"])
    return record, extra, warning


def _date_shape(text: str) -> bool:
    return (len(text) == 8 and text.isdigit()) or (
        len(text) == 10 and text[4] == text[7] == "-" and text.replace("-", "").isdigit())


def read_rows(path: Path, report: ImportReport) -> Iterator[Row]:
    """Valid rows of the file with their line numbers; bad rows and warnings go into the report."""
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ImportError_(f"{path}: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise ImportError_(f"{path}: header lacks {', '.join(missing)} "
                               f"(expected {','.join(COLUMNS)})")
        reader.fieldnames = header
        seen: dict[tuple[str, str], int] = {}
        try:
            for row in reader:
                line = reader.line_num
                try:
                    record, extra, warning = parse_row_kept(row)
                except ValueError as exc:
                    report.errors.append((line, str(exc)))
                    continue
                key = (record.primary.value, record.primary.issuer)
                if key in seen:
                    report.errors.append((line, f"identifier {key[0]} (issuer {key[1] or '-'}) "
                                                f"already on line {seen[key]}"))
                    continue
                seen[key] = line
                if warning:
                    report.warnings.append((line, warning))
                yield Row(line, record, extra, warning)
        except (csv.Error, UnicodeDecodeError) as exc:
            report.errors.append((reader.line_num, f"unreadable: {exc}"))


def count_lines(path: Path) -> int:
    """Data lines in the file (for the progress bar)."""
    with open(path, "rb") as fh:
        return max(sum(1 for _ in fh) - 1, 0)


def import_csv(sessions: sessionmaker[Session], path: Path, actor: str = "import",
               on_progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import the patients of a CSV file; returns counts and the rejected rows."""
    report = ImportReport()
    batch: list[Row] = []
    for item in read_rows(path, report):
        batch.append(item)
        if len(batch) >= BATCH:
            _import_batch(sessions, batch, report)
            if on_progress:
                on_progress(len(batch))
            batch = []
    if batch:
        _import_batch(sessions, batch, report)
        if on_progress:
            on_progress(len(batch))
    with sessions.begin() as session:
        record_event(session, actor, "patients.import", "file", path.name[:64],
                     created=report.created, updated=report.updated, rejected=len(report.errors))
    return report


def _import_batch(sessions: sessionmaker[Session], batch: list[Row],
                  report: ImportReport) -> None:
    with sessions.begin() as session:
        known = _known_demographics(session, [r.record for r in batch])
        new = []
        for item in batch:
            record = item.record
            key = (record.primary.value, record.primary.issuer)
            if key not in known:
                new.append(item)
                continue
            report.updated += 1
            # Unchanged (the usual case when a file is imported again): upsert_patient would
            # find the patient and write nothing, so it is not asked.
            if known[key] != demographic_values(record):
                upsert_patient(session, record, source="import")
        if new:
            _bulk_insert(session, new)
            report.created += len(new)


def _known_demographics(session: Session, records: list[PatientRecord]) -> dict[tuple[str, str], Any]:
    """For each record whose identifier is known: the demographics of its live holder, or None
    when the holder was merged away (upsert_patient follows the merge)."""
    pairs = [(r.primary.value, r.primary.issuer) for r in records]
    columns = [getattr(Patient, c) for c in DEMOGRAPHIC_FIELDS]
    rows = session.execute(
        select(PatientIdentifier.value, PatientIdentifier.issuer, Patient.merged_into_id, *columns)
        .join(Patient, Patient.id == PatientIdentifier.patient_id)
        .where(tuple_(PatientIdentifier.value, PatientIdentifier.issuer).in_(pairs)))
    return {(r[0], r[1]): None if r[2] is not None else dict(zip(DEMOGRAPHIC_FIELDS, r[3:]))
            for r in rows}


def _bulk_insert(session: Session, items: list[Row]) -> None:
    # Core executemany on the tables: the ORM's per-row bookkeeping (bulk or not) is most of
    # the cost of a large import, and none of these rows is needed as an object afterwards.
    now = utcnow()
    patients = Patient.__table__
    records = [item.record for item in items]
    rows = [{**demographic_values(item.record), "extra": item.extra, "created_at": now,
             "updated_at": now} for item in items]
    ids = session.execute(insert(patients).returning(patients.c.id, sort_by_parameter_order=True),
                          rows).scalars().all()
    idents, keys = [], []
    for pid, r in zip(ids, records):
        ident = r.primary
        idents.append({"patient_id": pid, "value": ident.value, "issuer": ident.issuer,
                       "type_code": ident.type_code})
        prof = profile(r.name.family, r.name.given, r.birth_date, r.sex, r.address, r.phone,
                       [(ident.value, ident.issuer)])
        keys.extend({"patient_id": pid, "key": k} for k in block_keys(prof))
    session.execute(insert(PatientIdentifier.__table__), idents)
    keys.sort(key=lambda row: row["key"])  # index pages fill in order: far fewer page writes
    session.execute(insert(PatientBlockKey.__table__), keys)
