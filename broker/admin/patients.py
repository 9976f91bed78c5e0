"""The patient page: identifiers, the records merged into it and an Unmerge button."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for

from broker.admin.auth import actor, admin_required, sessions
from broker.admin.queries import patient_detail
from broker.matching.queue import MatchError
from broker.matching.review import unmerge_patient

bp = Blueprint("patients", __name__)


@bp.get("/patients/<int:patient_id>")
def page(patient_id: int):
    """One patient with its merges, in either direction."""
    with sessions()() as session:
        patient = patient_detail(session, patient_id)
    if patient is None:
        abort(404)
    return render_template("patient.html", patient=patient)


@bp.post("/patients/<int:patient_id>/unmerge")
@admin_required
def unmerge(patient_id: int):
    """Undo the merge that merged this patient away (its link becomes a dismissal)."""
    try:
        with sessions().begin() as session:
            merge = unmerge_patient(session, patient_id, actor())
            survivor = merge.survivor_id
        flash(f"Patient #{patient_id} is separate from patient #{survivor} again.")
    except MatchError as exc:
        flash(str(exc), "error")
    return redirect(url_for("patients.page", patient_id=patient_id))
