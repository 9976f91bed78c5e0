"""The HL7 intake's writer thread: database work off the MLLP event loop, in group commits.

The event loop only frames and answers, so a slow transaction (a lock held by an import, a
checkpoint) delays the messages waiting for the database, never the listener itself. Messages
that arrive while the writer is busy are applied together in one transaction, each in its own
savepoint, and committed once: SQLite's one durable commit (an fsync) then serves every sender
that was waiting. Each ACK is released only after the commit of its message returned.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from broker.hl7.intake import Hl7Intake, Outcome

log = logging.getLogger(__name__)


@dataclass
class _Job:
    raw: bytes
    peer: str
    done: Future[Outcome] = field(default_factory=Future)


class IntakeWriter:
    """Stores HL7 messages on one thread; `store` (a coroutine) and `submit` (from any thread)
    resolve once the message's transaction committed."""

    def __init__(self, intake: Hl7Intake, max_group: int = 64) -> None:
        self._intake = intake
        self._max_group = max_group
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="hl7-writer", daemon=True)

    def start(self) -> IntakeWriter:
        """Start the writer thread."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        """Store what was submitted before, then end the thread."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout)

    def submit(self, raw: bytes, peer: str) -> Future[Outcome]:
        """Queue one message; the future resolves after its transaction committed."""
        job = _Job(raw, peer)
        self._jobs.put(job)
        return job.done

    async def store(self, raw: bytes, peer: str) -> Outcome:
        """Store one message without blocking the calling event loop."""
        return await asyncio.wrap_future(self.submit(raw, peer))

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            group = [job]
            while len(group) < self._max_group:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._store(group)
                    return
                group.append(more)
            self._store(group)

    def _store(self, group: list[_Job]) -> None:
        """Commit the group in one transaction; if that fails, each message in its own."""
        try:
            with self._intake.sessions.begin() as session:
                outcomes = [self._intake.process(session, job.raw, job.peer,
                                                 raise_database_errors=True) for job in group]
        except Exception:  # noqa: BLE001 - retried below, one transaction per message
            log.warning("hl7 group of %d could not be committed; storing one by one",
                        len(group), exc_info=True)
        else:
            for job, outcome in zip(group, outcomes):
                job.done.set_result(outcome)
            return
        for job in group:
            try:
                job.done.set_result(self._intake.receive(job.raw, job.peer))
            except Exception as exc:  # noqa: BLE001 - the database is unusable: no ACK may leave
                log.error("hl7 from %s: message could not be stored (%s)", job.peer,
                          exc.__class__.__name__)
                job.done.set_exception(exc)
