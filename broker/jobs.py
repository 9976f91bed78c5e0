"""APScheduler jobs that run inside `broker serve`: new patients' candidate searches, MPPS
forwarding, notification delivery (HL7 and FHIR) and PACS checks, worklist housekeeping, and
SQLite's WAL checkpoint."""
from __future__ import annotations

import logging

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from broker.clock import local_now, utcnow
from broker.config import Settings
from broker.matching.searches import run_pending_searches
from broker.store.db import is_sqlite, read_only_sessions
from broker.store.housekeeping import cancel_stale_steps, purge_finished

log = logging.getLogger(__name__)


def build_scheduler(settings: Settings, engine: Engine, sessions: sessionmaker[Session],
                    fhir=None, notify=None) -> BackgroundScheduler:
    """The scheduler with every job this configuration needs; not started. `fhir`: the
    process's broker.fhir.sync.FhirSync when [fhir] base_url is set; `notify`: the
    broker.notify.runtime.NotifyRuntime whose outbox and PACS checks run here."""
    scheduler = BackgroundScheduler(daemon=True, job_defaults={"coalesce": True, "max_instances": 1})
    if is_sqlite(engine):
        scheduler.add_job(checkpoint_wal, "interval", minutes=10, args=[engine],
                          id="sqlite-wal-checkpoint")
    # Every process runs it: rows are claimed, so several processes share the work.
    scheduler.add_job(run_pending_searches, "interval", seconds=1, id="patient-searches",
                      args=[sessions, settings.matching, 100, read_only_sessions(engine)])
    if settings.mpps.forward_to:
        from broker.dicom.forward import forward_due
        scheduler.add_job(forward_due, "interval", seconds=settings.mpps.forward_interval_seconds,
                          args=[sessions, settings.mpps], id="mpps-forward")
    if notify is not None and notify.notifier.enabled:
        from broker.notify.deliver import deliver_due
        from broker.notify.fhir_deliver import deliver_fhir_due
        from broker.notify.pacs_check import run_pacs_checks
        # Every process runs them: rows are claimed (SKIP LOCKED), each is handled once.
        if settings.notify.hl7_to:
            scheduler.add_job(deliver_due, "interval", seconds=settings.notify.interval_seconds,
                              args=[sessions, notify.sender, settings.notify],
                              id="notify-deliver")
        if notify.fhir_writer is not None:
            scheduler.add_job(deliver_fhir_due, "interval",
                              seconds=settings.notify.interval_seconds,
                              args=[sessions, notify.fhir_writer, settings.notify],
                              id="notify-fhir")
        scheduler.add_job(run_pacs_checks, "interval", seconds=settings.notify.interval_seconds,
                          args=[sessions, notify.notifier, notify.pacs_ask()], id="pacs-checks")
    worklist = settings.worklist
    if worklist.auto_cancel_after_days > 0 or worklist.purge_after_days > 0:
        scheduler.add_job(run_housekeeping, "interval",
                          minutes=worklist.housekeeping_interval_minutes,
                          args=[sessions, settings], id="worklist-housekeeping")
    if settings.fhir.base_url and fhir is not None:
        # Subscription watch/revive and the catch-up search, run by the FHIR worker thread
        # (serialised with notifications); across processes the catch-up takes a database lock.
        scheduler.add_job(fhir.request_tick, "interval", seconds=settings.fhir.poll_seconds,
                          id="fhir-sync")
    return scheduler


def checkpoint_wal(engine: Engine) -> None:
    """Fold SQLite's write-ahead log back into the database so it does not grow without bound."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        busy, pages, moved = conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)")).one()
    if busy:
        log.debug("wal checkpoint: readers busy, %s of %s pages moved", moved, pages)


def run_housekeeping(sessions: sessionmaker[Session], settings: Settings) -> tuple[int, int]:
    """Cancel stale steps and purge finished orders, as configured; returns both counts."""
    worklist = settings.worklist
    canceled = purged = 0
    if worklist.auto_cancel_after_days > 0:
        with sessions.begin() as session:
            canceled = cancel_stale_steps(session, local_now(), worklist.auto_cancel_after_days)
    if worklist.purge_after_days > 0:
        with sessions.begin() as session:
            purged = purge_finished(session, utcnow(), worklist.purge_after_days)
    if canceled or purged:
        log.info("housekeeping: %d stale steps canceled, %d finished orders purged",
                 canceled, purged)
    return canceled, purged
