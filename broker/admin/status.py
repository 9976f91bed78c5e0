"""Health and readiness: what a load balancer probes (no login, no patient data)."""
from __future__ import annotations

from functools import lru_cache

from flask import Blueprint, current_app, jsonify
from sqlalchemy import func, null, select, text, union_all
from sqlalchemy.orm import Session

from broker.store.migrate import alembic_config, current_revision
from broker.store.models import InboundMessage, unprocessed_message

bp = Blueprint("status", __name__)


def _sessions():
    return current_app.extensions["broker.sessions"]


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest migration this code ships."""
    from alembic.script import ScriptDirectory
    return ScriptDirectory.from_config(alembic_config(None)).get_current_head()


@bp.get("/healthz")
def healthz():
    """200 when the process serves and the database answers, 503 otherwise."""
    try:
        with _sessions()() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any database failure means unhealthy
        return jsonify(status="error", database=str(exc.__class__.__name__)), 503
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """200 when the database answers and its schema is the newest this code knows."""
    try:
        with _sessions()() as session:
            revision = current_revision(session.get_bind())
    except Exception as exc:  # noqa: BLE001 - not ready for whatever reason
        return jsonify(status="error", database=str(exc.__class__.__name__)), 503
    if revision != head_revision():
        return jsonify(status="migrating", revision=revision), 503
    return jsonify(status="ready", revision=revision)


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
