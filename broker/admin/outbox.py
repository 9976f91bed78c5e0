"""The outbox page: pending, failed and dead notifications with their last error, and Retry."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from broker.admin.auth import actor, admin_required, sessions
from broker.admin.outbox_rows import STATUSES, OutboxError, list_notifications, retry_notification

bp = Blueprint("outbox", __name__)


@bp.get("/outbox")
def listing():
    """Rows not yet delivered, newest first (or one status)."""
    status = request.args.get("status", "").upper()
    with sessions()() as session:
        rows = [dict(id=r.id, destination=r.destination, kind=r.kind, status=r.status,
                     attempts=r.attempts, next_attempt_at=r.next_attempt_at,
                     last_error=r.last_error, created_at=r.created_at)
                for r in list_notifications(session, status if status in STATUSES else None)]
    return render_template("outbox.html", rows=rows, statuses=STATUSES, status=status)


@bp.post("/outbox/<int:notification_id>/retry")
@admin_required
def retry(notification_id: int):
    """Put a failed or dead notification back in line."""
    try:
        with sessions().begin() as session:
            retry_notification(session, notification_id, actor())
        flash(f"Notification #{notification_id} will be sent again.")
    except OutboxError as exc:
        flash(str(exc), "error")
    return redirect(url_for("outbox.listing"))
