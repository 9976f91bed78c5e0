"""Start-up of the HL7 intake journal: store what it holds and the database does not.

The writer's commits are not fsynced (the journal is), so an OS crash or power loss can take
the last few from the database while their frames are safe in the journal. Those frames are
stored and applied again here, in order, each in its own durable transaction, before the
listener opens. After a crash of the process alone nothing is missing: its commits were in the
operating system's hands already.
"""
from __future__ import annotations

import logging
import uuid
from pathlib import Path

from sqlalchemy import select

from broker.hl7.intake import Hl7Intake
from broker.store.journal import IntakeJournal
from broker.store.models import InboundMessage, IntakeJournalToken

log = logging.getLogger(__name__)


def open_journal(intake: Hl7Intake, database: Path) -> IntakeJournal:
    """The started journal of the SQLite `database`, after storing what it held and the
    database lacked."""
    journal = IntakeJournal(database.parent / f"{database.name}-hl7-journal", database,
                            journal_token(intake))
    replay_journal(journal, intake)
    return journal


def journal_token(intake: Hl7Intake) -> str:
    """The token naming this database's journal, made on first use."""
    with intake.sessions.begin() as session:
        row = session.get(IntakeJournalToken, 1)
        if row is None:
            row = IntakeJournalToken(id=1, token=str(uuid.uuid4()))
            session.add(row)
        return row.token


def last_journaled(intake: Hl7Intake) -> int:
    """The highest journal sequence number the database holds (0: none)."""
    with intake.sessions() as session:
        # Newest rows first by id (arrival order): no index on journal_seq to pay per message.
        found = session.scalar(select(InboundMessage.journal_seq)
                               .where(InboundMessage.journal_seq.is_not(None))
                               .order_by(InboundMessage.id.desc()).limit(1))
    return found or 0


def replay_journal(journal: IntakeJournal, intake: Hl7Intake) -> int:
    """Store the journal's records the database lacks, then start the journal; returns how
    many were stored."""
    records = journal.recover()
    applied = last_journaled(intake)
    missing = [record for record in records if record.seq > applied]
    for record in missing:
        item = intake.prepare(record.raw, record.peer)
        item.journal_seq, item.received_at = record.seq, record.received_at
        outcome = intake.store(item)
        log.info("hl7 journal: message #%s (journal record %d) stored from the journal: %s",
                 outcome.message_id, record.seq, outcome.code)
    if missing:
        log.warning("hl7 journal: %d received messages were missing from the database (a crash "
                    "of the machine took their last commits); stored from the journal",
                    len(missing))
    journal.start(max([applied, *(record.seq for record in records)]) + 1)
    return len(missing)
