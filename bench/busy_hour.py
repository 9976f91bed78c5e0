"""A department's busy hour against `python -m broker serve`, over real sockets (issue 16).

Phases, in one run so both see the same (shared, noisy) machine:

  idle    one operation at a time: an HL7 order, a worklist query, an MPPS pair, a C-ECHO;
  loaded  for --seconds: --ehr MLLP connections sending --rate orders/s each, --scanners
          pynetdicom scanners each querying its day's worklist every 2-4 s (an association per
          query, as scanners do), --modalities sending MPPS IN PROGRESS then COMPLETED.

Orders (OMI^O23, station in IPC-9) are scheduled over 30 days, so a scanner's query for today
answers what a real day holds; a first --preload orders fill the store before measuring. Two
of the scanners ask for all of today's steps (any station), the broad query some sites use.

Prints p50/p95/p99/max and errors per operation and phase, the broker's CPU share, and the
issue's targets (0 errors; worklist p95 loaded <= 2x idle, p99 <= 4x idle; HL7 ACK p99 <=
50 ms) as met or missed. Figures are printed, never asserted.

    python bench/busy_hour.py [--quick] [--seconds 60] [--preload 4000] [--database URL]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import socket
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pydicom.dataset import Dataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402
from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import (  # noqa: E402
    ModalityPerformedProcedureStep, ModalityWorklistInformationFind, Verification,
)

from servers import ServerProcess  # noqa: E402
from tests.support.modality import finished, in_progress, scheduled_item  # noqa: E402
from tests.support.postgres import free_port  # noqa: E402

MODALITIES = ["CT"] * 6 + ["MR"] * 4 + ["US"] * 4 + ["CR"] * 3 + ["MG"] * 3
CODES = {"CT": "CTCHEST^CT chest", "MR": "MRBRAIN^MR brain", "US": "USABD^US abdomen",
         "CR": "XRCHEST^XR chest", "MG": "MGSCREEN^Mammography"}
FAMILIES = ["Andersson", "Björk", "Nguyen", "Okafor", "Schmidt", "Rossi", "Kowalski", "Tanaka",
            "Müller", "Dubois", "García", "O'Brien", "Smith", "Ivanova", "Haddad", "Silva"]
GIVEN = ["Anna", "Erik", "Linh", "Chidi", "Jürgen", "Giulia", "Piotr", "Yuki", "Zoë", "Omar"]
OMI = ("MSH|^~\\&|BENCH{conn}|HOSP|BROKER|RADIOLOGY|{now}||OMI^O23^OMI_O23|{control}|P|2.5.1"
       "||||||UNICODE UTF-8\r"
       "PID|1||{mrn}^^^HOSP^MR||{family}^{given}||{birth}|{sex}\r"
       "PV1|1|O|RAD^1^1^HOSP|||||5678^Shepherd^Derek^^^Dr\r"
       "ORC|NW|{placer}^BENCH|||SC||||{now}|||5678^Shepherd^Derek^^^Dr\r"
       "TQ1|1||||||{start}||R\r"
       "OBR|1|{placer}^BENCH||{code}^L|||{now}|||||||||5678^Shepherd^Derek^^^Dr||{acc}"
       "|||||||||||||||||||||||||||{code}^L\r"
       "IPC|{acc}|RP{n}|{study}|SPS{n}|{modality}^{modality}^DCM|P001^Routine^99LOCAL"
       "|Room {station}|{station}LOC|{station}")


# --- what is sent ----------------------------------------------------------------------------

def station(i: int) -> tuple[str, str]:
    """Scanner i's station AE title and modality."""
    return f"ST{i % len(MODALITIES) + 1:02d}", MODALITIES[i % len(MODALITIES)]


def order(run: str, conn: int, n: int, rng: random.Random, today: date) -> tuple[bytes, dict]:
    """One OMI^O23 new order for a random station, scheduled within the next 30 days."""
    st, modality = station(rng.randrange(len(MODALITIES)))
    # Every 30th order is for today, so even a short run has steps for the MPPS modalities.
    day = today + timedelta(days=0 if n % 30 == 0 else rng.randrange(30))
    start = datetime(day.year, day.month, day.day, rng.randint(7, 18), rng.choice([0, 15, 30, 45]))
    key = f"{run}{conn}x{n}"
    values = dict(conn=conn, now=datetime.now().strftime("%Y%m%d%H%M%S"), control=f"C{key}",
                  mrn=f"M{key}", family=rng.choice(FAMILIES), given=rng.choice(GIVEN),
                  birth=f"19{rng.randint(30, 99)}0{rng.randint(1, 9)}1{rng.randint(0, 9)}",
                  sex=rng.choice("MF"), placer=f"P{key}", start=start.strftime("%Y%m%d%H%M"),
                  code=CODES[modality], acc=f"A{key}", n=key,
                  study=f"1.2.826.0.1.3680043.10.1254.{run}.{conn}.{n}", modality=modality,
                  station=st)
    return OMI.format(**values).encode(), values | {"day": day}


