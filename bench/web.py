"""Server time of the admin UI's busiest pages and their API calls on a large store.

A SQLite store is filled with bulk Core inserts (100,000 patients, 100,000 orders with one
procedure and step each, spread over 60 days around today, one inbound message per order, a few
per cent failed, and 1,000 open match-queue entries) and cached under bench/.data/. The Flask
app answers in-process (its test client: no socket, so the figure is the server's own time);
each request is made `--repeat` times after one untimed warm-up, and p50/p95 are printed beside
the target of issue 19 (p95 <= 300 ms). Nothing is asserted.

    .venv/bin/python bench/web.py                       # full size (a minute to build once)
    .venv/bin/python bench/web.py --orders 2000 --patients 2000 --queue 50 --repeat 3
"""
from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import insert  # noqa: E402

from broker.admin import create_app  # noqa: E402
from broker.admin.accounts import add_user  # noqa: E402
from broker.admin.status import head_revision  # noqa: E402
from broker.clock import local_now  # noqa: E402
from broker.store.db import make_engine, make_session_factory  # noqa: E402
from broker.store.migrate import upgrade  # noqa: E402
from broker.store.models import (  # noqa: E402
    InboundMessage, MatchCandidate, Order, Patient, PatientIdentifier, RequestedProcedure,
    ScheduledStep, StepStationAE,
)

TARGET_MS = 300.0
FAMILIES = ["Smith", "Jones", "Garcia", "Müller", "Rossi", "Kowalski", "Nguyen", "Okafor",
            "Lindqvist", "Moreau", "Novak", "Tanaka", "Silva", "Cohen", "Murphy", "Schmidt"]
GIVEN = ["Anna", "John", "Maria", "Peter", "Grace", "Ivan", "Lena", "Omar", "Sara", "Tom"]
MODALITIES = [("CT", "CT1"), ("MR", "MR1"), ("US", "US1"), ("CR", "XR1"), ("MG", "MG1")]
STATUSES = ["SCHEDULED"] * 6 + ["ARRIVED", "STARTED", "COMPLETED", "CANCELED"]
PASSWORD = "bench password 1"
BATCH = 5000


def build(path: Path, orders: int, patients: int, queue: int) -> None:
    """Fill a fresh store with bulk inserts (ids given, so rows reference each other)."""
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    rng = random.Random(19)
    today = datetime.combine(local_now().date(), datetime.min.time())
    now = datetime.utcnow()
    with engine.begin() as conn:
        for start in range(1, patients + 1, BATCH):
            ids = range(start, min(start + BATCH, patients + 1))
            rows, idents = [], []
            for n in ids:
                family, given = rng.choice(FAMILIES) + str(n % 997), rng.choice(GIVEN)
                rows.append(dict(id=n, name=f"{family}^{given}", family_name=family,
                                 given_name=given, name_key=f"{family}^{given}".upper(),
                                 birth_date=f"19{rng.randint(30, 99)}0{rng.randint(1, 9)}1{rng.randint(0, 9)}",
                                 sex=rng.choice("MF"), extra={}))
                idents.append(dict(id=n, patient_id=n, value=f"MRN{n:07d}", issuer="HOSP",
                                   type_code="MR"))
            conn.execute(insert(Patient), rows)
            conn.execute(insert(PatientIdentifier), idents)
        for start in range(1, orders + 1, BATCH):
            ids = range(start, min(start + BATCH, orders + 1))
            messages, order_rows, procs, steps, stations = [], [], [], [], []
            for n in ids:
                failed = rng.random() < 0.03
                received = now - timedelta(seconds=(orders - n) * 20)
                messages.append(dict(id=n, channel="hl7", sender="EPIC|GENHOSP",
                                     control_id=f"B{n:08d}", message_type="ORM^O01", peer="",
                                     raw=f"MSH|^~\\&|EPIC|GENHOSP|||||ORM^O01|B{n:08d}|P|2.3.1".encode(),
                                     received_at=received, status="FAILED" if failed else "PROCESSED",
                                     error="order PO1 is not known" if failed else "",
                                     attempts=1, processed_at=received))
                modality, station = rng.choice(MODALITIES)
                order_rows.append(dict(id=n, patient_id=rng.randint(1, patients),
                                       placer_order_number=f"PO{n:08d}", accession_number=f"A{n:08d}",
                                       status="SCHEDULED", source_channel="hl7",
                                       source_message_id=n, priority="ROUTINE"))
                procs.append(dict(id=n, order_id=n, procedure_id=f"RP{n}", code_value="CTHEAD",
                                  code_meaning="CT head", study_instance_uid=f"1.2.3.{n}"))
                start_at = today + timedelta(days=rng.randint(-30, 29), minutes=rng.randint(420, 1140))
                steps.append(dict(id=n, requested_procedure_id=n, step_id=f"SPS{n}", modality=modality,
                                  station_ae_title=station, start_at=start_at, description="CT head",
                                  status=rng.choice(STATUSES), protocol_codes=[], extra={}))
                stations.append(dict(step_id=n, ae_title=station))
            conn.execute(insert(InboundMessage), messages)
            conn.execute(insert(Order), order_rows)
            conn.execute(insert(RequestedProcedure), procs)
            conn.execute(insert(ScheduledStep), steps)
            conn.execute(insert(StepStationAE), stations)
        conn.execute(insert(MatchCandidate), [dict(
            incoming_patient_id=2 * n + 1, candidate_patient_id=2 * n + 2,
            total_score=round(rng.uniform(8, 19), 1), reason="bench pair", source="hl7",
            kind="duplicate", status="OPEN", resolved_by="",
            field_scores={"family_name": {"similarity": 0.9, "points": 3.1, "note": "one letter differs"},
                          "birth_date": {"similarity": 1.0, "points": 4.0, "note": ""}})
            for n in range(queue)])
    with make_session_factory(engine).begin() as session:
        add_user(session, "bench", PASSWORD, "admin", "bench")
    engine.dispose()


