"""The JSON API, acting side (admin role): link, dismiss, unmerge, reprocess, retry, and the
step actions. Every one goes through the same functions as the pages, and is audited."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from broker.admin.auth import actor, admin_required, sessions
from broker.admin.messages import reprocess_message
from broker.admin.outbox_rows import OutboxError, discard_notification, retry_notification
from broker.admin.worklist import apply_step_action
from broker.domain.lifecycle import IllegalTransition
from broker.matching.queue import MatchError
from broker.matching.review import dismiss_match, link_match, unmerge_patient

bp = Blueprint("api_actions", __name__, url_prefix="/api/v1")


def _refused(message: str, status: int = 409):
    return jsonify(error=message), status


@bp.post("/matches/<int:match_id>/link")
@admin_required
def link(match_id: int):
    """Link an open entry (merge the incoming patient into the candidate)."""
    try:
        with sessions().begin() as session:
            merge = link_match(session, match_id, actor())
            body = dict(id=match_id, status="LINKED", merge_id=merge.id if merge else None,
                        survivor_id=merge.survivor_id if merge else None)
    except MatchError as exc:
        return _refused(str(exc))
    return jsonify(body)


@bp.post("/matches/<int:match_id>/dismiss")
@admin_required
def dismiss(match_id: int):
    """Dismiss an open entry: the two records are different people."""
    try:
        with sessions().begin() as session:
            dismiss_match(session, match_id, actor())
    except MatchError as exc:
        return _refused(str(exc))
    return jsonify(id=match_id, status="DISMISSED")


@bp.post("/patients/<int:patient_id>/unmerge")
@admin_required
def unmerge(patient_id: int):
    """Undo the merge that merged this patient into another."""
    try:
        with sessions().begin() as session:
            merge = unmerge_patient(session, patient_id, actor())
            body = dict(patient_id=patient_id, merge_id=merge.id, survivor_id=merge.survivor_id)
    except MatchError as exc:
        return _refused(str(exc))
    return jsonify(body)


@bp.post("/messages/<int:message_id>/reprocess")
@admin_required
def reprocess(message_id: int):
    """Apply a FAILED or REJECTED message again (JSON body {"charset": "8859/1"} optional)."""
    charset = (request.get_json(silent=True) or {}).get("charset")
    try:
        outcome = reprocess_message(message_id, actor(), charset)
    except KeyError as exc:
        return _refused(str(exc.args[0]), 404)
    except ValueError as exc:
        return _refused(str(exc))
    return jsonify(id=message_id, status=outcome.status)


@bp.post("/outbox/<int:notification_id>/retry")
@admin_required
def retry(notification_id: int):
    """Put a failed or dead notification back in line."""
    try:
        with sessions().begin() as session:
            retry_notification(session, notification_id, actor())
    except OutboxError as exc:
        return _refused(str(exc))
    return jsonify(id=notification_id, status="pending")


@bp.post("/outbox/<int:notification_id>/discard")
@admin_required
def discard(notification_id: int):
    """Give up a dead notification, so the ones held behind it are sent."""
    try:
        with sessions().begin() as session:
            discard_notification(session, notification_id, actor())
    except OutboxError as exc:
        return _refused(str(exc))
    return jsonify(id=notification_id, status="discarded")


@bp.post("/steps/<int:step_pk>/<action>")
@admin_required
def step(step_pk: int, action: str):
    """arrive, cancel, hold or release one scheduled step."""
    try:
        status = apply_step_action(step_pk, action, actor())
    except IllegalTransition as exc:
        return _refused(exc.reason)
    return jsonify(id=step_pk, status=status)
