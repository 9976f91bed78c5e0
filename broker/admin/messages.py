"""Inbound messages: a filtered list, a message page (segments with field names, the ACK
sent, the error) and Reprocess for FAILED and REJECTED ones, through the HL7 intake."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy.orm import Session

from broker.admin.auth import actor, admin_required, sessions
from broker.admin.dashboard import first_id_since
from broker.admin.hl7_view import ack_text, body_text, segments
from broker.store.audit import record_event
from broker.store.messages import MessageSummary, list_messages
from broker.store.models import InboundMessage

bp = Blueprint("messages", __name__)
OUTCOMES = ("RECEIVED", "PROCESSED", "FAILED", "REJECTED")
CHANNELS = ("hl7", "dicom", "fhir")
PER_PAGE = 50


def find_messages(session: Session, status: str = "", sender: str = "", channel: str = "",
                  day: date | None = None, before_id: int | None = None,
                  limit: int = PER_PAGE) -> list[MessageSummary]:
    """Newest first; a day is found as an id range (ids are arrival order)."""
    first = None
    if day is not None:
        start = datetime.combine(day, time.min)
        first = first_id_since(session, start)
        if first is None:
            return []
        after = first_id_since(session, start + timedelta(days=1))
        if after is not None:
            before_id = min(before_id or after, after)
    rows = list_messages(session, status or None, sender or None, limit, before_id, channel or None)
    return [r for r in rows if first is None or r.id >= first]


@bp.get("/messages")
def listing():
    """Filters: channel, outcome, sender, date; 'Older' pages back by id."""
    args = request.args
    try:
        day = date.fromisoformat(args["date"]) if args.get("date") else None
    except ValueError:
        day = None
    status = args.get("status", "").upper()
    with sessions()() as session:
        rows = find_messages(session, status if status in OUTCOMES else "", args.get("sender", ""),
                             args.get("channel", ""), day, args.get("before", type=int))
    return render_template("messages.html", rows=rows, outcomes=OUTCOMES, channels=CHANNELS,
                           args=args, per_page=PER_PAGE)


@bp.get("/messages/<int:message_id>")
def detail(message_id: int):
    """One message: raw segments with field numbers and names, the ACK and the error."""
    with sessions()() as session:
        row = session.get(InboundMessage, message_id)
        if row is None:
            abort(404)
        # HL7 is laid out segment by segment; a FHIR or DICOM body is shown as received.
        shown, parse_error = segments(row.raw) if row.channel == "hl7" else ([], "")
        body = "" if row.channel == "hl7" else body_text(row.raw)
        message = {c: getattr(row, c) for c in ("id", "channel", "sender", "control_id",
                                                "message_type", "peer", "received_at", "status",
                                                "error", "attempts", "processed_at")}
        ack = ack_text(row.ack)
    return render_template("message.html", message=message, segments=shown,
                           parse_error=parse_error, ack=ack, body=body)


def intake():
    """The broker's HL7 intake (the app's own when it was given none, as in tests)."""
    given = current_app.config.get("BROKER_INTAKE")
    if given is None:
        from broker.hl7.handlers import build_intake
        given = current_app.extensions.get("broker.intake")
        if given is None:
            given = build_intake(current_app.config["BROKER_SETTINGS"], sessions())
            current_app.extensions["broker.intake"] = given
    return given


def reprocess_message(message_id: int, who: str, charset: str | None = None):
    """Apply a stored message again through the intake, and audit who asked."""
    with sessions()() as session:
        row = session.get(InboundMessage, message_id)
        if row is not None and row.channel != "hl7":
            # The FHIR intake re-reads a resource from its server; it has no reprocess here.
            raise ValueError(f"message #{message_id} came over {row.channel}: only HL7 "
                             "messages are reprocessed here")
    outcome = intake().reprocess(message_id, charset or None)
    with sessions().begin() as session:
        record_event(session, who, "message.reprocess", "inbound_message", message_id,
                     status=outcome.status)
    return outcome


@bp.post("/messages/<int:message_id>/reprocess")
@admin_required
def reprocess(message_id: int):
    """Reprocess a FAILED or REJECTED message (optionally read in another character set)."""
    try:
        outcome = reprocess_message(message_id, actor(), request.form.get("charset", "").strip())
        flash(f"Message #{message_id} reprocessed: {outcome.status}.",
              "" if outcome.status == "PROCESSED" else "error")
    except (KeyError, ValueError) as exc:
        flash(str(exc.args[0]), "error")
    return redirect(url_for("messages.detail", message_id=message_id))
