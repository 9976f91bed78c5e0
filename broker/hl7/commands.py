"""`broker messages list|reprocess` and `broker mappings check`."""
from __future__ import annotations

import argparse
from typing import Callable

from broker.config import Settings
from broker.hl7.handlers import build_intake, site_mappings
from broker.store.messages import list_messages
from broker.store.runtime import open_store


def register(add_parser: Callable[..., argparse.ArgumentParser],
             common: argparse.ArgumentParser) -> None:
    """Add the `messages` and `mappings` commands to the CLI."""
    messages = add_parser("messages", parents=[common], help="stored inbound messages",
                                   description="List and reprocess stored inbound messages.")
    sub = messages.add_subparsers(title="commands", metavar="COMMAND")
    listing = sub.add_parser("list", parents=[common], help="list the newest messages")
    listing.add_argument("--status", help="RECEIVED, PROCESSED, FAILED or REJECTED")
    listing.add_argument("--sender", help='sender key "MSH-3|MSH-4"')
    listing.add_argument("--channel", help="hl7, dicom or fhir")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(run=_list)
    again = sub.add_parser("reprocess", parents=[common], help="apply a stored message again")
    again.add_argument("id", type=int)
    again.add_argument("--charset", metavar="MSH-18",
                       help='read the bytes in this character set instead of the declared one, '
                            'e.g. "8859/1" for Latin-1 sent as UNICODE UTF-8')
    again.set_defaults(run=_reprocess)
    mappings = add_parser("mappings", parents=[common], help="site mapping files",
                                   description="Validate the site's mapping files.")
    msub = mappings.add_subparsers(title="commands", metavar="COMMAND")
    check = msub.add_parser("check", parents=[common], help="validate mappings/ (file:line errors)")
    check.set_defaults(run=_check)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    with open_store(settings) as store:
        sessions = store.sessions
        with sessions() as session:
            rows = list_messages(session, args.status, args.sender, args.limit,
                                     channel=args.channel)
        for r in rows:
            print(f"{r.id:>7}  {r.received_at:%Y-%m-%d %H:%M:%S}  {r.status:<9}  {r.message_type:<8}  "
                  f"{r.sender:<24}  {r.control_id:<20}  {r.error[:60]}")
        return 0


def _reprocess(args: argparse.Namespace, settings: Settings) -> int:
    with open_store(settings) as store:
        sessions = store.sessions
        if _channel_of(sessions, args.id) == "fhir":
            return _reprocess_fhir(args, settings, store)
        try:
            outcome = build_intake(settings, sessions).reprocess(args.id, args.charset)
        except (KeyError, ValueError) as exc:
            print(f"broker: {exc.args[0]}")
            return 1
        print(f"message #{outcome.message_id}: {outcome.status}")
        return 0 if outcome.status == "PROCESSED" else 1


def _channel_of(sessions, message_id: int) -> str | None:
    from broker.store.models import InboundMessage
    with sessions() as session:
        row = session.get(InboundMessage, message_id)
        return row.channel if row is not None else None


def _reprocess_fhir(args: argparse.Namespace, settings: Settings, store) -> int:
    """A FHIR row is applied again by the FHIR intake (it re-reads the Patient)."""
    from broker.fhir.client import FhirError
    from broker.fhir.sync import FhirSync, callback_url
    if not settings.fhir.base_url:
        print("broker: fhir.base_url is not set: FHIR messages cannot be reprocessed")
        return 1
    sync = FhirSync(settings, store.engine, store.sessions, callback_url(settings, None))
    try:
        status = sync.reprocess(args.id)
    except (KeyError, ValueError, FhirError) as exc:
        print(f"broker: {exc.args[0]}")
        return 1
    print(f"message #{args.id}: {status}")
    return 0 if status == "PROCESSED" else 1


def _check(args: argparse.Namespace, settings: Settings) -> int:
    mappings = site_mappings(settings)  # MappingError -> exit 2 with file:line, in cli.main
    from broker.notify.runtime import site_templates
    site_templates(settings)  # the outbound message templates (mappings/notify.toml)
    print(f"mappings ok: {len(mappings.procedures)} procedure codes, {len(mappings.senders)} "
          f"sender overrides, {len(mappings.station_rules)} station rules")
    from pathlib import Path
    from broker.fhir.mapping import load_fhir_mapping
    from broker.resources import mappings_dir
    folder = Path(settings.hl7.mappings_dir) if settings.hl7.mappings_dir else mappings_dir()
    if (folder / "fhir.toml").is_file():
        fhir = load_fhir_mapping(folder / "fhir.toml")
        print(f"fhir.toml ok: {sum(map(len, fhir.order.values()))} order and "
              f"{sum(map(len, fhir.patient.values()))} patient expressions")
    return 0
