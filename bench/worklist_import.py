"""`broker worklist import DIR` of a wlmscpfs folder, against just reading its files.

Writes N DCMTK wlmscpfs .wl files (one realistic worklist item each, every one a distinct
patient) into a temporary folder, then per round runs `broker worklist import` as a user does
(a new process on a fresh SQLite store in a fresh data folder) and, as the baseline in the same
run, a process that only reads every file with pydicom.dcmread. Prints files/s, the median and
spread over the rounds, and the ratio import/baseline.

    .venv/bin/python bench/worklist_import.py              # 10,000 files, 3 rounds
    .venv/bin/python bench/worklist_import.py --quick      # seconds: proves the bench works
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

ROOT = Path(__file__).resolve().parents[1]
FAMILY = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
          "Schulz", "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
          "Braun", "Zimmermann", "Krüger", "Hartmann", "Lange", "Werner", "Köhler", "Jäger"]
GIVEN = ["Anna", "Jürgen", "Lukas", "Maria", "Sören", "Émile", "Noah", "Mia", "Ole", "Lea",
         "Felix", "Hannah", "Jonas", "Sophie", "Paul", "Emilia", "Ben", "Clara"]
# (station AE title, modality, requested procedure code, meaning, protocol)
EXAMS = [("CT1", "CT", "CTTHX", "CT Thorax", "Chest routine"),
         ("CT2", "CT", "CTABD", "CT Abdomen mit KM", "Abdomen portal venous"),
         ("MR1", "MR", "MRKNE", "MRT Knie rechts", "Knee PD FS"),
         ("MR2", "MR", "MRSKU", "MRT Schädel", "Head routine"),
         ("US1", "US", "USABD", "Sonographie Abdomen", "Abdomen"),
         ("DX1", "DX", "DXTHX", "Röntgen Thorax pa", "Chest PA")]
# The same read as the importer (wlmscpfs files often lack the preamble), and nothing else.
BASELINE = ("import sys; from pathlib import Path; from pydicom import dcmread\n"
            "for p in sorted(Path(sys.argv[1]).rglob('*.wl')): dcmread(p, force=True).decode()\n")


def worklist_item(n: int, rng: random.Random, first_day: datetime) -> Dataset:
    """One wlmscpfs item (PS3.4 K.6.1.2 keys) for a distinct patient."""
    station, modality, code, meaning, protocol = EXAMS[n % len(EXAMS)]
    start = first_day + timedelta(days=n // 400, minutes=7 * 60 + (n % 400) // 8 * 15)
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = f"{rng.choice(FAMILY)}^{rng.choice(GIVEN)}"
    ds.PatientID = f"PID{n:07d}"
    ds.IssuerOfPatientID = "KLINIKUM"
    ds.PatientBirthDate = f"{rng.randint(1930, 2020)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    ds.PatientSex = rng.choice("MF")
    ds.PatientWeight = str(rng.randint(40, 120))
    ds.MedicalAlerts = rng.choice(["", "KM-Allergie", "Herzschrittmacher"])
    ds.AccessionNumber = f"ACC{n:08d}"
    ds.PlacerOrderNumberImagingServiceRequest = f"PL{n:08d}"
    ds.ReferringPhysicianName = "Dr. Berger^Thomas"
    ds.RequestedProcedureID = f"RP{n:07d}"
    ds.RequestedProcedureDescription = meaning
    ds.RequestedProcedurePriority = rng.choice(["ROUTINE", "ROUTINE", "HIGH"])
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.1254.7.{n}"
    code_item = Dataset()
    code_item.CodeValue, code_item.CodingSchemeDesignator = code, "99KLINIKUM"
    code_item.CodeMeaning = meaning
    ds.RequestedProcedureCodeSequence = [code_item]
    sps = Dataset()
    sps.Modality, sps.ScheduledStationAETitle = modality, station
    sps.ScheduledStationName = f"{station} Raum {n % 6 + 1}"
    sps.ScheduledProcedureStepStartDate = start.strftime("%Y%m%d")
    sps.ScheduledProcedureStepStartTime = start.strftime("%H%M%S")
    sps.ScheduledPerformingPhysicianName = "Dr. Vogel^Ines"
    sps.ScheduledProcedureStepDescription = meaning
    sps.ScheduledProcedureStepID = f"SPS{n:07d}"
    sps.ScheduledProcedureStepStatus = "SCHEDULED"
    protocol_item = Dataset()
    protocol_item.CodeValue, protocol_item.CodingSchemeDesignator = f"P{code}", "99KLINIKUM"
    protocol_item.CodeMeaning = protocol
    sps.ScheduledProtocolCodeSequence = [protocol_item]
    ds.ScheduledProcedureStepSequence = [sps]
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def write_folder(folder: Path, count: int) -> None:
    """A wlmscpfs database folder: folder/<AE title>/*.wl and its lockfile."""
    ae_folder = folder / "BROKER"
    ae_folder.mkdir(parents=True)
    (ae_folder / "lockfile").touch()
    rng = random.Random(7)
    first_day = datetime(2026, 12, 1)
    for n in range(count):
        worklist_item(n, rng, first_day).save_as(ae_folder / f"item{n:07d}.wl",
                                                 implicit_vr=False, little_endian=True)


def run_import(folder: Path, data_dir: Path, count: int) -> float:
    """`broker worklist import` in a new process on a fresh store; wall seconds."""
    env = dict(os.environ, BROKER_DATA_DIR=str(data_dir), BROKER_LOGGING_LEVEL="WARNING")
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "broker", "worklist", "import", str(folder)],
                            env=env, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0 or f"imported: {count} " not in result.stdout:
        raise RuntimeError(f"import failed ({result.returncode}): {result.stdout[-500:]}"
                           f"{result.stderr[-2000:]}")
    return elapsed


def run_baseline(folder: Path) -> float:
    """A new process reading and decoding every file with pydicom; wall seconds."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", BASELINE, str(folder)], check=True)
    return time.perf_counter() - started


def summary(label: str, times: list[float], count: int) -> str:
    """One line: files/s at the median, median and spread of the rounds."""
    median = statistics.median(times)
    return (f"   {label:22} {count / median:8.0f} files/s  median {median:6.2f} s  "
            f"spread {min(times):6.2f}-{max(times):6.2f} s")


def main(argv: list[str] | None = None) -> int:
    """Write the files, time the rounds, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200 files, one round")
    args = parser.parse_args(argv)
    if args.quick:
        args.files, args.rounds = 200, 1
    workdir = Path(tempfile.mkdtemp(prefix="wl-import-bench-"))
    try:
        folder = workdir / "wlistdb"
        started = time.perf_counter()
        write_folder(folder, args.files)
        print(f"{args.files:,} wlmscpfs files (distinct patients) written in "
              f"{time.perf_counter() - started:.1f} s; {args.rounds} rounds; "
              f"{os.cpu_count()} CPUs shared with other work, so compare the ratio")
        imports, baselines = [], []
        for round_ in range(args.rounds):  # alternate, so other load falls on both alike
            baselines.append(run_baseline(folder))
            imports.append(run_import(folder, workdir / f"data{round_}", args.files))
            shutil.rmtree(workdir / f"data{round_}")
        print(summary("broker worklist import", imports, args.files))
        print(summary("dcmread baseline", baselines, args.files))
        print(f"   import / baseline      {statistics.median(imports) / statistics.median(baselines):8.2f}x")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
