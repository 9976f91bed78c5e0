"""`broker patients import` of a large CSV: time per run, against parsing the file alone.

    python bench/patient_import.py                 # 100,000 rows, 3 runs
    python bench/patient_import.py --rows 5000 --runs 1

Each run imports the file into a fresh SQLite database ("new": every row a new patient), then
imports the same file again ("again": every identifier known, nothing changed). The baseline,
measured in the same run, reads and validates the CSV without touching a database.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

from broker.matching.importer import ImportReport, import_csv, read_rows  # noqa: E402
from broker.store.db import make_engine, make_session_factory  # noqa: E402
from broker.store.migrate import upgrade  # noqa: E402
from population import Generator  # noqa: E402

HEADER = ["identifier", "issuer", "family_name", "given_name", "birth_date", "sex", "address", "phone"]


def write_csv(path: Path, rows: int) -> None:
    """`rows` distinct synthetic people as an import file."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(HEADER)
        for p in Generator(seed=31).people(rows):
            out.writerow([p.identifier, "HOSP", p.family, p.given, p.birth_date, p.sex,
                          p.address, p.phone])


def parse_only(path: Path) -> float:
    """Seconds to read and validate every row (the baseline)."""
    started = time.perf_counter()
    report = ImportReport()
    for _ in read_rows(path, report):
        pass
    return time.perf_counter() - started


def import_twice(path: Path, workdir: Path, run: int) -> tuple[float, float, ImportReport]:
    """Seconds to import into a fresh database, then to import the same file again."""
    engine = make_engine(f"sqlite:///{workdir / f'import-{run}.db'}")
    upgrade(engine)
    sessions = make_session_factory(engine)
    started = time.perf_counter()
    report = import_csv(sessions, path)
    new_s = time.perf_counter() - started
    started = time.perf_counter()
    again = import_csv(sessions, path)
    again_s = time.perf_counter() - started
    engine.dispose()
    if report.created != again.updated:
        raise SystemExit(f"second import updated {again.updated}, expected {report.created}")
    return new_s, again_s, report


def summary(label: str, values: list[float], baseline: float) -> str:
    median = statistics.median(values)
    return (f"  {label:<9} median {median:6.2f} s  spread {min(values):.2f}-{max(values):.2f} s  "
            f"= {median / baseline:5.1f}x parsing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print("(2 shared cores, other work running: figures are noisy)")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        path = workdir / "patients.csv"
        write_csv(path, args.rows)
        parse, new, again = [], [], []
        report = ImportReport()
        for run in range(args.runs):
            parse.append(parse_only(path))
            new_s, again_s, report = import_twice(path, workdir, run)
            new.append(new_s)
            again.append(again_s)
        baseline = statistics.median(parse)
        print(f"patient import: {args.rows} rows, {args.runs} runs "
              f"({report.created} created, {len(report.errors)} rejected)")
        print(f"  parsing   median {baseline:6.2f} s  spread {min(parse):.2f}-{max(parse):.2f} s  "
              f"(baseline: read and validate the CSV, no database)")
        print(summary("new", new, baseline))
        print(summary("again", again, baseline))
        print(f"  rows/s    new {args.rows / statistics.median(new):,.0f}  "
              f"again {args.rows / statistics.median(again):,.0f}")


if __name__ == "__main__":
    main()