def mwl_query(st: str, modality: str, today: date, broad: bool) -> Dataset:
    """A scanner's query for today: its station and modality, or all of today (broad)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                    "AccessionNumber", "StudyInstanceUID", "RequestedProcedureID",
                    "RequestedProcedureDescription"):
        setattr(ds, keyword, "")
    sps = Dataset()
    sps.ScheduledStationAETitle = "" if broad else st
    sps.Modality = "" if broad else modality
    sps.ScheduledProcedureStepStartDate = today.strftime("%Y%m%d")
    for keyword in ("ScheduledProcedureStepStartTime", "ScheduledProcedureStepID",
                    "ScheduledProcedureStepDescription", "ScheduledPerformingPhysicianName"):
        setattr(sps, keyword, "")
    ds.ScheduledProcedureStepSequence = Sequence([sps])
    return ds


# --- measuring -------------------------------------------------------------------------------

class Recorder:
    """Latency samples and errors per (phase, operation), from many threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.samples: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.errors: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.phase = "idle"

    def add(self, op: str, seconds: float) -> None:
        with self.lock:
            self.samples[(self.phase, op)].append(seconds)

    def error(self, op: str, reason: str) -> None:
        with self.lock:
            self.errors[(self.phase, op)].append(reason)

    def merge(self, phase: str, samples: dict[str, list[float]], errors: dict[str, list[str]]):
        with self.lock:
            for op, values in samples.items():
                self.samples[(phase, op)] += values
            for op, values in errors.items():
                self.errors[(phase, op)] += values


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of `values`, in ms."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))] * 1000


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- HL7 senders (a process of their own, so their timing is not the scanners' GIL's) ---------

def _read_ack(sock: socket.socket) -> bytes:
    reply = b""
    while not reply.endswith(b"\x1c\r"):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the ACK")
        reply += chunk
    return reply


def _send_order(sock: socket.socket, raw: bytes, control: str) -> str | None:
    """Send one framed order; None when ACKed AA with its control id, else the problem."""
    sock.sendall(b"\x0b" + raw + b"\x1c\r")
    ack = _read_ack(sock).strip(b"\x0b\x1c\r").decode("utf-8", "replace")
    msa = next((s.split("|") for s in ack.split("\r") if s.startswith("MSA")), [])
    if len(msa) < 3 or msa[1] != "AA" or msa[2] != control:
        return f"ACK {msa[1:3] if msa else ack[:40]!r}"
    return None


def ehr_connection(port: int, run: str, conn: int, rate: float, seconds: float, count: int,
                   seed: int, out: dict) -> None:
    """One EHR connection: `rate` orders/s for `seconds` (or `count` orders as fast as it can)."""
    rng = random.Random(seed)
    today = date.today()
    samples, errors, sent = [], [], []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        begin = time.perf_counter()
        n = 0
        while (count and n < count) or (not count and time.perf_counter() - begin < seconds):
            if rate:
                delay = begin + n / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            raw, values = order(run, conn, n, rng, today)
            t0 = time.perf_counter()
            try:
                problem = _send_order(sock, raw, values["control"])
            except OSError as exc:
                errors.append(f"{exc.__class__.__name__}")
                break
            samples.append(time.perf_counter() - t0)
            if problem:
                errors.append(problem)
            elif values["day"] == today:
                sent.append({k: values[k] for k in ("mrn", "acc", "study", "n", "family",
                                                   "given", "station", "modality")})
            n += 1
    out[conn] = (samples, errors, sent)


