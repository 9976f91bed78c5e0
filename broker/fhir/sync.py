"""The FHIR intake at run time: notifications stored then handled by a worker thread, the
catch-up search by `_lastUpdated`, and the subscription watch; built from the settings.

Notifications are hints (DESIGN.md, "Never miss an order"): whatever one misses, the catch-up
search finds, and each resource version is applied once (intake.py).
"""
from __future__ import annotations

import hmac
import json
import logging
import queue
import threading
import zlib
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qsl

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from broker.clock import uid_factory
from broker.config import Settings
from broker.fhir.client import FhirClient, FhirError, entries
from broker.fhir.intake import CHANNEL, FhirIntake, included_resources
from broker.fhir.mapping import load_fhir_mapping
from broker.fhir.notifications import Notice, parse_body, read_notice
from broker.fhir.subscription import HEARTBEAT_SECONDS, SubscriptionKeeper, shared_secret
from broker.mapping.site import load_site_mappings
from broker.resources import mappings_dir
from broker.store.db import read_only_sessions
from broker.store.fhir import all_state, get_state, set_state
from broker.store.messages import finish_message, insert_message
from broker.store.models import InboundMessage

log = logging.getLogger(__name__)
PAGE_SIZE = 100
# Searched from a little before the watermark: a resource stamped just before the last search
# but committed after it is found again (a repeat is recognised by its version).
OVERLAP = timedelta(seconds=1)
_LOCK_KEY = zlib.crc32(b"broker.fhir.catch_up")


def _server_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _instant(moment: datetime) -> str:
    """A FHIR instant (UTC, milliseconds)."""
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


