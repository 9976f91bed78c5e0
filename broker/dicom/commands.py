"""The `broker worklist ...` commands."""
from __future__ import annotations

import argparse
from pathlib import Path

from broker.config import Settings


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `worklist import DIR` to the broker command."""
    worklist = commands.add_parser("worklist", parents=[common], help="modality worklist tools",
                                   description="Modality worklist tools.")
    sub = worklist.add_subparsers(title="commands", metavar="COMMAND")
    imp = sub.add_parser("import", parents=[common], help="import a folder of worklist files",
                         description="Import DCMTK wlmscpfs .wl files or an Orthanc worklist "
                                     "folder as patients, orders, procedures and steps.")
    imp.add_argument("folder", type=Path, metavar="DIR")
    imp.set_defaults(run=run_import)


def run_import(args: argparse.Namespace, settings: Settings) -> int:
    """Import every worklist file below DIR; prints one line per skipped file, then counts."""
    from broker.clock import uid_factory
    from broker.dicom.importer import import_folder
    from broker.store.runtime import open_store

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
