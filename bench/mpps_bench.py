"""MPPS SCP latency as a modality sees it: N-CREATE and N-SET COMPLETED against C-ECHO.

Runs the broker's DICOM server in-process on a temporary SQLite store (or BROKER_DATABASE_URL),
schedules one order per iteration, and times each DIMSE round trip over one association with
pynetdicom as the modality. Prints median, p95 and IQR in milliseconds, and the ratio of each
median to the C-ECHO median measured in the same run (the baseline: the network and DIMSE cost
with no database work). Figures on a shared machine are noisy; compare ratios, not absolutes.

    python bench/mpps_bench.py [--quick] [--iterations N] [--client-nodelay]

A default pynetdicom client leaves Nagle on: a request sent as a command PDU plus a data set
PDU then waits for the server's delayed ACK (~30-40 ms on Linux loopback). --client-nodelay
shows the broker's own cost without that client-side wait.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import ModalityPerformedProcedureStep, Verification  # noqa: E402

from broker.config import DicomSettings, MppsSettings, WorklistSettings  # noqa: E402
from broker.dicom.scp import start_dicom_server  # noqa: E402
from broker.store.db import make_engine, make_session_factory  # noqa: E402
from broker.store.migrate import upgrade  # noqa: E402
from tests.support.modality import finished, in_progress, scheduled_item  # noqa: E402
from tests.support.schedule import schedule  # noqa: E402


def _figures(name: str, samples: list[float], baseline: float | None) -> str:
    ms = sorted(s * 1000 for s in samples)
    quartiles = statistics.quantiles(ms, n=4)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    median = statistics.median(ms)
    ratio = f"{median / baseline:6.1f}x" if baseline else "  1.0x"
    return (f"{name:<22} n={len(ms):<4} median {median:7.2f} ms  p95 {p95:7.2f} ms  "
            f"IQR {quartiles[2] - quartiles[0]:6.2f} ms  vs C-ECHO {ratio}")


def run(iterations: int, client_nodelay: bool = False) -> list[str]:
    """Time C-ECHO, N-CREATE and N-SET `iterations` times; returns the printed lines."""
    folder = tempfile.mkdtemp(prefix="mpps-bench-")
    url = os.environ.get("BROKER_DATABASE_URL") or f"sqlite:///{folder}/bench.db"
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    # New order numbers on every run, so a reused database (BROKER_DATABASE_URL) works too.
    first = time.time_ns() // 10**6 % 10**5 * 1000
    orders = [schedule(sessions, first + n) for n in range(iterations)]
    server = start_dicom_server(DicomSettings(port=0), WorklistSettings(), sessions, MppsSettings())
    ae = AE(ae_title="BENCH")
    ae.add_requested_context(Verification)
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", server.server_address[1], ae_title="BROKER")
    if client_nodelay:
        assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    echo, create, update = [], [], []
    try:
        for order in orders:
            t0 = time.perf_counter()
            assoc.send_c_echo()
            t1 = time.perf_counter()
            ds = in_progress([scheduled_item(order["study"], order["accession"], order["rp"],
                                             order["sps"][0])])
            uid = f"2.25.{order['order']}{time.monotonic_ns()}"
            t2 = time.perf_counter()
            status, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep, uid)
            t3 = time.perf_counter()
            change = finished()
            t4 = time.perf_counter()
            done, _ = assoc.send_n_set(change, ModalityPerformedProcedureStep, uid)
            t5 = time.perf_counter()
            if status.Status != 0 or done.Status != 0:
                raise SystemExit(f"unexpected status {status.Status:#06x} / {done.Status:#06x}")
            echo.append(t1 - t0)
            create.append(t3 - t2)
            update.append(t5 - t4)
    finally:
        assoc.release()
        server.shutdown()
        engine.dispose()
    base = statistics.median(echo) * 1000
    return [f"database: {engine.dialect.name}, {iterations} iterations, one association, "
            f"client TCP_NODELAY {'on' if client_nodelay else 'off'}",
            _figures("C-ECHO (baseline)", echo, None),
            _figures("N-CREATE IN PROGRESS", create, base),
            _figures("N-SET COMPLETED", update, base)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few iterations, runs in seconds")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--client-nodelay", action="store_true",
                        help="disable Nagle on the modality's socket too")
    args = parser.parse_args()
    for line in run(15 if args.quick else args.iterations, args.client_nodelay):
        print(line)


if __name__ == "__main__":
    main()
