"""The match queue: both records side by side with each field's points and reason; Link (after
a confirmation) and Dismiss, through broker.matching.review, each written to the audit log."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from broker.admin.auth import actor, admin_required, sessions
from broker.matching.queue import MatchError, MatchView, view
from broker.matching.review import dismiss_match, link_match
from broker.store.models import MatchCandidate, Patient

bp = Blueprint("matches", __name__)
FILTERS = ("open", "linked", "dismissed", "conflicts", "all")
PER_PAGE = 25
# The fields both sides show, in reading order (the queue's field_scores name the same ones).
FIELDS = ("family_name", "given_name", "birth_date", "sex", "address", "phone")


def queue_page(session: Session, which: str, limit: int = PER_PAGE,
               offset: int = 0) -> tuple[list[MatchView], int]:
    """Entries for a filter, best score first, and how many there are in all."""
    conditions: list[Any] = []
    if which == "conflicts":
        conditions = [MatchCandidate.kind == "conflict", MatchCandidate.status == "OPEN"]
    elif which != "all":
        conditions = [MatchCandidate.status == which.upper()]
    total = session.scalar(select(func.count()).select_from(MatchCandidate).where(*conditions))
    entries = session.scalars(select(MatchCandidate).where(*conditions)
                              .order_by(MatchCandidate.total_score.desc(), MatchCandidate.id)
                              .limit(limit).offset(offset)).all()
    # Both records of every entry with their identifiers in two statements; view() then finds
    # them in the session instead of loading each patient and its identifiers one by one.
    ids = {p for e in entries for p in (e.incoming_patient_id, e.candidate_patient_id)}
    loaded = session.scalars(select(Patient).where(Patient.id.in_(ids))
                             .options(selectinload(Patient.identifiers))).all()
    shown = [view(session, e) for e in entries]
    del loaded  # held until every view was built (the session keeps objects weakly)
    return shown, total or 0


def match_as_dict(entry: MatchView) -> dict[str, Any]:
    """A queue entry as JSON-ready data."""
    data = asdict(entry)
    data["created_at"] = entry.created_at.isoformat(timespec="seconds")
    data["resolved_at"] = entry.resolved_at.isoformat(timespec="seconds") if entry.resolved_at else None
    return data


@bp.get("/matches")
def queue():
    """The review queue, filtered (open by default) and paged."""
    which = request.args.get("filter", "open")
    which = which if which in FILTERS else "open"
    number = max(request.args.get("page", 1, type=int), 1)
    with sessions()() as session:
        entries, total = queue_page(session, which, PER_PAGE, (number - 1) * PER_PAGE)
    return render_template("matches.html", entries=entries, total=total, which=which,
                           filters=FILTERS, fields=FIELDS, page=number,
                           pages=max((total + PER_PAGE - 1) // PER_PAGE, 1))


@bp.get("/matches/<int:match_id>/link")
@admin_required
def confirm_link(match_id: int):
    """Ask before merging: the two records once more, and a Confirm button."""
    with sessions()() as session:
        entry = session.get(MatchCandidate, match_id)
        if entry is None:
            abort(404)
        shown = view(session, entry)
    return render_template("confirm_link.html", entry=shown, fields=FIELDS)


@bp.post("/matches/<int:match_id>/link")
@admin_required
def link(match_id: int):
    """Link the pair: the incoming record is merged into the candidate."""
    try:
        with sessions().begin() as session:
            merge = link_match(session, match_id, actor())
            survivor = merge.survivor_id if merge else None
        flash(f"Match #{match_id} linked" + (f": records merged into patient #{survivor}."
                                             if survivor else "."))
    except MatchError as exc:
        flash(str(exc), "error")
    return redirect(url_for("matches.queue"))


@bp.post("/matches/<int:match_id>/dismiss")
@admin_required
def dismiss(match_id: int):
    """The two records are different people; they will not be proposed again."""
    try:
        with sessions().begin() as session:
            dismiss_match(session, match_id, actor())
        flash(f"Match #{match_id} dismissed.")
    except MatchError as exc:
        flash(str(exc), "error")
    return redirect(url_for("matches.queue"))
