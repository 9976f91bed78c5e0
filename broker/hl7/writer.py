"""One writer thread for all HL7 connections, committing messages in groups.

SQLite has one writer and a durable commit (WAL, synchronous=FULL) costs an fsync. Messages that
arrive together on several connections are stored and applied in one transaction, each in its
own savepoint, and committed once; every ACK is released only after that commit returned, so
"stored before acknowledged" holds for each message of the group.

The work that needs no database (parsing, mapping, building the AA) is done by the submitting
thread before the message is queued: it overlaps with the writer's statements and fsyncs,
which release the GIL, instead of lengthening the writer's turn.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import defaultdict
from concurrent.futures import Future
from typing import Union

from broker.hl7.intake import Hl7Intake, Outcome, Prepared

log = logging.getLogger(__name__)
_STOP = object()
Waiter = Union["Future[Outcome]", "asyncio.Future[Outcome]"]


class IntakeWriter:
    """Serialises HL7 intake on one thread.

    `submit` (any thread) returns a concurrent future; `store` (on an event loop) is awaited.
    Both resolve only after the message's transaction committed.
    """

    def __init__(self, intake: Hl7Intake, max_group: int = 64) -> None:
        self._intake = intake
        self._max_group = max_group
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="hl7-writer", daemon=True)
        self.commits = 0  # groups committed, for the benchmark's figures

    def start(self) -> IntakeWriter:
        """Start the writer thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Finish what was submitted, then stop the thread."""
        self._queue.put(_STOP)
        self._thread.join(30)

    def submit(self, raw: bytes, peer: str) -> Future[Outcome]:
        """Queue one message; the future resolves after its transaction committed."""
        future: Future[Outcome] = Future()
        self._queue.put((self._intake.prepare(raw, peer), future))
        return future

    async def store(self, raw: bytes, peer: str) -> Outcome:
        """Store one message from an event loop; returns once its transaction committed."""
        waiter = asyncio.get_running_loop().create_future()
        self._queue.put((self._intake.prepare(raw, peer), waiter))
        return await waiter

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._commit_group(item):
                return

    def _commit_group(self, first: tuple[Prepared, Waiter]) -> bool:
        """Process `first` and whatever arrives meanwhile in one transaction, then commit.

        Messages that arrive while earlier ones are being applied join the open transaction, so
        the group grows with the load and one fsync serves every connection that is waiting.
        Returns True when a stop was requested.
        """
        group, outcomes, stopping = [first], [], False
        try:
            with self._intake.sessions.begin() as session:
                outcomes.append(self._intake.process(session, first[0]))
                while len(group) < self._max_group:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    group.append(item)
                    outcomes.append(self._intake.process(session, item[0]))
        except Exception:  # noqa: BLE001 - fall back to one transaction per message
            log.warning("hl7 group of %d failed to commit; storing one by one", len(group),
                        exc_info=True)
            _settle([(waiter, *self._store_alone(prepared)) for prepared, waiter in group])
            return stopping
        self.commits += 1
        # Only now, after the commit: stored before acknowledged.
        _settle([(waiter, outcome, None) for (_, waiter), outcome in zip(group, outcomes)])
        return stopping

    def _store_alone(self, prepared: Prepared) -> tuple[Outcome | None, Exception | None]:
        try:
            return self._intake.store(prepared), None
        except Exception as exc:  # noqa: BLE001 - the connection answers nothing
            log.exception("hl7 from %s: message could not be stored", prepared.peer)
            return None, exc


def _settle(results: list[tuple[Waiter, Outcome | None, Exception | None]]) -> None:
    """Resolve every waiter: concurrent futures at once, an event loop's in one wake-up."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = defaultdict(list)
    for waiter, outcome, exc in results:
        if isinstance(waiter, asyncio.Future):
            by_loop[waiter.get_loop()].append((waiter, outcome, exc))
        elif exc is not None:
            waiter.set_exception(exc)
        else:
            waiter.set_result(outcome)
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, items)
        except RuntimeError:  # the loop was closed: nobody is waiting any more
            log.info("hl7: %d outcomes for a closed event loop dropped", len(items))


def _resolve(items: list) -> None:
    for waiter, outcome, exc in items:
        if waiter.done():  # the connection went away (its task was cancelled)
            continue
        if exc is not None:
            waiter.set_exception(exc)
        else:
            waiter.set_result(outcome)
