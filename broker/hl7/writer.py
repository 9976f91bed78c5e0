"""One writer thread for all HL7 connections, committing messages in groups.

SQLite has one writer and a durable commit (WAL, synchronous=FULL) costs an fsync. Messages that
arrive together on several connections are stored and applied in one transaction, each in its
own savepoint, and committed once; every ACK is released only after that commit returned, so
"stored before acknowledged" holds for each message of the group.
"""
from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future

from broker.hl7.intake import Hl7Intake, Outcome

log = logging.getLogger(__name__)
_STOP = object()


class IntakeWriter:
    """Serialises HL7 intake on one thread; `submit` returns a future of the Outcome."""

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
        self._queue.put((raw, peer, future))
        return future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._commit_group(item):
                return

    def _commit_group(self, first: tuple) -> bool:
        """Process `first` and whatever arrives meanwhile in one transaction, then commit.

        Messages that arrive while earlier ones are being applied join the open transaction, so
        the group grows with the load and one fsync serves every connection that is waiting.
        Returns True when a stop was requested.
        """
        group, outcomes, stopping = [first], [], False
        try:
            with self._intake.sessions.begin() as session:
                outcomes.append(self._intake.process(session, first[0], first[1]))
                while len(group) < self._max_group:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    group.append(item)
                    outcomes.append(self._intake.process(session, item[0], item[1]))
        except Exception:  # noqa: BLE001 - fall back to one transaction per message
            log.warning("hl7 group of %d failed to commit; storing one by one", len(group),
                        exc_info=True)
            for raw, peer, future in group:
                try:
                    future.set_result(self._intake.receive(raw, peer))
                except Exception as exc:  # noqa: BLE001 - the connection answers nothing
                    log.exception("hl7 from %s: message could not be stored", peer)
                    future.set_exception(exc)
            return stopping
        self.commits += 1
        for (_, _, future), outcome in zip(group, outcomes):
            future.set_result(outcome)  # only now, after the commit: stored before acknowledged
        return stopping
