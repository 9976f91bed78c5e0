"""Sustained HL7 ingest into `broker serve`, over MLLP, against a bare durable baseline.

The broker runs as a site runs it: `python -m broker serve` in a process of its own, configured
by BROKER_* environment variables, started fresh for each load in a temporary folder and stopped
with SIGTERM. The baseline (bench/mllp_baseline.py) is the least a store-then-ACK server does:
INSERT the raw bytes into SQLite (WAL, synchronous=FULL), commit, answer AA. Senders run in a
separate process, one thread per connection, each waiting for its ACK before sending the next.
Every ACK must be MSA|AA with the message's control id, and afterwards the database must hold
every message and every order exactly once. Loads:

  (a) orders for known patients (registered first with ADT^A04), 4 connections
  (b) orders each bringing a distinct realistic new patient, 4 connections
  (c) orders for look-alike new patients (one family name and birth date, 500 per group)
  (d) ACK latency on one connection at a steady 50 msg/s
  (e) --postgres: one `broker serve` against two on one PostgreSQL database

Rates are medians over rounds. The baseline gets half of each round's messages just before the
broker gets them all and the other half just after (on PostgreSQL, one and two processes take
turns going first), so a ratio pairs figures taken moments apart on a shared machine whose
speed varies. Targets (issue 15) are
printed beside the figures; nothing is asserted about time.

    .venv/bin/python bench/hl7_ingest.py              # a few minutes
    .venv/bin/python bench/hl7_ingest.py --postgres   # and (e)
    .venv/bin/python bench/hl7_ingest.py --quick      # seconds: small counts, a smoke test
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hl7_traffic import Sent, Traffic
from mllp_load import Job, Outcome, Senders
from population import Person
from servers import REPO, ServerProcess, applied_once, sqlite_url, start_baseline, start_broker

sys.path.insert(0, str(REPO))
from tests.support.postgres import PostgresServer  # noqa: E402

CONNECTIONS = 4
PACE = 50.0  # messages per second in the latency load
LOADS = ("known", "new", "lookalike", "latency")


@dataclass(frozen=True)
class Scale:
    """How much each load sends."""
    rounds: int          # timed rounds per throughput load
    per_round: int       # messages per round, loads (a), (b) and (e)
    look_alikes: int     # new patients per look-alike group, one group per round
    known_patients: int  # registered before orders for known patients
    warm_up: int         # untimed orders a fresh broker gets first (imports, caches)
    paced: int           # messages per latency series


FULL = Scale(rounds=5, per_round=2000, look_alikes=500, known_patients=500, warm_up=100,
             paced=1000)
QUICK = Scale(rounds=2, per_round=200, look_alikes=100, known_patients=100, warm_up=20,
              paced=100)


@dataclass
class Ledger:
    """What one database was sent, to check afterwards that each thing landed exactly once."""
    control_ids: list[str] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)

    def add(self, messages: list[Sent]) -> None:
        """Remember `messages` as sent."""
        self.control_ids += [m.control_id for m in messages]
        self.orders += [m.placer_order for m in messages if m.placer_order]


@dataclass
class Report:
    """Figures beside their targets, and every error seen."""
    errors: int = 0
    rows: list[tuple[str, str, str, bool | None]] = field(default_factory=list)

    def outcome(self, label: str, outcome: Outcome) -> None:
        """Count and print the errors of one job."""
        self.errors += outcome.error_count
        if outcome.error_count:
            print(f"  {label}: {outcome.error_count} errors")
            for text in outcome.errors:
                print(f"    {text}")

    def problems(self, label: str, problems: list[str]) -> None:
        """Count and print what the database holds that it should not (or lacks)."""
        self.errors += len(problems)
        verdict = "every message and order exactly once" if not problems else "NOT exactly once"
        print(f"  {label}: {verdict}")
        for text in problems:
            print(f"    {text}")

    def target(self, figure: str, measured: str, target: str = "",
               met: bool | None = None) -> None:
        """Record a figure for the closing table (with its target, if it has one)."""
        self.rows.append((figure, measured, target, met))

    def print_table(self) -> None:
        """The closing table: every figure beside its target."""
        print(f"\n{'figure':<50}{'measured':>10}   target")
        for figure, measured, target, met in self.rows:
            verdict = "" if met is None else "met" if met else "BELOW"
            print(f"{figure:<50}{measured:>10}   {target:<10} {verdict}")
        print(f"errors: {self.errors}")


def burst(ports: list[int], messages: list[Sent]) -> Job:
    """`messages` dealt round-robin over 4 connections, the connections spread over `ports`."""
    return Job([(ports[c % len(ports)], [(m.control_id, m.raw) for m in messages[c::CONNECTIONS]])
                for c in range(CONNECTIONS)])


def paced(port: int, messages: list[Sent]) -> Job:
    """`messages` on one connection at a steady PACE per second."""
    return Job([(port, [(m.control_id, m.raw) for m in messages])], interval=1 / PACE)


def spread(rates: list[float]) -> str:
    """Median, quartiles and range of per-round figures."""
    ordered = sorted(rates)
    if len(ordered) > 1:
        low, _, high = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        low = high = ordered[0]
    return (f"median {statistics.median(ordered):7.0f} msg/s  IQR {low:.0f}-{high:.0f}  "
            f"min {ordered[0]:.0f}  max {ordered[-1]:.0f}  ({len(ordered)} rounds)")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class Bench:
    """The loads, sharing one sender process, one baseline and one stream of messages."""

    def __init__(self, scale: Scale, folder: Path, senders: Senders, baseline: ServerProcess,
                 report: Report) -> None:
        self.scale, self.folder, self.senders = scale, folder, senders
        self.baseline, self.report = baseline, report
        self.traffic = Traffic()

    def send(self, label: str, job: Job) -> Outcome:
        """Run one job and count its errors."""
        outcome = self.senders.run(job)
        self.report.outcome(label, outcome)
        return outcome

    def send_pair(self, round_number: int, first: tuple[str, Job],
                  second: tuple[str, Job]) -> tuple[Outcome, Outcome]:
        """Run two labelled jobs, `first` first on even rounds only: neither side always gets
        the machine while the other engineers' tests happen to pause."""
        order = [first, second] if round_number % 2 == 0 else [second, first]
        done = {label: self.send(label, job) for label, job in order}
        return done[first[0]], done[second[0]]

    def untimed(self, label: str, ports: list[int], messages: list[Sent], ledger: Ledger) -> None:
        """Send `messages` before timing anything (registrations, a fresh process's warm-up)."""
        ledger.add(messages)
        self.send(label, burst(ports, messages))

    def known_patients(self, label: str, ports: list[int], ledger: Ledger) -> list[Person]:
        """Register patients with ADT^A04 and return them, for orders that follow."""
        patients = self.traffic.people(self.scale.known_patients)
        self.untimed(label, ports, [self.traffic.registration(p) for p in patients], ledger)
        return patients

    def orders_for(self, patients: list[Person], count: int) -> list[Sent]:
        """`count` orders, each for a patient picked at random from `patients`."""
        return [self.traffic.order(self.traffic.rng.choice(patients)) for _ in range(count)]

    def warm_up(self, label: str, port: int, ledger: Ledger) -> None:
        """Untimed orders for new patients, so a fresh process's imports and caches are done."""
        warm = [self.traffic.order(p) for p in self.traffic.people(self.scale.warm_up)]
        self.untimed(f"{label} warm-up", [port], warm, ledger)

    def throughput(self, name: str, prepare: Callable[[int, Ledger], Callable[[], list[Sent]]],
                   rate_target: float, ratio_target: float | None) -> None:
        """Rounds of fresh messages, each round to the baseline and to a fresh broker;
        `prepare(port, ledger)` sends the untimed set-up and returns the round builder."""
        folder = self.folder / name.replace(" ", "-")
        url = sqlite_url(folder)
        broker = start_broker("broker", folder, url)
        ledger = Ledger()
        try:
            new_round = prepare(broker.port, ledger)
            base_rates, broker_rates, ratios = [], [], []
            for _ in range(self.scale.rounds):
                messages = new_round()
                ledger.add(messages)
                # Half the baseline's round just before the broker's and half just after: a
                # slow load's round lasts long, and the shared machine's speed drifts meanwhile.
                half = len(messages) // 2
                before = self.send(f"{name} baseline", burst([self.baseline.port],
                                                             messages[:half]))
                ours = self.send(f"{name} broker", burst([broker.port], messages))
                after = self.send(f"{name} baseline", burst([self.baseline.port],
                                                            messages[half:]))
                base_rate = ((before.acknowledged + after.acknowledged)
                             / (before.seconds + after.seconds))
                base_rates.append(base_rate)
                broker_rates.append(ours.rate)
                ratios.append(ours.rate / base_rate)
        finally:
            broker.stop()
        self.report.problems(f"{name} database", applied_once(url, ledger.control_ids,
                                                               ledger.orders))
        rate, ratio = statistics.median(broker_rates), statistics.median(ratios)
        print(f"{name:<26} broker    {spread(broker_rates)}")
        print(f"{name:<26} baseline  {spread(base_rates)}")
        print(f"{name:<26} ratio broker/baseline {ratio:.3f} (median of per-round ratios, "
              f"min {min(ratios):.3f} max {max(ratios):.3f})")
        self.report.target(f"(SQLite) {name}, msg/s", f"{rate:.0f}", f">= {rate_target:.0f}",
                           rate >= rate_target)
        if ratio_target is not None:
            self.report.target(f"(SQLite) {name}, ratio to baseline", f"{ratio:.3f}",
                               f">= {ratio_target}", ratio >= ratio_target)

    def load_known(self) -> None:
        """(a) Orders for patients the broker already knows."""
        def prepare(port: int, ledger: Ledger) -> Callable[[], list[Sent]]:
            patients = self.known_patients("known patients registration", [port], ledger)
            return lambda: self.orders_for(patients, self.scale.per_round)
        self.throughput("known patients", prepare, 600, 0.15)

    def load_new(self) -> None:
        """(b) Orders that each bring a distinct, realistic new patient."""
        def prepare(port: int, ledger: Ledger) -> Callable[[], list[Sent]]:
            self.warm_up("new patients", port, ledger)
            return lambda: [self.traffic.order(p)
                            for p in self.traffic.people(self.scale.per_round)]
        self.throughput("new patients", prepare, 600, 0.15)

    def load_lookalike(self) -> None:
        """(c) Orders for new patients sharing one family name and birth date (a group per
        round): every one of them is a candidate for every other."""
        def prepare(port: int, ledger: Ledger) -> Callable[[], list[Sent]]:
            self.warm_up("look-alikes", port, ledger)
            return lambda: [self.traffic.order(p)
                            for p in self.traffic.look_alikes(self.scale.look_alikes)]
        self.throughput(f"{self.scale.look_alikes} look-alikes", prepare, 300, None)

    def load_latency(self) -> None:
        """(d) ACK latency on one connection at a steady 50 msg/s, known and new patients."""
        folder = self.folder / "latency"
        url = sqlite_url(folder)
        broker = start_broker("broker", folder, url)
        ledger = Ledger()
        try:
            patients = self.known_patients("latency registration", [broker.port], ledger)
            known = self.orders_for(patients, self.scale.paced)
            new = [self.traffic.order(p) for p in self.traffic.people(self.scale.paced)]
            ledger.add(known + new)
            series = [("baseline", None, paced(self.baseline.port, known)),
                      ("broker, known patients", "known patients", paced(broker.port, known)),
                      ("broker, new patients", "new patients", paced(broker.port, new))]
            outcomes = [self.send(f"latency {name}", job) for name, _, job in series]
        finally:
            broker.stop()
        self.report.problems("latency database", applied_once(url, ledger.control_ids,
                                                              ledger.orders))
        for (name, figure, _), outcome in zip(series, outcomes):
            ms = [s * 1000 for s in outcome.latencies]
            p50, p99 = percentile(ms, 0.50), percentile(ms, 0.99)
            print(f"ACK latency at {PACE:.0f} msg/s, {name:<24} p50 {p50:6.2f} ms  "
                  f"p99 {p99:6.2f} ms  max {max(ms):6.2f} ms  ({len(ms)} messages)")
            if figure:
                self.report.target(f"(SQLite) ACK p99 at 50 msg/s, {figure}", f"{p99:.1f} ms",
                                   "<= 20 ms", p99 <= 20)

    def load_postgres(self) -> None:
        """(e) One `broker serve` against two on one PostgreSQL database, known patients: each
        round goes to one process and the same messages to two (into a database of their own)."""
        server = PostgresServer()
        server.start()
        try:
            one_url, two_url = server.create_database("one"), server.create_database("two")
            one = [start_broker("broker", self.folder / "pg-one", one_url)]
            # One after the other: the first applies the migrations before the second starts.
            two = [start_broker(f"broker-{n}", self.folder / f"pg-two-{n}", two_url)
                   for n in (1, 2)]
            setups = [(one, Ledger()), (two, Ledger())]
            try:
                self.postgres_rounds(setups)
            finally:
                for process in one + two:
                    process.stop()
            for label, url, (_, ledger) in zip(("one process", "two processes"),
                                               (one_url, two_url), setups):
                self.report.problems(f"PostgreSQL, {label}, database",
                                     applied_once(url, ledger.control_ids, ledger.orders))
        finally:
            server.stop()

    def postgres_rounds(self, setups: list[tuple[list[ServerProcess], Ledger]]) -> None:
        """Register patients in both databases, then time rounds of orders for them."""
        patients = self.traffic.people(self.scale.known_patients)
        registrations = [self.traffic.registration(p) for p in patients]
        (one, one_ledger), (two, two_ledger) = setups
        # With two processes the 4 connections alternate between them: 2 + 2.
        one_ports, two_ports = [p.port for p in one], [p.port for p in two]
        self.untimed("PostgreSQL one process registration", one_ports, registrations, one_ledger)
        self.untimed("PostgreSQL two processes registration", two_ports, registrations,
                     two_ledger)
        rates: list[list[float]] = [[], []]
        for round_number in range(self.scale.rounds):
            messages = self.orders_for(patients, self.scale.per_round)
            one_ledger.add(messages)
            two_ledger.add(messages)
            outcomes = self.send_pair(
                round_number, ("PostgreSQL one process", burst(one_ports, messages)),
                ("PostgreSQL two processes", burst(two_ports, messages)))
            for figures, outcome in zip(rates, outcomes):
                figures.append(outcome.rate)
        ratios = [two / one if one else 0.0 for one, two in zip(*rates)]
        ratio = statistics.median(ratios)
        print(f"PostgreSQL known patients, one process   {spread(rates[0])}")
        print(f"PostgreSQL known patients, two processes {spread(rates[1])}")
        print(f"PostgreSQL ratio two/one {ratio:.2f} (median of per-round ratios, "
              f"min {min(ratios):.2f} max {max(ratios):.2f}); server: tests/support/postgres.py "
              f"(fsync=off)")
        self.report.target("(PostgreSQL) known patients, one process, msg/s",
                           f"{statistics.median(rates[0]):.0f}")
        self.report.target("(PostgreSQL) two processes / one", f"{ratio:.2f}", ">= 1.8",
                           ratio >= 1.8)


