"""Scheduled jobs of the exam lifecycle: MPPS forwarding and worklist housekeeping."""
from __future__ import annotations

import logging

from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy.orm import Session, sessionmaker

from broker.clock import local_now, utcnow
from broker.config import Settings
from broker.store.housekeeping import cancel_stale_steps, purge_finished

log = logging.getLogger(__name__)


def add_workflow_jobs(scheduler: BaseScheduler, settings: Settings,
                      sessions: sessionmaker[Session]) -> None:
    """Add the jobs this configuration asks for (forwarding only with peers, housekeeping opt-in)."""
    if settings.mpps.forward_to:
        from broker.dicom.forward import forward_due
        scheduler.add_job(forward_due, "interval", seconds=settings.mpps.forward_interval_seconds,
                          args=[sessions, settings.mpps], id="mpps-forward")
    worklist = settings.worklist
    if worklist.auto_cancel_after_days > 0 or worklist.purge_after_days > 0:
        scheduler.add_job(run_housekeeping, "interval",
                          minutes=worklist.housekeeping_interval_minutes,
                          args=[sessions, settings], id="worklist-housekeeping")


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
