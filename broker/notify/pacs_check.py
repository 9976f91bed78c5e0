"""The PACS check (trigger "pacs"): after MPPS COMPLETED, ask the PACS until it holds the series
and instances the MPPS referenced (PS3.4 F.7.2.1 Performed Series Sequence), then tell the EHR;
give up after [notify] pacs_give_up_seconds with a visible MISSING ("images missing") state."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broker.clock import utcnow
from broker.dicom.pacs import PacsUnavailable, StudyHoldings
from broker.notify.triggers import CHECKED, MISSING, WAITING, Notifier
from broker.store.models import Order, StudyCheck

log = logging.getLogger(__name__)

Ask = Callable[[str], StudyHoldings]


def claim_checks(session: Session, now: datetime, lease: timedelta, limit: int = 20
                 ) -> list[StudyCheck]:
    """Due WAITING checks, pushed past `lease` so no other process asks at the same time."""
    stmt = (select(StudyCheck).where(StudyCheck.status == WAITING, StudyCheck.next_check_at <= now)
            .order_by(StudyCheck.next_check_at, StudyCheck.id).limit(limit))
    if session.get_bind().dialect.name != "sqlite":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(session.scalars(stmt))
    for row in rows:
        row.next_check_at = now + lease
    return rows


def run_pacs_checks(sessions: sessionmaker[Session], notifier: Notifier, ask: Ask | None,
                    now: datetime | None = None) -> int:
    """Check every due study once; returns how many became available. `ask` is None when the
    trigger waits for the PACS to report (ian): then only the give-up time is watched."""
    settings = notifier.settings
    now = now or utcnow()
    interval = timedelta(seconds=settings.pacs_check_interval_seconds)
    with sessions.begin() as session:
        due = [(c.id, c.study_instance_uid) for c in claim_checks(session, now, interval)]
    available = 0
    for check_id, study in due:
        holdings, error = None, ""
        if ask is not None:
            try:
                holdings = ask(study)
            except PacsUnavailable as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 - one bad answer must not stop the rest
                log.exception("pacs check of study check #%s failed", check_id)
                error = f"error: {exc}"
        with sessions.begin() as session:
            check = session.get(StudyCheck, check_id)
            if check is None or check.status != WAITING:
                continue
            check.checks += 1
            if holdings is not None:
                check.found_series = holdings.series_count
                check.found_instances = holdings.instance_count
            if holdings is not None and _complete(check):
                check.status, check.last_result = CHECKED, "the PACS holds the study"
                order = session.get(Order, check.order_id) if check.order_id else None
                if order is not None:
                    notifier.study_available(session, order, study, counts=(
                        check.found_series, check.found_instances))
                available += 1
                log.info("pacs check #%s: study available (%d series, %d instances)", check_id,
                         check.found_series, check.found_instances)
                continue
            check.last_result = error or (f"the PACS holds {check.found_series} of "
                                          f"{check.expected_series} series, "
                                          f"{check.found_instances} of "
                                          f"{check.expected_instances} instances")
            if check.give_up_at is not None and utcnow() >= check.give_up_at:
                check.status = MISSING
                check.last_result = f"images missing: {check.last_result}"
                log.warning("pacs check #%s: given up, %s", check_id, check.last_result)
    return available


def _complete(check: StudyCheck) -> bool:
    return (check.found_instances > 0 and check.found_series >= check.expected_series
            and check.found_instances >= check.expected_instances)


def recheck(session: Session, check_id: int, give_up_seconds: float) -> StudyCheck:
    """An admin asks again for a MISSING study: checked now, with a new give-up time."""
    check = session.get(StudyCheck, check_id)
    if check is None:
        raise LookupError(f"no study check {check_id}")
    if check.status == CHECKED:
        raise ValueError(f"study check {check_id} is already available")
    check.status, check.next_check_at = WAITING, utcnow()
    check.give_up_at = utcnow() + timedelta(seconds=give_up_seconds)
    return check


def list_checks(session: Session, status: str | None = None, limit: int = 100) -> list[StudyCheck]:
    """Study checks, newest first; status WAITING, AVAILABLE, MISSING, REPORTED or None."""
    stmt = select(StudyCheck).order_by(StudyCheck.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(StudyCheck.status == status.upper())
    return list(session.scalars(stmt))
