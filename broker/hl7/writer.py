"""The HL7 store path on the MLLP event loop: messages are applied as they arrive and
committed in groups.

SQLite has one writer and a durable commit (WAL, synchronous=FULL) costs an fsync. Messages
that arrive together on several connections are applied in one transaction, each after the
first in its own savepoint (the first is undone with the transaction), and committed once;
every ACK is released only after that commit returned, so "stored before acknowledged" holds
for each message of the group.

Everything runs on the one event-loop thread, the commit included. A separate writer thread
was measured slower (bench/hl7_ingest.py): with the GIL, the two threads only took turns, and
every message crossed between them twice, each time onto a core whose caches held the other
thread's work. Nothing is lost by blocking the loop during a commit: a sender waits for its
ACK, so the next messages arrive only after it anyway.

With one sender connected, each message is a group of its own and waits for its own fsync.
Then, with an intake journal (broker.store.journal), the frame is appended to the journal
before it is parsed, a thread fsyncs the journal while the loop parses and applies it, and the
commit goes without an fsync (synchronous=NORMAL on the writer's connection); the ACK leaves
once both are done. With several senders, the group's commit fsyncs the database as before:
one fsync serves the whole group, and journalling would only add a second file to sync
(measured: ~25% more CPU per message with four senders).
"""
from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from typing import Callable

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from broker.clock import utcnow
from broker.hl7.intake import Hl7Intake, Outcome, Prepared
from broker.store.fastsql import commit_held
from broker.store.journal import IntakeJournal

log = logging.getLogger(__name__)


