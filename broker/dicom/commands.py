"""`broker worklist import`, `broker steps ...` and `broker mpps ...`: the worklist and the exam
lifecycle from the command line."""
from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Callable

from broker.config import Settings
from broker.store.runtime import change_store, open_store


def register(add_parser: Callable[..., argparse.ArgumentParser],
             common: argparse.ArgumentParser) -> None:
    """Add the `worklist`, `steps` and `mpps` commands to the broker command."""
    worklist = add_parser("worklist", parents=[common], help="modality worklist tools",
                                   description="Modality worklist tools.")
    sub = worklist.add_subparsers(title="commands", metavar="COMMAND")
    imp = sub.add_parser("import", parents=[common], help="import a folder of worklist files",
                         description="Import DCMTK wlmscpfs .wl files or an Orthanc worklist "
                                     "folder as patients, orders, procedures and steps.")
    imp.add_argument("folder", type=Path, metavar="DIR")
    imp.set_defaults(run=run_import)
    _add_lifecycle(add_parser, common)


def run_import(args: argparse.Namespace, settings: Settings) -> int:
    """Import every worklist file below DIR; prints one line per skipped file, then counts."""
    from broker.clock import uid_factory
    from broker.dicom.importer import import_folder

    if not args.folder.is_dir():
        print(f"broker: {args.folder}: not a folder")
        return 2
    with open_store(settings) as store:
        report = import_folder(args.folder, store.sessions, uid_factory(settings.uid.root))
    print(f"files: {report.files}  imported: {report.orders}  "
          f"already imported: {len(report.already)}  unreadable: {len(report.skipped)}")
    print(f"patients: {len(report.patients)}  orders: {report.orders}  "
          f"requested procedures: {report.procedures}  scheduled steps: {report.steps}")
    return 0 if not report.skipped else 1


def _add_lifecycle(add_parser: Callable[..., argparse.ArgumentParser],
                   common: argparse.ArgumentParser) -> None:
    """`steps list|arrive` and `mpps unscheduled|attach`: the exam lifecycle by hand."""
    steps = add_parser("steps", parents=[common], help="scheduled procedure steps",
                                description="List scheduled steps; mark a patient arrived.")
    steps_commands = steps.add_subparsers(title="commands", metavar="COMMAND")
    listing = steps_commands.add_parser("list", parents=[common], help="list scheduled steps",
                                        description="Scheduled steps in start order.")
    listing.add_argument("--status", action="append", default=[],
                         help="only steps in this status (repeatable)")
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(run=_steps_list)
    arrive = steps_commands.add_parser("arrive", parents=[common], help="mark a patient arrived",
                                       description="Set a SCHEDULED step ARRIVED.")
    arrive.add_argument("step", type=int, metavar="ID", help="step id, as `broker steps list` shows")
    arrive.add_argument("--actor", default=f"cli:{getpass.getuser()}")
    arrive.set_defaults(run=_steps_arrive)

    mpps = add_parser("mpps", parents=[common], help="performed procedure steps",
                               description="Unscheduled MPPS and attaching them to an order.")
    mpps_commands = mpps.add_subparsers(title="commands", metavar="COMMAND")
    unscheduled = mpps_commands.add_parser("unscheduled", parents=[common],
                                           help="list MPPS that matched no scheduled step")
    unscheduled.set_defaults(run=_mpps_unscheduled)
    attach = mpps_commands.add_parser("attach", parents=[common],
                                      help="attach a performed step to a scheduled step",
                                      description="The MPPS takes the order's patient; the step "
                                                  "follows the MPPS status.")
    attach.add_argument("performed", type=int, metavar="MPPS_ID")
    attach.add_argument("step", type=int, metavar="STEP_ID")
    attach.add_argument("--actor", default=f"cli:{getpass.getuser()}")
    attach.set_defaults(run=_mpps_attach)


def _steps_list(args: argparse.Namespace, settings: Settings) -> int:
    from broker.store.steps import list_steps
    with open_store(settings) as store:
        sessions = store.sessions
        with sessions() as session:
            rows = list_steps(session, args.status, args.limit)
        print(f"{'ID':>6}  {'SPS ID':<16} {'STATUS':<12} {'MOD':<4} {'STATION':<17} "
              f"{'START':<16} {'ACCESSION':<16} ORDER")
        for r in rows:
            start = r.start_at.strftime("%Y-%m-%d %H:%M") if r.start_at else ""
            print(f"{r.id:>6}  {r.sps_id:<16} {r.status:<12} {r.modality:<4} {r.station_ae_title:<17} "
                  f"{start:<16} {r.accession_number:<16} {r.order_id} ({r.order_status})")
        return 0


def _steps_arrive(args: argparse.Namespace, settings: Settings) -> int:
    from broker.domain.lifecycle import IllegalTransition
    from broker.store.steps import StepNotFound, arrive_step
    with open_store(settings) as store:
        sessions = store.sessions
        try:
            with sessions.begin() as session:
                step = arrive_step(session, args.step, args.actor)
                print(f"step {step.id} ({step.step_id}): {step.status}")
            return 0
        except (StepNotFound, IllegalTransition) as exc:
            print(f"broker: step {args.step}: {exc}", file=sys.stderr)
            return 1


def _mpps_unscheduled(args: argparse.Namespace, settings: Settings) -> int:
    from broker.store.performed import unscheduled_steps
    with open_store(settings) as store:
        sessions = store.sessions
        with sessions() as session:
            rows = unscheduled_steps(session)
            print(f"{'ID':>6}  {'STATUS':<13} {'MOD':<4} {'STATION':<16} {'STARTED':<16} PATIENT")
            for r in rows:
                started = r.started_at.strftime("%Y-%m-%d %H:%M") if r.started_at else ""
                print(f"{r.id:>6}  {r.status:<13} {r.modality:<4} {r.station_ae_title:<16} "
                      f"{started:<16} {r.patient_id or ''}")
        return 0


def _mpps_attach(args: argparse.Namespace, settings: Settings) -> int:
    from broker.store.performed import attach_performed_step
    row = change_store(settings, lambda session: attach_performed_step(
        session, args.performed, args.step, args.actor))
    if row is None:
        return 1
    print(f"mpps {row.id} attached to step {args.step} (patient {row.patient_id})")
    return 0
