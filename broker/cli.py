"""The `broker` command."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from broker import __version__
from broker.admin.commands import register as register_admin_commands
from broker.config import ConfigError, Settings, load_settings
from broker.dicom.commands import register as register_dicom_commands
from broker.fhir.commands import register as register_fhir_commands
from broker.hl7.commands import register as register_hl7_commands
from broker.mapping.procedures import MappingError
from broker.matching.commands import register as register_matching_commands
from broker.notify.commands import register as register_notify_commands


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        settings = load_settings(getattr(args, "config", None))
        _configure_logging(settings)
        return args.run(args, settings)
    except (ConfigError, MappingError) as exc:
        print(f"broker: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"broker: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, metavar="FILE", default=argparse.SUPPRESS,
                        help="TOML settings file (default: ./broker.toml when present)")
    parser = argparse.ArgumentParser(
        prog="broker", parents=[common],
        description="RIS/HL7-to-Modality-Worklist integration broker.")
    parser.add_argument("--version", action="version", version=f"broker {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[common], help="run every listener until stopped",
                                description="Start the HL7 MLLP, DICOM and web listeners and the "
                                            "scheduler; stop cleanly on SIGINT or SIGTERM.")
    serve.add_argument("--demo", action="store_true",
                       help="load sample orders for today before serving")
    serve.set_defaults(run=_serve)

    db = commands.add_parser("db", parents=[common], help="database maintenance",
                             description="Database maintenance.")
    db_commands = db.add_subparsers(title="commands", metavar="COMMAND")
    db_upgrade = db_commands.add_parser("upgrade", parents=[common],
                                        help="apply schema migrations",
                                        description="Bring the database schema to the newest revision.")
    db_upgrade.set_defaults(run=_db_upgrade)

    demo = commands.add_parser("demo", parents=[common], help="load sample orders for today",
                               description="Send the sample HL7 orders of fixtures/demo through "
                                           "the normal intake, dated today.")
    demo.set_defaults(run=_demo)
    # Each capability adds its own commands, the same way.
    for register in (register_matching_commands, register_hl7_commands, register_dicom_commands,
                     register_admin_commands, register_notify_commands,
                     register_fhir_commands):
        register(commands.add_parser, common)
    return parser


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.logging.level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # pynetdicom logs every PDU at INFO: keep the broker's own lines readable.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from broker.demo import load_demo
    from broker.service import Broker

    log = logging.getLogger("broker")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    broker = Broker(settings)
    try:
        if args.demo:  # before the listeners open, so the first query already sees them
            broker.migrate()
            for name, status in load_demo(broker.intake):
                log.info("demo %s: %s", name, status)
            _demo_review(broker)
        broker.start()
        log.info("broker ready; Ctrl-C to stop")
        while not stop.wait(0.5):
            pass
        log.info("stopping")
    finally:
        broker.stop()
    log.info("stopped")
    return 0


def _demo_review(broker) -> None:
    """The demo's doubtful match and failed message, and its admin account (password once)."""
    from broker.admin.demo import DEMO_ADMIN, ensure_demo_admin
    from broker.demo import load_review_demo
    from broker.matching.searches import run_pending_searches

    log = logging.getLogger("broker")
    for name, status in load_review_demo(broker.intake):
        log.info("demo %s: %s", name, status)
    run_pending_searches(broker.sessions, broker.settings.matching)
    password = ensure_demo_admin(broker.sessions)
    if password:  # on stdout, not in the log; shown this once
        print(f"web UI: sign in as {DEMO_ADMIN!r} with password {password!r}", flush=True)


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from broker.store.migrate import current_revision
    from broker.store.runtime import open_store

    with open_store(settings) as store:
        print(f"database at revision {current_revision(store.engine)}")
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from broker.demo import load_demo
    from broker.hl7.handlers import build_intake
    from broker.store.runtime import open_store

    with open_store(settings) as store:
        for name, status in load_demo(build_intake(settings, store.sessions)):
            print(f"{name}: {status}")
    return 0
