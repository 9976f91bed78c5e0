"""FHIR order intake as the EHR and the scanner see it, against a real sekmet-fhir server.

1. Latency: a ServiceRequest created on the FHIR server -> the item served to /usr/bin/findscu,
   one order at a time, in rest-hook mode (and backport with --modes); findscu is run in a
   loop until the item appears, so each figure includes up to one findscu run (~10-30 ms).
2. Catch-up: the broker is stopped, N orders (default 1,000) are created, the broker is
   started again; the time from start until every order is stored, and a findscu count.
   The broker's subscription is switched off while it is down, so the server does not queue
   a thousand failed deliveries (three tries each) in front of the measurement.

    python bench/fhir_intake.py [--quick] [--orders N] [--catch-up N] [--modes rest-hook,backport]

Figures on a shared machine are noisy; the issue's targets are p95 <= 1 s (rest-hook) and a
catch-up of 1,000 orders in <= 20 s.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select  # noqa: E402

from broker.config import FhirSettings, load_settings  # noqa: E402
from broker.service import Broker  # noqa: E402
from broker.store.models import Order  # noqa: E402
from tests.support.dcmtk import findscu  # noqa: E402
from tests.support.sekmet import (  # noqa: E402
    TOPIC_URL, SekmetServer, new_key, patient_resource, service_request,
)


def _settings(folder: Path, sekmet: SekmetServer, mode: str, web_port: int = 0):
    base = load_settings(path=None, environ={
        "BROKER_DATA_DIR": str(folder), "BROKER_HL7_PORT": "0", "BROKER_DICOM_PORT": "0",
        "BROKER_WEB_PORT": str(web_port)}, default_file=None)
    # Notifications only during the latency run: the catch-up search is set far apart.
    return replace(base, fhir=FhirSettings(base_url=sekmet.base_url, mode=mode,
                                           poll_seconds=600.0,
                                           topic=TOPIC_URL if mode == "backport" else ""))


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.005)
    return value


def _subscription_active(broker: Broker) -> bool:
    state = broker.fhir.status()
    return state.get("subscription_status") == "active"


def _served(broker: Broker, accession: str) -> int:
    return len(findscu(broker.listeners.dicom[1], [f"AccessionNumber={accession}", "PatientID"]))


def latency(sekmet: SekmetServer, mode: str, orders: int) -> list[float]:
    """Seconds from the create request to the item served to findscu, per order."""
    folder = Path(tempfile.mkdtemp(prefix=f"fhir-bench-{mode}-"))
    broker = Broker(_settings(folder, sekmet, mode))
    broker.start()
    try:
        _wait(lambda: _subscription_active(broker), 30, "an active subscription")
        patient = sekmet.create(patient_resource(new_key("M")))
        start = datetime.now() + timedelta(hours=1)
        samples = []
        for n in range(orders):
            accession = new_key("L")
            began = time.perf_counter()
            sekmet.create(service_request(patient["id"], new_key("P"), accession,
                                          start + timedelta(minutes=n)))
            _wait(lambda: _served(broker, accession), 30, accession)
            samples.append(time.perf_counter() - began)
        return samples
    finally:
        broker.stop()
        sekmet.switch_off_subscriptions()


def catch_up(sekmet: SekmetServer, count: int) -> tuple[float, float, int]:
    """(seconds to create `count` orders while the broker is down, seconds from restart until
    all are stored, orders findscu then gets)."""
    folder = Path(tempfile.mkdtemp(prefix="fhir-bench-catch-up-"))
    settings = _settings(folder, sekmet, "rest-hook")
    broker = Broker(settings)
    broker.start()
    _wait(lambda: _subscription_active(broker), 30, "an active subscription")
    broker.stop()
    sekmet.switch_off_subscriptions()
    prefix = new_key("C")[:8]
    people = [sekmet.create(patient_resource(new_key("M"))) for _ in range(20)]
    start = datetime.now() + timedelta(hours=2)
    began = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: sekmet.create(service_request(
            people[n % 20]["id"], f"{prefix}P{n}", f"{prefix}{n:05d}",
            start + timedelta(seconds=n))), range(count)))
    created = time.perf_counter() - began

    again = Broker(settings)
    began = time.perf_counter()
    again.start()
    try:
        def stored() -> bool:
            with again.sessions() as session:
                return session.scalar(select(func.count()).select_from(Order).where(
                    Order.accession_number.like(f"{prefix}%"))) >= count
        _wait(stored, 600, f"{count} orders")
        elapsed = time.perf_counter() - began
        served = len(findscu(again.listeners.dicom[1], [f"AccessionNumber={prefix}*"]))
        return created, elapsed, served
    finally:
        again.stop()
        sekmet.switch_off_subscriptions()


def _describe(mode: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return (f"latency {mode:<10} n={len(ms):<4} p50 {statistics.median(ms):7.1f} ms  "
            f"p95 {p95:7.1f} ms  max {ms[-1]:7.1f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 orders, catch-up of 100")
    parser.add_argument("--orders", type=int, default=50)
    parser.add_argument("--catch-up", type=int, default=1000, dest="catch_up")
    parser.add_argument("--modes", default="rest-hook,backport")
    args = parser.parse_args(argv)
    orders, count = (10, 100) if args.quick else (args.orders, args.catch_up)
    sekmet = SekmetServer()
    sekmet.start()
    try:
        for mode in args.modes.split(","):
            print(_describe(mode, latency(sekmet, mode, orders)), flush=True)
        created, elapsed, served = catch_up(sekmet, count)
        print(f"catch-up   {count} orders created while down in {created:.1f} s; stored "
              f"{elapsed:.1f} s after restart ({count / elapsed:.0f} orders/s); findscu "
              f"serves {served}", flush=True)
    finally:
        sekmet.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
