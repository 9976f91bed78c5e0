"""The CLI of reconciliation: `broker patients import|train|scan|unmerge`,
`broker matches list|link|dismiss`."""
from __future__ import annotations

import argparse
from typing import Callable
import getpass
import json
import sys
from pathlib import Path

from broker.config import Settings
from broker.store.runtime import open_store


def register(add_parser: Callable[..., argparse.ArgumentParser],
             common: argparse.ArgumentParser) -> None:
    """Add the `patients` and `matches` command groups to the broker's parser."""
    actor = argparse.ArgumentParser(add_help=False)
    actor.add_argument("--actor", default=None, help="name written to the audit log "
                                                     "(default: the login name)")
    patients = add_parser("patients", parents=[common], help="patient records",
                                   description="Import patients, find duplicates, undo merges.")
    sub = patients.add_subparsers(title="commands", metavar="COMMAND")
    imp = sub.add_parser("import", parents=[common], help="import patients from a CSV file",
                         description="CSV header: identifier,issuer,family_name,given_name,"
                                     "birth_date,sex,address,phone (birth_date YYYYMMDD or "
                                     "YYYY-MM-DD; only identifier is required). Bad rows are "
                                     "reported with their line number; the rest are imported.")
    imp.add_argument("file", type=Path, metavar="FILE.csv")
    imp.set_defaults(run=_import)
    train = sub.add_parser("train", parents=[common, actor],
                           help="fit the matching model on the current patients",
                           description="Learn the matching model (m and u of every field's "
                                       "comparison levels, by EM without labels) from the "
                                       "patients in the database and store it as the next "
                                       "version; scans and live searches use the newest.")
    train.set_defaults(run=_train)
    scan = sub.add_parser("scan", parents=[common], help="find likely duplicate patients",
                          description="Score every pair of patients sharing a blocking key "
                                      "with the newest trained model (fitting one first when "
                                      "there is none); queue likely duplicates for review.")
    scan.add_argument("--output", type=Path, metavar="pairs.csv",
                      help="also write patient_a,patient_b,score,decision for every flagged pair")
    scan.set_defaults(run=_scan)
    unmerge = sub.add_parser("unmerge", parents=[common, actor], help="undo the merge of a patient",
                             description="Undo the merge that merged patient ID into another.")
    unmerge.add_argument("id", type=int, metavar="ID", help="the merged (not surviving) patient")
    unmerge.set_defaults(run=_unmerge)

    matches = add_parser("matches", parents=[common], help="the duplicate review queue",
                                  description="List and resolve possible duplicate patients.")
    msub = matches.add_subparsers(title="commands", metavar="COMMAND")
    listing = msub.add_parser("list", parents=[common], help="list queue entries")
    listing.add_argument("--status", default="open",
                         choices=["open", "linked", "dismissed", "all"])
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(run=_list)
    link = msub.add_parser("link", parents=[common, actor], help="merge the pair of entry ID")
    link.add_argument("id", type=int, metavar="ID")
    link.set_defaults(run=_link)
    dismiss = msub.add_parser("dismiss", parents=[common, actor],
                              help="mark the pair of entry ID as different people")
    dismiss.add_argument("id", type=int, metavar="ID")
    dismiss.set_defaults(run=_dismiss)


def _actor(args: argparse.Namespace) -> str:
    return (args.actor or getpass.getuser() or "cli")[:64]


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from broker.matching.importer import ImportError_, count_lines, import_csv
    from broker.matching.progress import Progress

    if not args.file.is_file():
        print(f"broker: {args.file}: no such file", file=sys.stderr)
        return 2
    with open_store(settings) as store:
        sessions = store.sessions
        bar = Progress("import", count_lines(args.file))
        try:
            report = import_csv(sessions, args.file, actor=f"cli:{getpass.getuser()}"[:64],
                                on_progress=bar.advance)
        except ImportError_ as exc:
            print(f"broker: {exc}", file=sys.stderr)
            return 2
        bar.done = bar.total
        bar.finish()
        for line, reason in report.errors:
            print(f"{args.file}:{line}: {reason}", file=sys.stderr)
        for line, reason in report.warnings:
            print(f"{args.file}:{line}: warning: {reason}", file=sys.stderr)
        print(f"imported {report.created} new, updated {report.updated}, "
              f"rejected {len(report.errors)}"
              + (f", {len(report.warnings)} with warnings" if report.warnings else ""))
        return 1 if report.errors else 0


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from broker.matching.train import TrainingError, train
    from broker.store.db import read_only_sessions

    with open_store(settings) as store:
        try:
            report = train(store.sessions, settings.matching, _actor(args),
                           read_sessions=read_only_sessions(store.engine),
                           on_stage=lambda stage: print(f"train: {stage}", file=sys.stderr))
        except TrainingError as exc:
            print(f"broker: {exc}", file=sys.stderr)
            return 1
        print(f"model version {report.version} trained on {report.patients} patients: "
              f"{report.candidate_pairs} candidate pairs (of {report.blocked_pairs} blocked), "
              f"{report.random_pairs} random pairs; estimated share of true pairs among "
              f"candidates {report.model.info.get('candidate_match_share', 0):.4f}")
        return 0