def _ehr_process(port: int, run: str, conns: int, rate: float, seconds: float, count: int,
                 results: multiprocessing.Queue) -> None:
    out: dict = {}
    threads = [threading.Thread(target=ehr_connection,
                                args=(port, run, c, rate, seconds, count, 1000 + c, out))
               for c in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put(out)


def start_ehr(port: int, run: str, conns: int, rate: float, seconds: float, count: int = 0):
    """Start the EHR connections in a child process (spawned: this one runs client threads)."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_ehr_process,
                            args=(port, run, conns, rate, seconds, count, results))
    child.start()
    return child, results


def run_ehr(port: int, run: str, conns: int, rate: float, seconds: float, count: int = 0
            ) -> tuple[list[float], list[str], list[dict]]:
    """Run the EHR connections in a child process; their samples, errors and today's orders."""
    return ehr_results(*start_ehr(port, run, conns, rate, seconds, count))


def ehr_results(child, results) -> tuple[list[float], list[str], list[dict]]:
    """Wait for the EHR child; its samples, errors and today's orders."""
    out = results.get()
    child.join()
    samples, errors, sent = [], [], []
    for s, e, t in out.values():
        samples += s
        errors += e
        sent += t
    return samples, errors, sent


# --- DICOM clients ---------------------------------------------------------------------------

def scanner_ae(title: str) -> AE:
    ae = AE(ae_title=title)
    ae.add_requested_context(ModalityWorklistInformationFind)
    ae.add_requested_context(Verification)
    ae.add_requested_context(ModalityPerformedProcedureStep)
    return ae


def query_once(rec: Recorder, port: int, i: int, broad: bool) -> None:
    """One scanner query: associate, C-FIND for today, release; timed separately."""
    st, modality = station(i)
    ae = scanner_ae(st)
    t0 = time.perf_counter()
    assoc = ae.associate("127.0.0.1", port, ae_title="BROKER")
    if not assoc.is_established:
        rec.error("MWL association", "rejected" if assoc.is_rejected else "not established")
        return
    t1 = time.perf_counter()
    rec.add("MWL association", t1 - t0)
    op = "MWL C-FIND (all of today)" if broad else "MWL C-FIND (station, today)"
    try:
        final = None
        for status, _ in assoc.send_c_find(mwl_query(st, modality, date.today(), broad),
                                           ModalityWorklistInformationFind):
            final = status.get("Status")
        t2 = time.perf_counter()
        if final != 0x0000:
            rec.error(op, f"status {final}")
        else:
            rec.add(op, t2 - t1)
    finally:
        assoc.release()


def mpps_once(rec: Recorder, port: int, title: str, target: dict, pause: float) -> None:
    """IN PROGRESS then, `pause` seconds later, COMPLETED: an association for each."""
    uid = f"{target['study']}.9{random.randrange(10**6)}"
    item = scheduled_item(target["study"], target["acc"], f"RP{target['n']}", f"SPS{target['n']}")
    create = in_progress([item], patient_id=target["mrn"],
                         name=f"{target['family']}^{target['given']}",
                         modality=target["modality"], station=target["station"])
    for op, send in (("MPPS N-CREATE", lambda a: a.send_n_create(
            create, ModalityPerformedProcedureStep, uid)),
                     ("MPPS N-SET", lambda a: a.send_n_set(
            finished(), ModalityPerformedProcedureStep, uid))):
        assoc = scanner_ae(title).associate("127.0.0.1", port, ae_title="BROKER")
        if not assoc.is_established:
            rec.error("MPPS association", "rejected" if assoc.is_rejected else "not established")
            return
        try:
            t0 = time.perf_counter()
            status, _ = send(assoc)
            elapsed = time.perf_counter() - t0
            if status.get("Status") != 0x0000:
                rec.error(op, f"status {status.get('Status')}")
                return
            rec.add(op, elapsed)
        finally:
            assoc.release()
        time.sleep(pause)


def echo_once(rec: Recorder, port: int) -> None:
    """An association with one C-ECHO, timed whole."""
    t0 = time.perf_counter()
    assoc = scanner_ae("ECHO").associate("127.0.0.1", port, ae_title="BROKER")
    if not assoc.is_established:
        rec.error("C-ECHO (associate+echo)", "rejected")
        return
    status = assoc.send_c_echo().get("Status")
    assoc.release()
    if status != 0:
        rec.error("C-ECHO (associate+echo)", f"status {status}")
    else:
        rec.add("C-ECHO (associate+echo)", time.perf_counter() - t0)


class Targets:
    """Today's orders not yet performed, handed to the MPPS modalities once each."""

    def __init__(self, orders: list[dict]) -> None:
        self.lock = threading.Lock()
        self.orders = list(orders)
        random.Random(5).shuffle(self.orders)

    def add(self, orders: list[dict]) -> None:
        with self.lock:
            self.orders += orders

    def take(self) -> dict | None:
        with self.lock:
            return self.orders.pop() if self.orders else None


def guarded(rec: Recorder, op: str, work) -> None:
    """Run one client operation; an exception is an error of that operation, not a crash."""
    try:
        work()
    except Exception as exc:  # noqa: BLE001 - the bench counts failures, it does not stop
        rec.error(op, exc.__class__.__name__)


def scanner_loop(rec: Recorder, port: int, i: int, stop: threading.Event, broad: bool) -> None:
    rng = random.Random(i)
    stop.wait(rng.uniform(0, 2))
    while not stop.is_set():
        guarded(rec, "MWL association", lambda: query_once(rec, port, i, broad))
        stop.wait(rng.uniform(2, 4))


def modality_loop(rec: Recorder, port: int, i: int, stop: threading.Event,
                  targets: Targets) -> None:
    rng = random.Random(100 + i)
    stop.wait(rng.uniform(0, 2))
    while not stop.is_set():
        target = targets.take()
        if target is None:
            stop.wait(1)
            continue
        guarded(rec, "MPPS association",
                lambda: mpps_once(rec, port, f"MOD{i}", target, rng.uniform(1, 2)))
        stop.wait(rng.uniform(2, 4))


# --- the run ---------------------------------------------------------------------------------

def start_broker(folder: Path, database_url: str) -> tuple[ServerProcess, int, int]:
    """`python -m broker serve` with HL7 and DICOM on free ports; (server, hl7, dicom)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("BROKER_")}
    hl7_port, dicom_port = free_port(), free_port()
    env.update({"PYTHONPATH": str(REPO), "BROKER_DATA_DIR": str(folder / "data"),
                "BROKER_DATABASE_URL": database_url, "BROKER_HL7_PORT": str(hl7_port),
                "BROKER_DICOM_PORT": str(dicom_port), "BROKER_WEB_ENABLED": "false"})
    server = ServerProcess("broker", [sys.executable, "-m", "broker", "serve"], env, folder,
                           hl7_port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", dicom_port)) == 0:
                return server, hl7_port, dicom_port
        time.sleep(0.05)
    server.stop()
    raise TimeoutError("the DICOM port did not open")


def idle_phase(rec: Recorder, hl7: int, dicom: int, seconds: float, run: str,
               targets: Targets) -> None:
    """One operation at a time, with pauses: the latency each has on an idle broker."""
    rng = random.Random(7)
    end = time.perf_counter() + seconds
    n = 0
    with socket.create_connection(("127.0.0.1", hl7)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while time.perf_counter() < end:
            raw, values = order(run, 9, n, rng, date.today())
            t0 = time.perf_counter()
            problem = _send_order(sock, raw, values["control"])
            rec.add("HL7 order ACK", time.perf_counter() - t0)
            if problem:
                rec.error("HL7 order ACK", problem)
            n += 1
            time.sleep(0.05)
            guarded(rec, "MWL association", lambda: query_once(rec, dicom, n, False))
            time.sleep(0.05)
            if n % 5 == 0:
                guarded(rec, "MWL association", lambda: query_once(rec, dicom, n, True))
                time.sleep(0.05)
            if n % 3 == 0 and (target := targets.take()):
                guarded(rec, "MPPS association", lambda: mpps_once(rec, dicom, "MODIDLE",
                                                                     target, 0.05))
            guarded(rec, "C-ECHO (associate+echo)", lambda: echo_once(rec, dicom))
            time.sleep(0.05)


def loaded_phase(rec: Recorder, hl7: int, dicom: int, args: argparse.Namespace, run: str,
                 targets: Targets) -> None:
    """The busy hour's mix, all at once, for args.seconds."""
    stop = threading.Event()
    threads = [threading.Thread(target=scanner_loop,
                                args=(rec, dicom, i, stop, i >= args.scanners - 2))
               for i in range(args.scanners)]
    threads += [threading.Thread(target=modality_loop, args=(rec, dicom, i, stop, targets))
                for i in range(args.modalities)]
    threads.append(threading.Thread(target=lambda: [
        guarded(rec, "C-ECHO (associate+echo)", lambda: echo_once(rec, dicom)) or stop.wait(1)
        for _ in iter(stop.is_set, True)]))
    ehr = start_ehr(hl7, run, args.ehr, args.rate, args.seconds)
    for t in threads:
        t.start()
    samples, errors, _ = ehr_results(*ehr)
    stop.set()
    for t in threads:
        t.join()
    rec.merge("loaded", {"HL7 order ACK": samples}, {"HL7 order ACK": errors} if errors else {})


def report(rec: Recorder, cpu: dict[str, float], args: argparse.Namespace) -> list[str]:
    lines = [f"{'operation':<30} {'phase':<7} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} "
             f"{'p99 ms':>8} {'max ms':>8} {'errors':>6}"]
    ops = sorted({op for _, op in rec.samples} | {op for _, op in rec.errors})
    for op in ops:
        for phase in ("idle", "loaded"):
            values = rec.samples.get((phase, op), [])
            errs = rec.errors.get((phase, op), [])
            if not values and not errs:
                continue
            figures = (f"{percentile(values, .5):8.1f} {percentile(values, .95):8.1f} "
                       f"{percentile(values, .99):8.1f} {max(values) * 1000:8.1f}"
                       if values else f"{'-':>8} {'-':>8} {'-':>8} {'-':>8}")
            lines.append(f"{op:<30} {phase:<7} {len(values):>6} {figures} {len(errs):>6}")
            for reason in sorted(set(errs))[:3]:
                lines.append(f"    error: {reason} (x{errs.count(reason)})")
    lines.append("")
    sent = len(rec.samples.get(("loaded", "HL7 order ACK"), []))
    # Each EHR connection waits for its ACK before the next order: a slow broker lowers the rate.
    lines.append(f"HL7 orders under load: {sent / args.seconds:.1f}/s achieved of "
                 f"{args.ehr * args.rate:g}/s offered")
    for phase, share in cpu.items():
        lines.append(f"broker CPU, {phase}: {share:.0%} of one core")
    lines += targets_lines(rec)
    return lines


def targets_lines(rec: Recorder) -> list[str]:
    """The issue's targets, each met or missed."""
    lines = []
    errors = sum(len(v) for (phase, _), v in rec.errors.items() if phase == "loaded")
    lines.append(f"target errors under load = 0: {errors} -> {'met' if not errors else 'MISSED'}")
    for op in ("MWL C-FIND (station, today)", "MWL C-FIND (all of today)"):
        idle, loaded = rec.samples.get(("idle", op)), rec.samples.get(("loaded", op))
        if not idle or not loaded:
            continue
        for q, limit in ((.95, 2), (.99, 4)):
            ratio = percentile(loaded, q) / percentile(idle, q)
            lines.append(f"target {op} p{int(q * 100)} loaded/idle <= {limit}x: {ratio:.2f}x -> "
                         f"{'met' if ratio <= limit else 'MISSED'}")
    acks = rec.samples.get(("loaded", "HL7 order ACK"))
    if acks:
        p99 = percentile(acks, .99)
        lines.append(f"target HL7 ACK p99 under load <= 50 ms: {p99:.1f} ms -> "
                     f"{'met' if p99 <= 50 else 'MISSED'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--preload", type=int, default=4000, help="orders stored before measuring")
    parser.add_argument("--ehr", type=int, default=4, help="EHR MLLP connections")
    parser.add_argument("--rate", type=float, default=20.0, help="orders/s per EHR connection")
    parser.add_argument("--scanners", type=int, default=20)
    parser.add_argument("--modalities", type=int, default=6)
    parser.add_argument("--database", default="", help="database URL (default: SQLite)")
    parser.add_argument("--quick", action="store_true", help="a few seconds, for the smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.idle_seconds, args.preload = 4.0, 2.0, 240
        args.ehr, args.rate, args.scanners, args.modalities = 2, 5.0, 4, 2
    folder = Path(tempfile.mkdtemp(prefix="busy-hour-"))
    url = args.database or f"sqlite:///{(folder / 'data' / 'broker.db').as_posix()}"
    run = f"{int(time.time()) % 10**6}"
    server, hl7, dicom = start_broker(folder, url)
    rec = Recorder()
    cpu: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        _, errors, today = run_ehr(hl7, run + "0", args.ehr, 0, 0, args.preload // args.ehr)
        print(f"preloaded {args.preload} orders over 30 days ({len(today)} today) in "
              f"{time.perf_counter() - t0:.1f} s, {len(errors)} errors", flush=True)
        targets = Targets(today)
        for phase, work in (("idle", lambda: idle_phase(rec, hl7, dicom, args.idle_seconds,
                                                          run + "1", targets)),
                            ("loaded", lambda: loaded_phase(rec, hl7, dicom, args, run + "2",
                                                            targets))):
            rec.phase = phase
            c0, w0 = cpu_seconds(server.process.pid), time.perf_counter()
            work()
            cpu[phase] = (cpu_seconds(server.process.pid) - c0) / (time.perf_counter() - w0)
    finally:
        status = server.stop()
    print(f"{args.ehr} EHR x {args.rate:g} orders/s, {args.scanners} scanners, "
          f"{args.modalities} MPPS modalities, {args.seconds:g} s loaded; {os.cpu_count()} cores")
    print("\n".join(report(rec, cpu, args)))
    if status not in (0, None):
        print(f"broker exited with {status}:\n{server.log_tail()}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
