"""The outbox page: notifications not yet delivered with their last error; Retry, Discard."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from broker.admin.auth import actor, admin_required, sessions
from broker.admin.outbox_rows import OutboxError, discard_notification, listed, retry_notification
from broker.notify.outbox import VIEWS

bp = Blueprint("outbox", __name__)


@bp.get("/outbox")
def listing():
    """Rows not yet delivered, newest first (or one status)."""
    status = request.args.get("status", "").lower()
    status = status if status in VIEWS else ""
    with sessions()() as session:
        rows = listed(session, status or None)
    return render_template("outbox.html", rows=rows, statuses=VIEWS, status=status)


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


@bp.post("/outbox/<int:notification_id>/discard")
@admin_required
def discard(notification_id: int):
    """Give up a dead notification, so the ones held behind it are sent."""
    try:
        with sessions().begin() as session:
            discard_notification(session, notification_id, actor())
        flash(f"Notification #{notification_id} discarded; the ones held behind it will be sent.")
    except OutboxError as exc:
        flash(str(exc), "error")
    return redirect(url_for("outbox.listing"))
