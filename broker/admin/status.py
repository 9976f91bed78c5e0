"""Health and status: what a load balancer probes and what an admin sees first."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template
from sqlalchemy import func, null, select, text, union_all
from sqlalchemy.orm import Session

from broker.store.models import InboundMessage, Order, ScheduledStep, unprocessed_message

bp = Blueprint("status", __name__)


def _sessions():
    return current_app.extensions["broker.sessions"]


@bp.get("/healthz")
def healthz():
    """200 when the database answers, 503 otherwise."""
    try:
        with _sessions()() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any database failure means unhealthy
        return jsonify(status="error", database=str(exc.__class__.__name__)), 503
    return jsonify(status="ok")


@bp.get("/")
def index():
    """Counts only: no patient data on a page without login."""
    with _sessions()() as session:
        steps = dict(session.execute(
            select(ScheduledStep.status, func.count()).group_by(ScheduledStep.status)).all())
        messages = message_counts(session)
        orders = session.scalar(select(func.count()).select_from(Order))
    return render_template("index.html", steps=steps, messages=messages, orders=orders,
                           listeners=current_app.config.get("BROKER_LISTENERS", []))


def message_counts(session: Session) -> dict[str, int]:
    """Stored messages per status; PROCESSED is the total less the others.

    Only the other statuses are indexed (ix_inbound_message_unprocessed), so they are grouped
    there; one statement, so the total and the others come from the same snapshot.
    """
    others = (select(InboundMessage.status, func.count())
              .where(unprocessed_message(InboundMessage.status)).group_by(InboundMessage.status))
    total = select(null(), select(func.count()).select_from(InboundMessage).scalar_subquery())
    counts: dict[str | None, int] = dict(session.execute(union_all(others, total)).all())
    processed = counts.pop(None) - sum(counts.values())
    return {**counts, "PROCESSED": processed} if processed else counts
