"""Modality Worklist latency as a scanner sees it: the broker against DCMTK's wlmscpfs.

Loads N scheduled steps (default 1,000, 10,000 and 100,000) into a fresh store, starts
`broker serve` as its own process, writes the same items as .wl files for /usr/bin/wlmscpfs, then
runs DCMTK's /usr/bin/findscu (a new association and process per query, as scanners do) for four
typical query shapes and prints median and p95 latency, the ratio wlmscpfs/broker, the broker's
growth from the smallest to the largest size, the broker's RSS, and the SQL query plans.
Last, the broker's TCP_QUICKACK re-arming (broker/dicom/scp.py) on and off in the same run, for
findscu as it ships (Nagle on) and with DCMTK's TCP_NODELAY=1.

    .venv/bin/python bench/mwl_query.py            # full run (several minutes)
    .venv/bin/python bench/mwl_query.py --quick    # seconds: proves the bench works

Items are spread evenly over days (200 a day over 10 stations), so a day's worklist holds the
same number of items at every size: growth in latency then comes from the store, not the answer.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import evt
from sqlalchemy import insert, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from broker.config import DicomSettings, WorklistSettings  # noqa: E402
from broker.dicom.scp import QUICKACK, rearm_quickack, start_dicom_server  # noqa: E402
from broker.dicom.worklist import QueryContext, build_query  # noqa: E402
from broker.store.db import make_engine, make_session_factory  # noqa: E402
from broker.store.migrate import upgrade  # noqa: E402
from broker.store.models import (  # noqa: E402
    Order, Patient, PatientIdentifier, RequestedProcedure, ScheduledStep, StepStationAE,
)

FINDSCU, WLMSCPFS = "/usr/bin/findscu", "/usr/bin/wlmscpfs"
STATIONS = [("CT1", "CT"), ("CT2", "CT"), ("CT3", "CT"), ("CT4", "CT"), ("MR1", "MR"),
            ("MR2", "MR"), ("MR3", "MR"), ("US1", "US"), ("US2", "US"), ("DX1", "DX")]
PER_DAY = 200
SYLLABLES = ["KO", "VA", "MI", "RE", "SU", "TA", "NE", "LO", "BER", "DI", "GA", "HU", "PE", "SON",
             "MÜ", "LER", "YA", "MA", "DA", "WO"]
GIVEN = ["ANNA", "JAN", "LUCA", "MARIA", "JÜRGEN", "SØREN", "ÉMILE", "NOAH", "MIA", "OLE"]
SPS = "ScheduledProcedureStepSequence[0]"
RETURN_KEYS = ["PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
               "RequestedProcedureID", "RequestedProcedureDescription", "StudyInstanceUID",
               "ReferringPhysicianName", f"{SPS}.Modality", f"{SPS}.ScheduledStationAETitle",
               f"{SPS}.ScheduledProcedureStepStartDate", f"{SPS}.ScheduledProcedureStepStartTime",
               f"{SPS}.ScheduledProcedureStepDescription", f"{SPS}.ScheduledProcedureStepID"]


@dataclass
class Item:
    n: int
    family: str
    given: str
    station: str
    modality: str
    start: datetime


def make_items(count: int, today: date) -> list[Item]:
    """`count` steps, PER_DAY a day centred on today, names from four syllables (rarely shared)."""
    rng = random.Random(42)
    days = max(1, count // PER_DAY)
    first = datetime.combine(today, datetime.min.time()) - timedelta(days=days // 2)
    items = []
    for n in range(count):
        station, modality = STATIONS[n % len(STATIONS)]
        day = (n // PER_DAY) % days
        minute = 7 * 60 + (n % PER_DAY) // len(STATIONS) * 30
        family = "".join(rng.choice(SYLLABLES) for _ in range(4))
        items.append(Item(n, family, rng.choice(GIVEN), station, modality,
                          first + timedelta(days=day, minutes=minute)))
    return items


def load_store(url: str, items: list[Item]) -> None:
    """Bulk-insert the items (one patient, order, procedure and step each) with Core inserts."""
    engine = make_engine(url)
    upgrade(engine)
    now = datetime(2026, 1, 1)
    with engine.begin() as conn:
        for chunk in range(0, len(items), 5000):
            part = items[chunk:chunk + 5000]
            conn.execute(insert(Patient), [dict(
                id=i.n + 1, name=f"{i.family}^{i.given}", family_name=i.family, given_name=i.given,
                name_key=f"{i.family}^{i.given}".upper(), birth_date="19700101", sex="F",
                extra={}, created_at=now, updated_at=now) for i in part])
            conn.execute(insert(PatientIdentifier), [dict(
                id=i.n + 1, patient_id=i.n + 1, value=f"P{i.n:07d}", issuer="BENCH") for i in part])
            conn.execute(insert(Order), [dict(
                id=i.n + 1, patient_id=i.n + 1, placer_order_number=f"PL{i.n}",
                accession_number=f"A{i.n:07d}", priority="ROUTINE", referring_physician="DOC^A",
                reason="", status="SCHEDULED", created_at=now, updated_at=now) for i in part])
            conn.execute(insert(RequestedProcedure), [dict(
                id=i.n + 1, order_id=i.n + 1, procedure_id=f"RP{i.n}", code_value="X1",
                code_scheme="L", code_meaning=f"{i.modality} exam",
                study_instance_uid=f"1.2.826.0.1.3680043.10.1254.9.{i.n}") for i in part])
            conn.execute(insert(ScheduledStep), [dict(
                id=i.n + 1, requested_procedure_id=i.n + 1, step_id=f"SPS{i.n}",
                modality=i.modality, station_ae_title=i.station, station_name="", location="",
                start_at=i.start, performing_physician="", description=f"{i.modality} exam",
                protocol_codes=[], status="SCHEDULED", extra={}, created_at=now, updated_at=now)
                for i in part])
            conn.execute(insert(StepStationAE), [dict(step_id=i.n + 1, ae_title=i.station)
                                                 for i in part])
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
    engine.dispose()


def write_wl_files(folder: Path, items: list[Item]) -> None:
    """The same items as wlmscpfs .wl files (folder/<AE title>/*.wl)."""
    folder.mkdir(parents=True)
    (folder / "lockfile").touch()  # wlmscpfs refuses to search a folder without one
    for i in items:
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientName = f"{i.family}^{i.given}"
        ds.PatientID = f"P{i.n:07d}"
        ds.PatientBirthDate, ds.PatientSex = "19700101", "F"
        ds.AccessionNumber = f"A{i.n:07d}"
        ds.RequestedProcedureID = f"RP{i.n}"
        ds.RequestedProcedureDescription = f"{i.modality} exam"
        ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.1254.9.{i.n}"
        ds.ReferringPhysicianName = "DOC^A"
        sps = Dataset()
        sps.Modality, sps.ScheduledStationAETitle = i.modality, i.station
        sps.ScheduledProcedureStepStartDate = i.start.strftime("%Y%m%d")
        sps.ScheduledProcedureStepStartTime = i.start.strftime("%H%M%S")
        sps.ScheduledProcedureStepDescription = f"{i.modality} exam"
        sps.ScheduledProcedureStepID = f"SPS{i.n}"
        ds.ScheduledProcedureStepSequence = [sps]
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(folder / f"item{i.n:07d}.wl", implicit_vr=False, little_endian=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def start_broker(data_dir: Path, url: str, port: int) -> subprocess.Popen:
    env = dict(os.environ, BROKER_DATA_DIR=str(data_dir), BROKER_DATABASE_URL=url,
               BROKER_DICOM_PORT=str(port), BROKER_DICOM_AE_TITLE="BENCH",
               BROKER_HL7_ENABLED="false", BROKER_WEB_ENABLED="false",
               BROKER_LOGGING_LEVEL="WARNING")
    process = subprocess.Popen([sys.executable, "-m", "broker", "serve"], env=env, cwd=data_dir,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(port, process)
    return process


def start_wlmscpfs(folder: Path, port: int) -> subprocess.Popen:
    # TCP_NODELAY=1: DCMTK's own switch to disable Nagle, so the baseline is not slowed by
    # ~40 ms of delayed-ACK stalls and the ratio measures searching, not socket options.
    process = subprocess.Popen([WLMSCPFS, "-dfp", str(folder), str(port)],
                               env=dict(os.environ, TCP_NODELAY="1"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(port, process)
    return process


def query_shapes(items: list[Item], today: date) -> dict[str, list[str]]:
    day = today.strftime("%Y%m%d")
    three = f"{day}-{(today + timedelta(days=2)).strftime('%Y%m%d')}"
    name = items[len(items) // 2].family[:6]
    return {
        "today+modality": [f"{SPS}.Modality=CT", f"{SPS}.ScheduledProcedureStepStartDate={day}"],
        "today+station": [f"{SPS}.ScheduledStationAETitle=CT2",
                          f"{SPS}.ScheduledProcedureStepStartDate={day}"],
        "name wildcard": [f"PatientName={name}*"],
        "3 days+station": [f"{SPS}.ScheduledStationAETitle=MR1",
                           f"{SPS}.ScheduledProcedureStepStartDate={three}"],
    }


def run_findscu(port: int, keys: list[str], out: Path | None = None,
                env: dict[str, str] | None = None) -> float:
    """One query in a new findscu process; returns the wall time in seconds."""
    args = [FINDSCU, "-W", "-aec", "BENCH", "-aet", "SCANNER"]
    if out is not None:
        args += ["-X", "-od", str(out)]
    for key in keys + ["SpecificCharacterSet"] + RETURN_KEYS:
        if not any(key.split("=")[0] == k.split("=")[0] for k in keys) or "=" in key:
            args += ["-k", key]
    started = time.perf_counter()
    result = subprocess.run(args + ["127.0.0.1", str(port)], capture_output=True, env=env)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"findscu failed: {result.stderr.decode(errors='replace')}")
    return elapsed


def count_answers(port: int, keys: list[str]) -> int:
    with tempfile.TemporaryDirectory() as out:
        run_findscu(port, keys, Path(out))
        return len(list(Path(out).glob("rsp*.dcm")))


def measure(port: int, keys: list[str], reps: int,
            env: dict[str, str] | None = None) -> tuple[float, float]:
    run_findscu(port, keys, env=env)  # warm-up: caches, first-query plan
    times = sorted(run_findscu(port, keys, env=env) for _ in range(reps))
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    return statistics.median(times), p95


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident and peak resident memory of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def explain(url: str, shapes: dict[str, list[str]], today: date) -> None:
    """Print the database's plan for each shape's SQL (EXPLAIN QUERY PLAN / EXPLAIN)."""
    engine = make_engine(url)
    with engine.connect() as conn:
        for name, keys in shapes.items():
            stmt = build_query(identifier_from_keys(keys), QueryContext(WorklistSettings(), "", today))
            compiled = stmt.compile(engine, compile_kwargs={"literal_binds": True})
            prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
            rows = conn.execute(text(prefix + str(compiled))).all()
            print(f"  plan {name}:")
            for row in rows:
                print("    " + (str(row[-1]) if engine.dialect.name == "sqlite" else row[0]))
    engine.dispose()


def identifier_from_keys(keys: list[str]) -> Dataset:
    ds, sps = Dataset(), Dataset()
    for key in keys:
        path, _, value = key.partition("=")
        if path.startswith(SPS + "."):
            setattr(sps, path[len(SPS) + 1:], value)
        else:
            setattr(ds, path, value)
    ds.ScheduledProcedureStepSequence = [sps]
    return ds


def run_size(count: int, args: argparse.Namespace, workdir: Path, today: date) -> dict:
    """Load, serve and measure one size; returns the broker's medians and RSS."""
    folder = workdir / f"n{count}"
    folder.mkdir()
    url = args.database_url or f"sqlite:///{folder / 'broker.db'}"
    if args.database_url:
        reset_postgres(url)
    items = make_items(count, today)
    started = time.perf_counter()
    load_store(url, items)
    print(f"\n== {count:,} scheduled steps (store loaded in {time.perf_counter() - started:.1f} s)")
    shapes = query_shapes(items, today)
    wl_reps = args.reps if count <= 10_000 else max(3, args.reps // 4)
    use_wlm = not args.no_wlmscpfs and count <= args.wlmscpfs_max
    if use_wlm:
        started = time.perf_counter()
        write_wl_files(folder / "wl" / "BENCH", items)
        print(f"   .wl files written in {time.perf_counter() - started:.1f} s")
    port = free_port()
    broker = start_broker(folder, url, port)
    results: dict = {"shapes": {}}
    try:
        wlm_port = free_port()
        wlm = start_wlmscpfs(folder / "wl", wlm_port) if use_wlm else None
        try:
            print(f"   {'query':16} {'answers':>7} {'broker median':>14} {'p95':>8}"
                  + (f" {'wlmscpfs median':>16} {'p95':>8} {'ratio':>7}" if wlm else ""))
            for name, keys in shapes.items():
                answers = count_answers(port, keys)
                median, p95 = measure(port, keys, args.reps)
                line = f"   {name:16} {answers:7d} {median * 1000:11.1f} ms {p95 * 1000:5.1f} ms"
                if wlm:
                    wlm_answers = count_answers(wlm_port, keys)
                    w_median, w_p95 = measure(wlm_port, keys, wl_reps)
                    line += (f" {w_median * 1000:13.1f} ms {w_p95 * 1000:5.1f} ms "
                             f"{w_median / median:6.1f}x")
                    if wlm_answers != answers:
                        line += f"  (wlmscpfs answered {wlm_answers})"
                print(line)
                results["shapes"][name] = median
        finally:
            if wlm:
                wlm.terminate()
                wlm.wait(10)
        rss, peak = rss_mb(broker.pid)
        results["rss"] = rss
        print(f"   broker RSS {rss:.0f} MB (peak {peak:.0f} MB)")
        if args.explain or count == max(args.sizes):
            explain(url, shapes, today)
    finally:
        broker.terminate()
        broker.wait(20)
    return results


def compare_quickack(url: str, keys: list[str], reps: int, rounds: int) -> None:
    """findscu latency against the broker's DICOM server with and without TCP_QUICKACK.

    Both servers run in this process on the same store and differ only in the EVT_DATA_SENT
    handler; rounds alternate them so load from other work falls on both alike.
    """
    if QUICKACK is None:
        print("\n== TCP_QUICKACK: not on this platform")
        return
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    clients = {"findscu": None, "findscu TCP_NODELAY=1": dict(os.environ, TCP_NODELAY="1")}
    medians: dict[tuple[str, bool], list[float]] = {}
    for _ in range(rounds):
        for quickack in (True, False):
            server = start_dicom_server(DicomSettings(ae_title="BENCH", port=0),
                                        WorklistSettings(), sessions)
            if not quickack:
                server.unbind(evt.EVT_DATA_SENT, rearm_quickack)
            try:
                port = server.server_address[1]
                for client, env in clients.items():
                    median, _ = measure(port, keys, reps, env)
                    medians.setdefault((client, quickack), []).append(median)
            finally:
                server.shutdown()
    engine.dispose()
    print(f"\n== TCP_QUICKACK on the broker's association sockets: median of {rounds} rounds "
          f"x {reps} queries, same run")
    print(f"   {'client':22} {'with':>9} {'without':>9} {'without/with':>13}")
    for client in clients:
        with_ = statistics.median(medians[(client, True)])
        without = statistics.median(medians[(client, False)])
        print(f"   {client:22} {with_ * 1000:6.1f} ms {without * 1000:6.1f} ms "
              f"{without / with_:12.2f}x")


def reset_postgres(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    parser.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")],
                        default=[1_000, 10_000, 100_000])
    parser.add_argument("--reps", type=int, default=20, help="queries per shape and server")
    parser.add_argument("--database-url", default="",
                        help="PostgreSQL URL to bench instead of SQLite (its schema is reset!)")
    parser.add_argument("--postgres", action="store_true",
                        help="start a throwaway PostgreSQL server (needs the postgresql package)")
    parser.add_argument("--no-wlmscpfs", action="store_true", help="skip the wlmscpfs baseline")
    parser.add_argument("--wlmscpfs-max", type=int, default=100_000,
                        help="largest size also served by wlmscpfs")
    parser.add_argument("--explain", action="store_true", help="print plans at every size")
    parser.add_argument("--quickack-rounds", type=int, default=5,
                        help="alternating rounds of the TCP_QUICKACK comparison (0: skip it)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.reps, args.quickack_rounds = [200, 400], 2, 1
    for tool in (FINDSCU,) + (() if args.no_wlmscpfs else (WLMSCPFS,)):
        if not Path(tool).exists():
            print(f"{tool} is missing: install the Debian package dcmtk", file=sys.stderr)
            return 2
    today = date.today()
    print(f"MWL C-FIND latency via {FINDSCU} (new process + association per query); "
          f"{args.reps} queries per shape; {os.cpu_count()} CPUs shared with other work, "
          f"so figures are noisy")
    workdir = Path(tempfile.mkdtemp(prefix="mwl-bench-"))
    server = None
    try:
        if args.postgres:
            from tests.support.postgres import PostgresServer
            server = PostgresServer()
            server.start()
            args.database_url = server.create_database("mwl_bench")
            print(f"store: PostgreSQL at {args.database_url}")
        results = {count: run_size(count, args, workdir, today) for count in args.sizes}
        if args.quickack_rounds:  # on the smallest SQLite store, or the PostgreSQL one as left
            url = args.database_url or f"sqlite:///{workdir / f'n{min(args.sizes)}' / 'broker.db'}"
            keys = query_shapes(make_items(1, today), today)["today+station"]
            compare_quickack(url, keys, args.reps, args.quickack_rounds)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    low, high = min(results), max(results)
    print(f"\n== broker growth from {low:,} to {high:,} steps (median latency ratio)")
    for name, median in results[low]["shapes"].items():
        print(f"   {name:16} {results[high]['shapes'][name] / median:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
