"""`broker messages list|reprocess` and `broker mappings check`: functions the web UI reuses."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.config import Settings
from broker.hl7.intake import Hl7Intake, Outcome
from broker.store.models import InboundMessage, unprocessed_message
from broker.store.runtime import open_store


@dataclass(frozen=True)
class MessageSummary:
    """One stored inbound message as lists show it (no patient data)."""
    id: int
    received_at: datetime
    channel: str
    sender: str
    control_id: str
    message_type: str
    status: str
    attempts: int
    error: str


def list_messages(session: Session, status: str | None = None, sender: str | None = None,
                  limit: int = 50, before_id: int | None = None) -> list[MessageSummary]:
    """The newest stored messages, optionally by status and sender; page with `before_id`."""
    stmt = select(InboundMessage).order_by(InboundMessage.id.desc()).limit(limit)
    if status:
        wanted = status.upper()
        stmt = stmt.where(InboundMessage.status == wanted)
        # Others are searched in ix_inbound_message_unprocessed, whose term SQLite needs to see;
        # PROCESSED, nearly every row, is found going back by id.
        if wanted != "PROCESSED":
            stmt = stmt.where(unprocessed_message(InboundMessage.status))
    if sender:
        stmt = stmt.where(InboundMessage.sender == sender)
    if before_id:
        stmt = stmt.where(InboundMessage.id < before_id)
    return [MessageSummary(r.id, r.received_at, r.channel, r.sender, r.control_id or "",
                           r.message_type, r.status, r.attempts, r.error)
            for r in session.scalars(stmt)]


def reprocess_message(intake: Hl7Intake, message_id: int) -> Outcome:
    """Apply a stored FAILED/REJECTED message again; KeyError/ValueError say why it cannot be."""
    return intake.reprocess(message_id)


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the `messages` and `mappings` commands to the CLI."""
    messages = commands.add_parser("messages", parents=[common], help="stored inbound messages",
                                   description="List and reprocess stored inbound messages.")
    sub = messages.add_subparsers(title="commands", metavar="COMMAND")
    listing = sub.add_parser("list", parents=[common], help="list the newest messages")
    listing.add_argument("--status", help="RECEIVED, PROCESSED, FAILED or REJECTED")
    listing.add_argument("--sender", help='sender key "MSH-3|MSH-4"')
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(run=_list)
    again = sub.add_parser("reprocess", parents=[common], help="apply a stored message again")
    again.add_argument("id", type=int)
    again.set_defaults(run=_reprocess)
    mappings = commands.add_parser("mappings", parents=[common], help="site mapping files",
                                   description="Validate the site's mapping files.")
    msub = mappings.add_subparsers(title="commands", metavar="COMMAND")
    check = msub.add_parser("check", parents=[common], help="validate mappings/ (file:line errors)")
    check.set_defaults(run=_check)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    with open_store(settings) as store:
        sessions = store.sessions
        with sessions() as session:
            rows = list_messages(session, args.status, args.sender, args.limit)
        for r in rows:
            print(f"{r.id:>7}  {r.received_at:%Y-%m-%d %H:%M:%S}  {r.status:<9}  {r.message_type:<8}  "
                  f"{r.sender:<24}  {r.control_id:<20}  {r.error[:60]}")
        return 0


def _reprocess(args: argparse.Namespace, settings: Settings) -> int:
    from broker.service import build_intake
    with open_store(settings) as store:
        sessions = store.sessions
        try:
            outcome = reprocess_message(build_intake(settings, sessions), args.id)
        except (KeyError, ValueError) as exc:
            print(f"broker: {exc.args[0]}")
            return 1
        print(f"message #{outcome.message_id}: {outcome.status}")
        return 0 if outcome.status == "PROCESSED" else 1


def _check(args: argparse.Namespace, settings: Settings) -> int:
    from broker.service import site_mappings
    mappings = site_mappings(settings)  # MappingError -> exit 2 with file:line, in cli.main
    print(f"mappings ok: {len(mappings.procedures)} procedure codes, {len(mappings.senders)} "
          f"sender overrides, {len(mappings.station_rules)} station rules")
    return 0
