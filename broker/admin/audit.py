"""The audit log (admin only): who did what, when, to which record."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.admin.auth import admin_required, sessions
from broker.store.models import AuditEvent

bp = Blueprint("audit", __name__)


def audit_events(session: Session, actor: str = "", action: str = "", before_id: int | None = None,
                 limit: int = 100) -> list[dict[str, Any]]:
    """Newest first, optionally by actor and action (prefix, e.g. "match.")."""
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if actor:
        stmt = stmt.where(AuditEvent.actor == actor)
    if action:
        stmt = stmt.where(AuditEvent.action.startswith(action, autoescape=True))
    if before_id:
        stmt = stmt.where(AuditEvent.id < before_id)
    return [{"id": e.id, "at": e.at.isoformat(timespec="seconds"), "actor": e.actor,
             "action": e.action, "entity_type": e.entity_type, "entity_id": e.entity_id,
             "detail": e.detail} for e in session.scalars(stmt)]


@bp.get("/audit")
@admin_required
def listing():
    """The newest events; 'Older' pages back by id."""
    args = request.args
    with sessions()() as session:
        events = audit_events(session, args.get("actor", ""), args.get("action", ""),
                              args.get("before", type=int))
    return render_template("audit.html", events=events, args=args)
