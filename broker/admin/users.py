"""The users page (admin only): accounts, adding one, disabling one."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from broker.admin.accounts import ROLES, AccountError, add_user, disable_user, list_users
from broker.admin.auth import actor, admin_required, sessions

bp = Blueprint("users", __name__)


@bp.get("/users")
@admin_required
def listing():
    """Every account with its role and state."""
    with sessions()() as session:
        users = [dict(username=u.username, role=u.role, disabled=u.disabled,
                      locked_until=u.locked_until, last_login_at=u.last_login_at)
                 for u in list_users(session)]
    return render_template("users.html", users=users, roles=ROLES)


@bp.post("/users")
@admin_required
def add():
    """Create an account from the form."""
    form = request.form
    try:
        with sessions().begin() as session:
            add_user(session, form.get("username", "").strip(), form.get("password", ""),
                     form.get("role", "viewer"), actor())
        flash(f"User {form.get('username')} added.")
    except AccountError as exc:
        flash(str(exc), "error")
    return redirect(url_for("users.listing"))


@bp.post("/users/<username>/disable")
@admin_required
def disable(username: str):
    """Disable an account; its open sessions end with the next request."""
    try:
        with sessions().begin() as session:
            disable_user(session, username, actor())
        flash(f"User {username} disabled.")
    except AccountError as exc:
        flash(str(exc), "error")
    return redirect(url_for("users.listing"))
