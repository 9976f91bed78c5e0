"""The dashboard: listeners, today's worklist, messages per hour, the outbox and the queue."""
from __future__ import annotations

from datetime import datetime, timedelta

from flask import Blueprint, current_app, render_template
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broker.admin.auth import sessions
from broker.admin.charts import stacked_bars
from broker.admin.outbox_rows import outbox_depth
from broker.admin.queries import step_counts
from broker.clock import local_now, utcnow
from broker.store.models import InboundMessage, MatchCandidate, unprocessed_message

bp = Blueprint("dashboard", __name__)


def first_id_since(session: Session, since: datetime) -> int | None:
    """The first message received at or after `since`, found by bisecting ids.

    received_at has no index (ids are arrival order already), so the boundary is looked up
    by id: a few primary-key reads instead of a scan.
    """
    low = session.scalar(select(func.min(InboundMessage.id)))
    high = session.scalar(select(func.max(InboundMessage.id)))
    if high is None or session.get(InboundMessage, high).received_at < since:
        return None
    while low < high:
        middle = (low + high) // 2
        at = session.scalar(select(InboundMessage.received_at).where(InboundMessage.id >= middle)
                            .order_by(InboundMessage.id).limit(1))
        if at < since:
            low = middle + 1
        else:
            high = middle
    return low


def hourly_messages(session: Session, now: datetime) -> tuple[list[str], dict[str, list[int]]]:
    """Messages per hour of the last 24 hours (UTC) by outcome."""
    start = (now - timedelta(hours=23)).replace(minute=0, second=0, microsecond=0)
    hours = [start + timedelta(hours=n) for n in range(24)]
    series: dict[str, list[int]] = {}
    first = first_id_since(session, start)
    if first is not None:
        for received_at, status in session.execute(
                select(InboundMessage.received_at, InboundMessage.status)
                .where(InboundMessage.id >= first)):
            slot = int((received_at - start).total_seconds() // 3600)
            if 0 <= slot < 24:
                series.setdefault(status, [0] * 24)[slot] += 1
    return [f"{h:%H}" for h in hours], dict(sorted(series.items()))


@bp.get("/")
def index():
    """The page an admin keeps open: counts and charts, each linking to its list."""
    today = local_now().date()
    with sessions()() as session:
        by_step = step_counts(session, today)
        hours, series = hourly_messages(session, utcnow())
        depth = outbox_depth(session)
        open_queue = session.scalar(select(func.count()).select_from(MatchCandidate)
                                    .where(MatchCandidate.status == "OPEN"))
        failed = session.scalar(select(func.count()).select_from(InboundMessage).where(
            unprocessed_message(InboundMessage.status),
            InboundMessage.status.in_(("FAILED", "REJECTED"))))
    modalities = sorted({m for m, _ in by_step})
    statuses = sorted({s for _, s in by_step})
    worklist_chart = stacked_bars(modalities, {s: [by_step.get((m, s), 0) for m in modalities]
                                               for s in statuses}, width=360)
    outbox_chart = stacked_bars(["PENDING", "FAILED", "DEAD"],
                                {"rows": [depth.get(s, 0) for s in ("PENDING", "FAILED", "DEAD")]},
                                width=200)
    return render_template(
        "index.html", listeners=current_app.config.get("BROKER_LISTENERS", []), today=today,
        worklist_chart=worklist_chart, steps_today=sum(by_step.values()),
        message_chart=stacked_bars(hours, series, label_every=3),
        messages_24h=sum(sum(v) for v in series.values()), outbox_chart=outbox_chart,
        depth=depth, open_queue=open_queue, failed=failed)