def _scan(args: argparse.Namespace, settings: Settings) -> int:
    from broker.matching.progress import Progress
    from broker.matching.scan import scan

    with open_store(settings) as store:
        sessions = store.sessions
        bar: Progress | None = None

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = Progress("scan", total)
            bar.advance(done - bar.done)
        from broker.matching.score.model import OutdatedModel
        from broker.store.db import read_only_sessions
        try:
            report = scan(sessions, settings.matching, progress, args.output,
                          read_sessions=read_only_sessions(store.engine))
        except OutdatedModel as exc:
            print(f"broker: {exc}", file=sys.stderr)
            return 1
        if bar is not None:
            bar.finish()
        if report.trained:
            print(f"no trained matching model: fitted model version {report.model_version} on "
                  f"the {report.patients} patients first (`broker patients train` refits it)")
        elif report.default_model:
            print(f"no trained matching model and only {report.patients} patients (fewer than "
                  f"matching.train_min_patients = {settings.matching.train_min_patients}): "
                  f"scored with the shipped default model")
        review = sum(1 for f in report.flagged if f.verdict.band.value == "review")
        print(f"scanned {report.patients} patients, {report.pairs_scored} pairs: "
              f"{len(report.flagged)} flagged ({review} review, {len(report.flagged) - review} auto), "
              f"{report.queued} new queue entries, {report.auto_linked} linked automatically"
              + (f", {report.skipped_blocks} oversized blocks skipped" if report.skipped_blocks else ""))
        if args.output is not None:
            print(f"pairs written to {args.output}")
        return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from broker.matching.queue import list_matches

    with open_store(settings) as store:
        sessions = store.sessions
        with sessions() as session:
            entries = list_matches(session, None if args.status == "all" else args.status,
                                   limit=args.limit)
        for e in entries:
            if args.json:
                print(json.dumps({**e.__dict__, "created_at": str(e.created_at),
                                  "resolved_at": e.resolved_at and str(e.resolved_at)}))
                continue
            print(f"#{e.id} {e.status.lower()} {e.kind} score {e.score:.2f} ({e.source}): {e.reason}")
            for role, rec in (("incoming ", e.incoming), ("candidate", e.candidate)):
                print(f"  {role} {_describe(rec)}")
            print("  fields    " + ", ".join(
                f"{name} {f['points']:+.1f}" + (f" ({f['note']})" if f.get("note") else "")
                for name, f in e.fields.items() if f.get("similarity") is not None))
            if e.resolved_by:
                print(f"  resolved by {e.resolved_by} at {e.resolved_at:%Y-%m-%d %H:%M:%S}")
        if not args.json:
            label = "" if args.status == "all" else f"{args.status} "
            print(f"{len(entries)} {label}entr{'y' if len(entries) == 1 else 'ies'}")
        return 0


def _describe(rec: dict) -> str:
    who = f"#{rec['id']}" if rec.get("id") else "(held-back record)"
    merged = f" merged into #{rec['merged_into_id']}" if rec.get("merged_into_id") else ""
    return (f"{who} {rec['family_name']}^{rec['given_name']} born {rec['birth_date'] or '?'} "
            f"sex {rec['sex'] or '?'} [{', '.join(rec['identifiers'])}]{merged}")


def _act(settings: Settings, action) -> int:
    from broker.matching.queue import MatchError

    with open_store(settings) as store:
        sessions = store.sessions
        try:
            with sessions.begin() as session:
                message = action(session)
        except MatchError as exc:
            print(f"broker: {exc}", file=sys.stderr)
            return 1
        print(message)
        return 0


def _link(args: argparse.Namespace, settings: Settings) -> int:
    from broker.matching.review import link_match

    def action(session) -> str:
        merge = link_match(session, args.id, _actor(args))
        if merge is None:
            return f"match #{args.id} linked"
        return (f"match #{args.id} linked: patient #{merge.merged_id} merged into "
                f"#{merge.survivor_id} (merge #{merge.id})")
    return _act(settings, action)


def _dismiss(args: argparse.Namespace, settings: Settings) -> int:
    from broker.matching.review import dismiss_match

    def action(session) -> str:
        dismiss_match(session, args.id, _actor(args))
        return f"match #{args.id} dismissed"
    return _act(settings, action)


def _unmerge(args: argparse.Namespace, settings: Settings) -> int:
    from broker.matching.review import unmerge_patient

    def action(session) -> str:
        merge = unmerge_patient(session, args.id, _actor(args))
        return f"patient #{merge.merged_id} unmerged from #{merge.survivor_id} (merge #{merge.id})"
    return _act(settings, action)
