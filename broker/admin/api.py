"""The JSON API, reading side: /api/v1/ worklist, orders, patients, matches, messages,
outbox, audit events, and the OpenAPI document. Bearer token or a signed-in session."""
from __future__ import annotations

from datetime import date

from flask import Blueprint, abort, jsonify, request

from broker.admin.audit import audit_events
from broker.admin.auth import admin_required, sessions
from broker.admin.hl7_view import ack_text
from broker.admin.matches import FILTERS, match_as_dict, queue_page
from broker.admin.messages import find_messages
from broker.admin.openapi import document
from broker.admin.outbox_rows import listed
from broker.admin.queries import order_detail, patient_detail, worklist
from broker.admin.worklist import filter_from
from broker.store.models import InboundMessage

bp = Blueprint("api", __name__, url_prefix="/api/v1")
MAX_LIMIT = 500


def _limit(default: int = 50) -> int:
    return min(max(request.args.get("limit", default, type=int), 1), MAX_LIMIT)


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3 description of this API."""
    return jsonify(document())


@bp.get("/worklist")
def worklist_items():
    """Steps of a day (?date=YYYY-MM-DD) by modality, station and status; ?q= searches."""
    limit, offset = _limit(), max(request.args.get("offset", 0, type=int), 0)
    with sessions()() as session:
        rows, total = worklist(session, filter_from(request.args), limit, offset)
    return jsonify(total=total, items=[r.as_dict() for r in rows])


@bp.get("/orders/<int:order_id>")
def order(order_id: int):
    """An order with its patient, procedures, steps and timeline."""
    with sessions()() as session:
        found = order_detail(session, order_id)
    return jsonify(found) if found else abort(404)


@bp.get("/patients/<int:patient_id>")
def patient(patient_id: int):
    """A patient with identifiers and merges."""
    with sessions()() as session:
        found = patient_detail(session, patient_id)
    return jsonify(found) if found else abort(404)


@bp.get("/matches")
def matches():
    """Queue entries (?status=open|linked|dismissed|conflicts|all), best score first."""
    which = request.args.get("status", "open").lower()
    if which not in FILTERS:
        abort(400)
    with sessions()() as session:
        entries, total = queue_page(session, which, _limit(),
                                    max(request.args.get("offset", 0, type=int), 0))
    return jsonify(total=total, items=[match_as_dict(e) for e in entries])


@bp.get("/messages")
def messages():
    """Stored inbound messages, newest first (?status, sender, channel, date, before)."""
    args = request.args
    try:
        day = date.fromisoformat(args["date"]) if args.get("date") else None
    except ValueError:
        abort(400)
    with sessions()() as session:
        rows = find_messages(session, args.get("status", "").upper(), args.get("sender", ""),
                             args.get("channel", ""), day, args.get("before", type=int), _limit())
    return jsonify(items=[{**r.__dict__, "received_at": r.received_at.isoformat()} for r in rows])


@bp.get("/messages/<int:message_id>")
def message(message_id: int):
    """One message with its raw text, outcome, error and the ACK sent."""
    with sessions()() as session:
        row = session.get(InboundMessage, message_id)
        if row is None:
            abort(404)
        return jsonify(id=row.id, channel=row.channel, sender=row.sender,
                       control_id=row.control_id, message_type=row.message_type,
                       received_at=row.received_at.isoformat(), status=row.status,
                       error=row.error, attempts=row.attempts,
                       raw=bytes(row.raw).decode("latin-1"), ack=ack_text(row.ack))


@bp.get("/outbox")
def outbox():
    """Notifications not delivered (?status= pending, failed, dead, held, delivered, discarded)."""
    with sessions()() as session:
        try:
            rows = listed(session, request.args.get("status") or None, _limit(),
                          request.args.get("before", type=int))
        except ValueError as exc:
            return jsonify(error=str(exc)), 400
    for row in rows:
        row["next_attempt_at"] = row["next_attempt_at"].isoformat()
        row["created_at"] = row["created_at"].isoformat()
    return jsonify(items=rows)


@bp.get("/audit")
@admin_required
def audit():
    """Audit events, newest first (?actor, action prefix, before)."""
    with sessions()() as session:
        events = audit_events(session, request.args.get("actor", ""),
                              request.args.get("action", ""), request.args.get("before", type=int),
                              _limit(100))
    return jsonify(items=events)