def header(scale: Scale, loads: list[str]) -> str:
    """What was measured, on what: enough to compare two runs' output."""
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        commit = "?"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"HL7 ingest over MLLP: ORM^O01 v2.3.1 (ADT^A04 registrations); {CONNECTIONS} "
            f"connections; {scale.rounds} rounds of {scale.per_round} messages "
            f"({scale.look_alikes} per look-alike round); loads {', '.join(loads)}\n"
            f"broker at {commit[:100]}\n"
            f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {load}")


def main(argv: list[str] | None = None) -> int:
    """Run the chosen loads and print their figures; exit 1 if any message went wrong."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    parser.add_argument("--postgres", action="store_true",
                        help="add load (e): one vs two broker processes on PostgreSQL")
    parser.add_argument("--loads", nargs="+", choices=LOADS + ("postgres",), default=list(LOADS),
                        help="the loads to run (default: every SQLite one)")
    parser.add_argument("--rounds", type=int, help="override the rounds per load")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    if args.rounds:
        scale = Scale(**{**scale.__dict__, "rounds": args.rounds})
    loads = args.loads + (["postgres"] if args.postgres and "postgres" not in args.loads else [])
    print(header(scale, loads), flush=True)
    report = Report()
    with tempfile.TemporaryDirectory(prefix="bench-hl7-") as tmp:
        folder = Path(tmp)
        senders = Senders()
        baseline = start_baseline(folder / "baseline")
        try:
            bench = Bench(scale, folder, senders, baseline, report)
            for name in loads:
                getattr(bench, f"load_{name}")()
                sys.stdout.flush()
        finally:
            baseline.stop()
            senders.close()
    report.print_table()
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
