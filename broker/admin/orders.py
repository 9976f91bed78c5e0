"""The order page: patient, procedures, steps and the timeline of everything that happened."""
from __future__ import annotations

from flask import Blueprint, abort, render_template

from broker.admin.auth import sessions
from broker.admin.queries import order_detail
from broker.admin.worklist import allowed_actions

bp = Blueprint("orders", __name__)


@bp.get("/orders/<int:order_id>")
def page(order_id: int):
    """One order, read in one transaction so its parts agree."""
    with sessions()() as session:
        order = order_detail(session, order_id)
    if order is None:
        abort(404)
    return render_template("order.html", order=order, allowed=allowed_actions)
