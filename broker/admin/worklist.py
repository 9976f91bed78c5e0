"""The worklist page: a day by modality, station and status, a search, paging, and the step
actions the lifecycle allows (arrive, cancel, hold, release) through the domain transitions."""
from __future__ import annotations

from datetime import date

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from broker.admin.auth import actor, admin_required, sessions
from broker.admin.queries import ALL_STATUSES, WorklistFilter, worklist
from broker.clock import local_now
from broker.domain.lifecycle import IllegalTransition, StepEvent, StepStatus, next_status
from broker.store.models import ScheduledStep
from broker.store.steps import lock_orders, order_of, refresh_order_status, transition_step

bp = Blueprint("worklist", __name__)
PER_PAGE = 50
ACTIONS = {"arrive": StepEvent.ARRIVE, "cancel": StepEvent.CANCEL, "hold": StepEvent.HOLD,
           "release": StepEvent.RELEASE}


def allowed_actions(status: str) -> list[str]:
    """The actions the lifecycle accepts from `status`, in display order."""
    found = []
    for name, event in ACTIONS.items():
        try:
            if next_status(StepStatus(status), event) is not StepStatus(status):
                found.append(name)
        except IllegalTransition:
            pass
    return found


def filter_from(args) -> WorklistFilter:
    """The worklist filter a query string (or form) names; a bad date means today."""
    try:
        day = date.fromisoformat(args.get("date", ""))
    except ValueError:
        day = local_now().date()
    return WorklistFilter(day, args.get("modality", "").strip(), args.get("station", "").strip(),
                          args.get("status", "").strip(), args.get("q", "").strip()[:64])


@bp.route("/worklist", methods=["GET", "POST"])
def page():
    """The day's steps; a POSTed search keeps patient names and IDs out of URLs and logs."""
    wanted = filter_from(request.form if request.method == "POST" else request.args)
    number = max(request.args.get("page", 1, type=int), 1)
    with sessions()() as session:
        rows, total = worklist(session, wanted, PER_PAGE, (number - 1) * PER_PAGE)
    return render_template("worklist.html", rows=rows, total=total, wanted=wanted, page=number,
                           pages=max((total + PER_PAGE - 1) // PER_PAGE, 1),
                           statuses=ALL_STATUSES, allowed=allowed_actions)


def apply_step_action(step_pk: int, action: str, who: str) -> str:
    """Apply one admin action to a step and derive its order's status; the new step status."""
    event = ACTIONS.get(action)
    if event is None:
        abort(404)
    with sessions().begin() as session:
        step = session.get(ScheduledStep, step_pk)
        if step is None:
            abort(404)
        lock_orders(session, [order_of(step).id])
        transition_step(session, step, event, who, via="web")
        refresh_order_status(session, order_of(step), who)
        return step.status


@bp.post("/steps/<int:step_pk>/<action>")
@admin_required
def step_action(step_pk: int, action: str):
    """Mark arrived, cancel, hold or release one step."""
    try:
        status = apply_step_action(step_pk, action, actor())
        flash(f"Step {step_pk}: {status}.")
    except IllegalTransition as exc:
        flash(f"Step {step_pk}: {exc.reason}", "error")
    return redirect(_back(request.form.get("back", "")))


def _back(target: str) -> str:
    # Only a path of this site: the form's return address must not become an open redirect.
    return target if target.startswith("/") and not target.startswith("//") \
        else url_for("worklist.page")