class IntakeWriter:
    """Applies HL7 messages on one event loop and commits them in groups.

    `store` is awaited on that loop; `submit` may be called from any other thread. Both resolve
    only after the message's transaction committed.
    """

    def __init__(self, intake: Hl7Intake, max_group: int = 64,
                 loop: asyncio.AbstractEventLoop | None = None, quiet_turns: int = 2,
                 journal: IntakeJournal | None = None) -> None:
        """`journal`, when given, is started (recovered) already; the writer closes it."""
        self._intake = intake
        self._journal = journal
        if journal is not None and loop is not None:
            journal.attach(loop)
        self._max_group = max_group
        # A group is committed once the loop has gone this many turns without a new message:
        # a frame read in one turn reaches store() in the next.
        self._quiet_turns = quiet_turns
        self._loop = loop
        self._thread: threading.Thread | None = None
        # The groups' connection and session, held for the writer's life rather than taken for
        # each group: with one sender a group is one message, and a pool checkout, a new
        # Session and its commit/close machinery cost 12-15% of that message's CPU (measured
        # on the writer alone). Each group ends with fastsql.commit_held instead.
        self._connection: Connection | None = None
        self._session: Session | None = None
        self._group: list[tuple[Prepared, asyncio.Future[Outcome], Outcome | None]] = []
        self._seen = 0   # the group's size at the last tick: a larger one means new arrivals
        self._quiet = 0
        self._durable_commit = True  # the connection's synchronous is FULL (else NORMAL)
        self._ticking = False
        self.commits = 0  # groups committed, for the benchmark's figures
        # True while a single connection is open (MllpServer.one_connection): its sender waits
        # for each ACK, so no other message can join the group and waiting for quiet loop
        # turns would only delay the commit.
        self.one_sender: Callable[[], bool] = lambda: False

    def start(self) -> IntakeWriter:
        """Without a caller's loop, run one of its own on a thread (for `submit` callers)."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="hl7-writer",
                                            daemon=True)
            self._thread.start()
        if self._journal is not None:
            self._journal.attach(self._loop)
        return self

    def stop(self) -> None:
        """Commit what was applied, then stop the writer's own loop (not a caller's)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if loop.is_running() and not _on(loop):
            asyncio.run_coroutine_threadsafe(self._finish(), loop).result(30)
        else:
            self._finish_now()
        if self._thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)
            loop.close()

    async def flush(self) -> None:
        """Commit the open group now."""
        self._commit()

    async def _finish(self) -> None:
        self._finish_now()

    def _finish_now(self) -> None:
        self._commit()
        self._release()
        if self._journal is not None:
            self._journal.close()  # syncs, releases the last ACKs, and trims

    def submit(self, raw: bytes, peer: str) -> Future[Outcome]:
        """From another thread: the future resolves after the message's transaction committed."""
        assert self._loop is not None, "start() the writer first"
        return asyncio.run_coroutine_threadsafe(self.store(raw, peer), self._loop)

    async def store(self, raw: bytes, peer: str) -> Outcome:
        """Apply one message in the open group; returns once that group committed."""
        running = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = running
            if self._journal is not None:
                self._journal.attach(running)
        elif running is not self._loop:
            raise RuntimeError("IntakeWriter.store runs on the writer's loop; use submit() "
                               "from anywhere else")
        # A lone sender's message opens and closes its own group: journal it (first, so that
        # its fsync overlaps the rest) and commit without an fsync. A group of several commits
        # durably instead, as does one joined by a lone sender's message.
        journaled = self._journal is not None and not self._group and self.one_sender()
        if journaled:
            received = utcnow()
            seq = self._journal.append(raw, peer, received)
        item = self._intake.prepare(raw, peer)
        if journaled:
            item.journal_seq, item.received_at = seq, received
        waiter: asyncio.Future[Outcome] = self._loop.create_future()
        try:
            session = self._open()
            if not self._group:
                self._durable(not journaled)
            outcome = self._intake.process(session, item, first=not self._group)
        except Exception:  # noqa: BLE001 - the transaction is unusable: redo the group singly
            log.warning("hl7 group failed while applying a message; storing one by one",
                        exc_info=True)
            self._group.append((item, waiter, None))
            self._abandon()
            return await waiter
        self._group.append((item, waiter, outcome))
        if len(self._group) >= self._max_group or self.one_sender():
            self._commit()
        elif not self._ticking:
            self._ticking = True
            self._loop.call_soon(self._tick)
        return await waiter

    def _open(self) -> Session:
        """The writer's session on its own connection; a group's transaction begins with its
        first statement."""
        if self._session is None:
            if self._connection is None:
                self._connection = self._intake.sessions.kw["bind"].connect()
                self._durable_commit = True
            self._session = self._intake.sessions(bind=self._connection)
        return self._session

    def _durable(self, durable: bool) -> None:
        """Before a group's first statement: whether its commit fsyncs (FULL) or leaves that
        to the journal (NORMAL). The connection is never returned to the pool with NORMAL."""
        if durable != self._durable_commit:
            cursor = self._connection.connection.dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
            cursor.close()
            self._durable_commit = durable

    def _release(self, broken: bool = False) -> None:
        """Give the connection back at stop; after a failure, discard it (its state is unknown).

        The session goes with it: it owns nothing but its transaction on this connection,
        which closing the connection rolls back."""
        self._session = None
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                if broken or not self._durable_commit:
                    connection.invalidate()
                connection.close()
            except Exception:  # noqa: BLE001 - a broken connection is dropped either way
                log.debug("hl7 writer connection did not close cleanly", exc_info=True)

    def _tick(self) -> None:
        if not self._group:
            self._ticking = False
            return
        if len(self._group) != self._seen:
            self._seen, self._quiet = len(self._group), 0
        else:
            self._quiet += 1
        if self._quiet < self._quiet_turns:
            self._loop.call_soon(self._tick)
            return
        self._ticking = False
        self._commit()

    def _take(self) -> list:
        """The open group, leaving none open."""
        group = self._group
        self._group, self._seen = [], 0
        return group

    def _commit(self) -> None:
        if not self._group:
            return
        group = self._take()
        try:
            commit_held(self._session)
        except Exception:  # noqa: BLE001 - fall back to one transaction per message
            log.warning("hl7 group of %d failed to commit; storing one by one", len(group),
                        exc_info=True)
            self._release(broken=True)
            self._redo(group)
            return
        self.commits += 1
        seqs = [item.journal_seq for item, _, _ in group if item.journal_seq is not None]
        if seqs:
            self._journal.committed(seqs[-1])
        if seqs and not self._durable_commit:  # the journal holds them: wait for its fsync
            self._journal.after_sync(seqs[-1], lambda: _acknowledge(group))
        else:
            _acknowledge(group)

    def _abandon(self) -> None:
        group = self._take()
        self._release(broken=True)
        self._redo(group)

    def _redo(self, group: list) -> None:
        for item, waiter, _ in group:
            try:
                outcome = self._intake.store(item)
            except Exception as exc:  # noqa: BLE001 - the connection answers nothing
                log.exception("hl7 from %s: message could not be stored", item.peer)
                if not waiter.done():
                    waiter.set_exception(exc)
                continue
            if item.journal_seq is not None:  # its own transaction committed with an fsync
                self._journal.committed(item.journal_seq)
            if not waiter.done():
                waiter.set_result(outcome)


def _acknowledge(group: list) -> None:
    """Release the group's ACKs: only after its commit (and journal fsync), stored, then
    acknowledged."""
    for _, waiter, outcome in group:
        if not waiter.done():  # a connection that went away no longer waits
            waiter.set_result(outcome)


def _on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
