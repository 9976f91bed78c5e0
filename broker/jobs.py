"""APScheduler jobs that run inside `broker serve`."""
from __future__ import annotations

import logging

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from broker.config import Settings
from broker.store.db import is_sqlite
from broker.workflow_jobs import add_workflow_jobs

log = logging.getLogger(__name__)


def build_scheduler(settings: Settings, engine: Engine,
                    sessions: sessionmaker[Session]) -> BackgroundScheduler:
    """The scheduler with every job this configuration needs; not started."""
    scheduler = BackgroundScheduler(daemon=True, job_defaults={"coalesce": True, "max_instances": 1})
    if is_sqlite(engine):
        scheduler.add_job(checkpoint_wal, "interval", minutes=10, args=[engine],
                          id="sqlite-wal-checkpoint")
    add_workflow_jobs(scheduler, settings, sessions)
    return scheduler


def checkpoint_wal(engine: Engine) -> None:
    """Fold SQLite's write-ahead log back into the database so it does not grow without bound."""
    with engine.connect() as conn:
        busy, pages, moved = conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)")).one()
    if busy:
        log.debug("wal checkpoint: readers busy, %s of %s pages moved", moved, pages)