def store_path(data: Path, orders: int, patients: int, queue: int) -> Path:
    """The cached store for these counts, built when missing."""
    data.mkdir(parents=True, exist_ok=True)
    # The schema revision is in the name: a store built before a migration is built again.
    path = data / f"web-{orders}-{patients}-{queue}-r{head_revision()}.db"
    if not path.exists():
        started = time.perf_counter()
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        build(partial, orders, patients, queue)
        partial.rename(path)
        print(f"built {path.name} in {time.perf_counter() - started:.0f} s")
    return path


def signed_in_client(app):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token})
    # Signing in starts a new session, and with it a new CSRF token for the forms.
    page = client.get("/worklist").get_data(as_text=True)
    return client, re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def timed(call, repeat: int) -> list[float]:
    call()  # warm-up: templates compiled, statements cached
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = call()
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--queue", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--data", type=Path, default=REPO / "bench" / ".data")
    args = parser.parse_args()
    path = store_path(args.data, args.orders, args.patients, args.queue)
    engine = make_engine(f"sqlite:///{path}")
    app = create_app(make_session_factory(engine))
    client, token = signed_in_client(app)
    day = local_now().date().isoformat()
    calls = {
        "worklist page, today": lambda: client.get(f"/worklist?date={day}"),
        "worklist page, today CT": lambda: client.get(f"/worklist?date={day}&modality=CT"),
        "worklist page, today page 5": lambda: client.get(f"/worklist?date={day}&page=5"),
        "worklist search (name prefix)": lambda: client.post(
            "/worklist", data={"q": "SMITH1", "csrf_token": token}),
        "match queue page": lambda: client.get("/matches"),
        "match queue page 20": lambda: client.get("/matches?page=20"),
        "messages page": lambda: client.get("/messages"),
        "messages page, FAILED": lambda: client.get("/messages?status=FAILED"),
        "messages page, a day": lambda: client.get(f"/messages?date={day}"),
        "API worklist": lambda: client.get(f"/api/v1/worklist?date={day}"),
        "API matches": lambda: client.get("/api/v1/matches"),
        "API messages": lambda: client.get("/api/v1/messages"),
        "API messages, FAILED": lambda: client.get("/api/v1/messages?status=FAILED"),
    }
    print(f"store: {args.orders} orders, {args.patients} patients, {args.queue} open queue "
          f"entries (SQLite); {args.repeat} requests each; target p95 <= {TARGET_MS:.0f} ms")
    worst = 0.0
    for name, call in calls.items():
        samples = sorted(timed(call, args.repeat))
        p50 = statistics.median(samples)
        p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
        worst = max(worst, p95)
        print(f"{name:<32} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  "
              f"{'ok' if p95 <= TARGET_MS else 'OVER TARGET'}")
    print(f"worst p95 {worst:.1f} ms ({'within' if worst <= TARGET_MS else 'over'} the target)")
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