class FhirSync:
    """Notification handling, catch-up search and subscription upkeep for one broker process."""

    def __init__(self, settings: Settings, engine: Engine, sessions: sessionmaker[Session],
                 callback: str = "") -> None:
        fhir = settings.fhir
        self.settings = settings
        self.engine = engine
        self.sessions = sessions
        self.client = FhirClient(fhir)
        folder = Path(settings.hl7.mappings_dir) if settings.hl7.mappings_dir else mappings_dir()
        self.intake = FhirIntake(sessions, read_only_sessions(engine), self.client,
                                 load_fhir_mapping(folder / "fhir.toml"),
                                 load_site_mappings(folder), uid_factory(settings.uid.root),
                                 settings.hl7.patient_id_issuer)
        self.keeper = SubscriptionKeeper(fhir, self.client, sessions, callback)
        self._criteria = parse_qsl(fhir.criteria.partition("?")[2])
        self._queue: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        self._catch_up_lock = threading.Lock()
        self._secret: str | None = None
        self._tick_queued = threading.Event()
        self._heartbeat_silent = False

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker; it sets up the subscription and runs a first catch-up."""
        self._worker = threading.Thread(target=self._work, name="fhir-sync", daemon=True)
        self._worker.start()
        self.request_tick()

    def stop(self) -> None:
        """Let the worker finish what it holds, then stop it."""
        if self._worker is not None:
            self._queue.put(("stop", None))
            self._worker.join(30)
            self._worker = None

    def tick(self) -> None:
        """The scheduled job: watch (or set up) the subscription, then catch up; one process
        at a time (several `broker serve` on PostgreSQL share one Subscription)."""
        with self._catch_up_lock, self._database_lock() as ours:
            if not ours:
                return
            if self.settings.fhir.mode != "poll":
                try:
                    state = self.keeper.watch()
                    if state.status in ("error", "off"):
                        log.warning("fhir: Subscription/%s is %s", state.id, state.status)
                except FhirError as exc:
                    log.warning("fhir: subscription not checked: %s", exc)
            if self.settings.fhir.mode == "backport":
                self._check_heartbeat()
            self._catch_up(None)

    def _check_heartbeat(self) -> None:
        """Log once when backport heartbeats stop (a server restart can end them): not fatal,
        the catch-up search every poll_seconds covers what notifications miss."""
        with self.sessions() as session:
            last = get_state(session, "last_heartbeat") or get_state(session, "last_handshake")
        silent = bool(last) and datetime.now(timezone.utc) - _server_time(last) > \
            timedelta(seconds=3 * HEARTBEAT_SECONDS)
        if silent and not self._heartbeat_silent:
            log.warning("fhir: no heartbeat since %s; relying on the catch-up search every "
                        "%s s", last, self.settings.fhir.poll_seconds)
        self._heartbeat_silent = silent

    def request_tick(self) -> None:
        """Ask the worker for a tick (the scheduler's job: it never blocks the scheduler); a
        tick still waiting is not queued twice."""
        if not self._tick_queued.is_set():
            self._tick_queued.set()
            self._queue.put(("tick", None))

    # -- notifications ------------------------------------------------------------------------

    def check_secret(self, given: str) -> bool:
        """Constant-time comparison with the subscription's shared secret."""
        if self._secret is None:
            self._secret = shared_secret(self.sessions)
        return hmac.compare_digest(given.encode(), self._secret.encode())

    def receive(self, raw: bytes, path: str, peer: str) -> tuple[int, str]:
        """Store one notification (committed before it is answered), queue its handling;
        (HTTP status, text). An unreadable body is stored REJECTED and answered 400."""
        try:
            body = parse_body(raw)
        except ValueError as exc:
            with self.sessions.begin() as session:
                message_id = self._store(session, raw, path, peer)
                finish_message(session, message_id, "REJECTED", str(exc), None)
            log.warning("fhir notification from %s (message #%s): %s", peer, message_id, exc)
            return 400, str(exc)
        with self.sessions.begin() as session:
            message_id = self._store(session, raw, path, peer)
        self._queue.put(("notice", (message_id, body, peer)))
        return 200, f"notification stored as #{message_id}"

    def _store(self, session: Session, raw: bytes, path: str, peer: str) -> int:
        message_id = insert_message(session, channel=CHANNEL, sender=path[:255], control_id=None,
                                    message_type="notification", peer=peer, raw=raw)
        assert message_id is not None  # no control id: never taken for a resend
        return message_id

    def handle(self, message_id: int, body: dict | None, peer: str = "") -> None:
        """Act on a stored notification's hints, then record how that went."""
        notice = read_notice(body)
        status, error = "PROCESSED", ""
        try:
            self._act(notice, peer)
        except FhirError as exc:
            # The versions it pointed at stay unread: the next catch-up search finds them.
            status, error = "FAILED", f"FHIR server: {exc}"
            log.warning("fhir notification #%s: %s", message_id, error)
        with self.sessions.begin() as session:
            finish_message(session, message_id, status, error, None)

    def _act(self, notice: Notice, peer: str) -> None:
        if notice.kind in ("handshake", "heartbeat"):
            with self.sessions.begin() as session:
                set_state(session, f"last_{notice.kind}", _instant(datetime.now(timezone.utc)))
        gap = self._record_events(notice)
        for resource in notice.resources:
            self.intake.apply(resource, notice.included, peer)
        for reference in notice.focus:
            resource = self.client.read(reference)
            if resource is not None:
                self.intake.apply(resource, {}, peer)
        if notice.search or gap:
            self.catch_up()

    def _record_events(self, notice: Notice) -> bool:
        """Remember the newest event number; True when some event before it never arrived
        (Backport IG: events-since-subscription-start lets a client detect a gap)."""
        numbers = list(notice.event_numbers)
        if notice.kind != "event" and notice.events_since_start is not None:
            numbers.append(notice.events_since_start)
        if not numbers:
            return False
        with self.sessions.begin() as session:
            last = int(get_state(session, "last_event", "0") or 0)
            newest = max(numbers)
            if newest > last:
                set_state(session, "last_event", str(newest))
                set_state(session, "last_event_at", _instant(datetime.now(timezone.utc)))
        return min(numbers) > last + 1 if notice.kind == "event" else newest > last

    # -- catch-up search ----------------------------------------------------------------------

    def catch_up(self, since: str | None = None) -> int:
        """Search what changed since the watermark and apply it; the number of versions newly
        applied or stored. Runs once at a time across processes (a database lock)."""
        with self._catch_up_lock, self._database_lock() as ours:
            if not ours:
                return 0
            return self._catch_up(since)

    @contextmanager
    def _database_lock(self) -> Iterator[bool]:
        """PostgreSQL: a session advisory lock, held on a connection without a transaction (no
        transaction stays open across the HTTP calls); SQLite has one process."""
        if self.engine.dialect.name != "postgresql":
            yield True
            return
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            got = conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": _LOCK_KEY})
            try:
                yield bool(got)
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})

    def _catch_up(self, since: str | None) -> int:
        with self.sessions() as session:
            watermark = since or get_state(session, "watermark")
        if not watermark:
            self._start_watermark()
            return 0
        applied = 0
        cursor = watermark
        # The subject Patients and registered ImagingStudies come with each page.
        params = [*self._criteria, ("_sort", "_lastUpdated"), ("_count", str(PAGE_SIZE)),
                  ("_include", "ServiceRequest:subject"), ("_revinclude", "ImagingStudy:basedon")]
        start = _instant(_server_time(cursor) - OVERLAP) if cursor else ""
        page: dict | None = self.client.search(
            "ServiceRequest", params + ([("_lastUpdated", f"ge{start}")] if start else []))
        while page:
            matches = entries(page, "match")
            included = included_resources(entries(page, "include"))
            for resource in matches:
                if self.intake.apply(resource, included, "catch-up").status != "SEEN":
                    applied += 1
                stamp = str((resource.get("meta") or {}).get("lastUpdated", ""))
                if stamp and (not cursor or _server_time(stamp) > _server_time(cursor)):
                    cursor = stamp
                    self._save_watermark(cursor)
            if len(matches) < PAGE_SIZE:
                break
            last = str((matches[-1].get("meta") or {}).get("lastUpdated", ""))
            if last and last != start:
                # Keyset paging: a fresh search from the last instant seen. Offset-based `next`
                # links skip a resource when one listed earlier changes during the walk.
                start = last
                page = self.client.search("ServiceRequest",
                                          params + [("_lastUpdated", f"ge{start}")])
            else:
                page = self.client.next_page(page)  # more than a page share one instant
        with self.sessions.begin() as session:
            set_state(session, "last_catch_up", _instant(datetime.now(timezone.utc)))
        if applied:
            log.info("fhir catch-up: %d ServiceRequest versions applied or stored", applied)
        return applied

    def _start_watermark(self) -> None:
        """First start: begin at the newest ServiceRequest's lastUpdated (history before the
        broker's first start is not imported; `broker fhir sync --since` does that)."""
        newest = entries(self.client.search("ServiceRequest", [
            *self._criteria, ("_sort", "-_lastUpdated"), ("_count", "1")]), "match")
        stamp = str((newest[0].get("meta") or {}).get("lastUpdated", "")) if newest else ""
        self._save_watermark(stamp or _instant(datetime.now(timezone.utc)))

    def _save_watermark(self, stamp: str) -> None:
        with self.sessions.begin() as session:
            set_state(session, "watermark", stamp)

    # -- worker, reprocess, status ------------------------------------------------------------

    def _work(self) -> None:
        while True:
            kind, item = self._queue.get()
            if kind == "stop":
                return
            try:
                if kind == "tick":
                    self._tick_queued.clear()
                    self.tick()
                else:
                    self.handle(*item)
            except FhirError as exc:
                log.warning("fhir: %s", exc)
            except Exception:  # noqa: BLE001 - the worker must outlive any one bug
                log.exception("fhir: unexpected error in the sync worker")

    def reprocess(self, message_id: int) -> str:
        """Apply a stored FHIR row again (a ServiceRequest version, or a notification)."""
        with self.sessions() as session:
            row = session.get(InboundMessage, message_id)
            if row is None:
                raise KeyError(f"no inbound message #{message_id}")
            kind, raw = row.message_type, bytes(row.raw)
        if kind == "ServiceRequest":
            return self.intake.reprocess(message_id).status
        self.handle(message_id, parse_body(raw))
        with self.sessions() as session:
            return session.get(InboundMessage, message_id).status

    def status(self) -> dict[str, str]:
        """The stored state (no secret) and the subscription as the server has it now."""
        with self.sessions() as session:
            state = {k: v for k, v in all_state(session).items() if k != "secret"}
        sub_id = state.get("subscription_id")
        if sub_id and self.settings.fhir.mode != "poll":
            try:
                current = self.client.read(f"Subscription/{sub_id}") or {}
                state["subscription_status"] = str(current.get("status", "missing"))
                if current.get("error"):
                    state["subscription_error"] = str(current["error"])
            except FhirError as exc:
                state["subscription_status"] = f"unknown ({exc})"
        if state.get("watermark"):
            lag = datetime.now(timezone.utc) - _server_time(state["watermark"])
            state["lag_seconds"] = f"{max(lag.total_seconds(), 0):.1f}"
        return state


def callback_url(settings: Settings, web_address: tuple[str, int] | None) -> str:
    """[fhir] callback_url, else http://<web host>:<web port>/fhir/notify."""
    if settings.fhir.callback_url:
        return settings.fhir.callback_url
    host, port = web_address or (settings.web.host, settings.web.port)
    return f"http://{host}:{port}/fhir/notify"
