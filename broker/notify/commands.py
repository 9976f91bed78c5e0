"""`broker outbox list|retry|discard` and `broker studies list|recheck`."""
from __future__ import annotations

import argparse
from typing import Callable

from broker.config import Settings
from broker.notify.fhir_out import FHIR_KIND, describe
from broker.notify.outbox import (
    VIEWS, discard, held_by, list_notifications, retry, retry_dead, view_of,
)
from broker.notify.pacs_check import list_checks, recheck
from broker.store.runtime import change_store, open_store


def register(add_parser: Callable[..., argparse.ArgumentParser],
             common: argparse.ArgumentParser) -> None:
    """Add the `outbox` and `studies` commands to the CLI."""
    outbox = add_parser("outbox", parents=[common], help="notifications to the EHR and peers",
                        description="The outbox of notifications (HL7 and FHIR to the EHR, MPPS "
                                        "forwards).")
    sub = outbox.add_subparsers(title="commands", metavar="COMMAND")
    listing = sub.add_parser("list", parents=[common],
                             help="newest first; by default those not delivered or discarded")
    listing.add_argument("--status", choices=VIEWS,
                         help="failed: retrying after an error; held: waiting behind a dead one")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(run=_list)
    again = sub.add_parser("retry", parents=[common], help="send a dead notification again")
    again.add_argument("id", nargs="?", type=int)
    again.add_argument("--dead", action="store_true", help="every dead notification")
    again.set_defaults(run=_retry)
    drop = sub.add_parser("discard", parents=[common],
                          help="give up a dead notification, so those held behind it go")
    drop.add_argument("id", type=int)
    drop.set_defaults(run=_discard)

    studies = add_parser("studies", parents=[common], help="studies awaiting the PACS",
                         description="Studies checked in the PACS before the EHR is told.")
    ssub = studies.add_subparsers(title="commands", metavar="COMMAND")
    slist = ssub.add_parser("list", parents=[common], help="newest study checks first")
    slist.add_argument("--status", choices=["waiting", "available", "missing", "reported"])
    slist.set_defaults(run=_studies)
    sre = ssub.add_parser("recheck", parents=[common], help="ask the PACS again for a study")
    sre.add_argument("id", type=int)
    sre.set_defaults(run=_recheck)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    with open_store(settings) as store, store.sessions() as session:
        rows = list_notifications(session, args.status, args.limit)
        held = held_by(session, rows)
        for row in rows:
            # A FHIR row says what it writes: fhir/ImagingStudy, fhir/Task, ...
            kind = f"{row.kind}/{describe(row.payload)}" if row.kind == FHIR_KIND else row.kind
            why = f"held by #{held[row.id]}" if row.id in held else row.last_error or ""
            print(f"{row.id}\t{view_of(row, held)}\t{kind}\t{row.event or '-'}\t"
                  f"{row.destination}\tattempts={row.attempts}\t{why}".rstrip())
    return 0


def _retry(args: argparse.Namespace, settings: Settings) -> int:
    if args.dead == (args.id is not None):
        print("broker outbox retry: give an ID or --dead")
        return 2
    if args.dead:
        count = change_store(settings, retry_dead)
        if count is None:
            return 1
        print(f"{count} notifications will be sent again")
    else:
        if change_store(settings, lambda session: retry(session, args.id)) is None:
            return 1
        print(f"notification {args.id} will be sent again")
    return 0


def _discard(args: argparse.Namespace, settings: Settings) -> int:
    if change_store(settings, lambda session: discard(session, args.id)) is None:
        return 1
    print(f"notification {args.id} discarded; the ones held behind it will be sent")
    return 0


def _studies(args: argparse.Namespace, settings: Settings) -> int:
    with open_store(settings) as store, store.sessions() as session:
        for row in list_checks(session, args.status):
            label = "images missing" if row.status == "MISSING" else row.status
            print(f"{row.id}\t{label}\torder={row.order_id}\t{row.study_instance_uid}\t"
                  f"checks={row.checks}\t{row.last_result}")
    return 0


def _recheck(args: argparse.Namespace, settings: Settings) -> int:
    give_up = settings.notify.pacs_give_up_seconds
    if change_store(settings, lambda session: recheck(session, args.id, give_up)) is None:
        return 1
    print(f"study check {args.id} will be checked again")
    return 0
