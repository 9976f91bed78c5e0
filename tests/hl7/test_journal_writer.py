"""The intake writer with its journal: a lone sender's ACK waits for the journal's fsync and
the database commit needs none of its own; groups of several senders commit durably and are
not journalled; a clean stop leaves no journal."""
from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from broker.hl7.journal_replay import journal_token
from broker.hl7.writer import IntakeWriter
from broker.store.journal import IntakeJournal
from broker.store.journal_file import read_segment, segment_files
from broker.store.models import InboundMessage, Order
from tests.hl7.test_intake import orm

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class CountingFsync:
    """os.fdatasync, counted, and held back while `gate` is clear."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, fd: int) -> None:
        self.gate.wait(10)
        os.fdatasync(fd)
        self.calls += 1


def _journal(intake, database_url: str, fsync=os.fdatasync) -> IntakeJournal:
    database = Path(database_url.removeprefix("sqlite:///"))
    return IntakeJournal(database.parent / "journal", database, journal_token(intake),
                         fsync=fsync).start(1)


def _rows(sessions) -> list[tuple]:
    with sessions() as session:
        return session.execute(select(InboundMessage.journal_seq, InboundMessage.received_at,
                                      InboundMessage.status).order_by(InboundMessage.id)).all()


def test_the_ack_waits_for_the_journal_fsync_as_well_as_the_commit(intake, sessions,
                                                                    database_url):
    fsync = CountingFsync()
    fsync.gate.clear()
    journal = _journal(intake, database_url, fsync)

    async def scenario() -> list:
        writer = IntakeWriter(intake, 64, loop=asyncio.get_running_loop(), journal=journal)
        writer.one_sender = lambda: True
        task = asyncio.ensure_future(writer.store(orm("J1", "NW"), "10.1.1.1:3000"))
        for _ in range(20):
            await asyncio.sleep(0)
        before = (writer.commits, task.done(), len(_rows(sessions)))
        fsync.gate.set()
        outcome = await asyncio.wait_for(task, 10)
        writer.stop()
        return [before, outcome.status]

    before, status = asyncio.run(scenario())
    assert before == (1, False, 1)   # committed and visible, but not acknowledged yet
    assert status == "PROCESSED"
    (seq, received_at, _), = _rows(sessions)
    assert seq == 1 and received_at is not None


def test_rows_carry_their_journal_record_and_its_time(intake, sessions, database_url):
    journal = _journal(intake, database_url)
    folder = journal.folder

    async def scenario() -> None:
        writer = IntakeWriter(intake, 64, loop=asyncio.get_running_loop(), journal=journal)
        writer.one_sender = lambda: True
        for n in range(3):  # the second changes an unknown order: FAILED, stored again
            await writer.store(orm(f"J{n}", "XO" if n == 1 else "NW", placer=f"P{n}",
                                   accession=f"A{n}"), "peer")
        assert [status for _, _, status in _rows(sessions)] == ["PROCESSED", "FAILED",
                                                                 "PROCESSED"]
        records = read_segment(segment_files(folder)[0])[0]
        assert [(r.seq, r.received_at) for r in records] == \
            [(seq, at) for seq, at, _ in _rows(sessions)] == \
            [(n + 1, records[n].received_at) for n in range(3)]
        writer.stop()

    asyncio.run(scenario())
    assert segment_files(folder) == []   # stopped cleanly with all stored: nothing left


def test_only_the_writers_connection_commits_without_fsync(intake, sessions, database_url):
    journal = _journal(intake, database_url)

    async def scenario() -> tuple[int, int]:
        writer = IntakeWriter(intake, 64, loop=asyncio.get_running_loop(), journal=journal)
        writer.one_sender = lambda: True
        await writer.store(orm("J1", "NW"), "peer")
        mine = writer._open().execute(text("PRAGMA synchronous")).scalar()
        with sessions() as session:
            others = session.execute(text("PRAGMA synchronous")).scalar()
        writer.stop()
        return mine, others

    assert asyncio.run(scenario()) == (1, 2)   # NORMAL for the writer, FULL for the rest
    with sessions() as session:   # the writer's connection did not go back to the pool so
        assert session.execute(text("PRAGMA synchronous")).scalar() == 2


def test_groups_of_several_senders_commit_durably_and_are_not_journalled(intake, sessions,
                                                                           database_url):
    fsync = CountingFsync()
    journal = _journal(intake, database_url, fsync)

    async def scenario() -> list:
        writer = IntakeWriter(intake, 64, loop=asyncio.get_running_loop(), journal=journal)
        senders = 6
        writer.one_sender = lambda: senders == 1
        await asyncio.gather(*(writer.store(orm(f"S{n}", "NW", placer=f"P{n}",
                                                accession=f"A{n}"), "peer") for n in range(6)))
        several = (writer.commits, fsync.calls, _synchronous(writer))
        senders = 1   # the others disconnected
        await writer.store(orm("S6", "NW", placer="P6", accession="A6"), "peer")
        alone = (writer.commits, fsync.calls, _synchronous(writer))
        writer.stop()
        return [several, alone]

    # Six together: one group, one durable commit (FULL), no journal fsync. Then a lone
    # sender's message: journalled and fsynced there, its commit without an fsync (NORMAL).
    assert asyncio.run(scenario()) == [(1, 0, 2), (2, 1, 1)]
    assert [seq for seq, _, _ in _rows(sessions)] == [None] * 6 + [1]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 7


def _synchronous(writer: IntakeWriter) -> int:
    return writer._open().execute(text("PRAGMA synchronous")).scalar()
