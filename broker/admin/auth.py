"""Sign-in and sign-out, who a request acts for, the admin role check, and a per-address
limit on failed sign-ins. broker.admin.guard applies them to every request."""
from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import (
    Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for,
)

from broker.admin.accounts import authenticate
from broker.store.audit import record_event

bp = Blueprint("auth", __name__)
PUBLIC = {"auth.login", "status.healthz", "status.readyz", "static"}


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: a signed-in user or an API token."""
    name: str
    role: str
    via: str  # session | token

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def sessions():
    """The store's session factory."""
    return current_app.extensions["broker.sessions"]


def actor() -> str:
    """The name written to the audit log for this request."""
    principal: Principal = g.principal
    return principal.name if principal.via == "session" else f"token:{principal.name}"


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse the view with 403 unless the caller has the admin role."""
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not g.principal.is_admin:
            abort(403)
        return view(*args, **kwargs)
    return wrapper


class FailureLimiter:
    """Failed sign-ins per client address in the last minute (in memory, per process): slows
    guessing across many account names, which the per-account lockout alone would not."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._failures[address]
        while times and times[0] < now - 60:
            times.popleft()
        return times

    def blocked(self, address: str, limit: int) -> bool:
        with self._lock:
            return len(self._recent(address, time.monotonic())) >= limit

    def failed(self, address: str) -> None:
        with self._lock:
            self._recent(address, time.monotonic()).append(time.monotonic())


def _safe_next(target: str | None) -> str:
    # Only a path on this site: an absolute URL in ?next= would make the login an open redirect.
    if not target or urlsplit(target).netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("dashboard.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The sign-in form; a success starts a fresh session."""
    settings = current_app.config["BROKER_SETTINGS"].web
    limiter: FailureLimiter = current_app.extensions["broker.login_limiter"]
    address = request.remote_addr or "?"
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""))
    if limiter.blocked(address, settings.failed_logins_per_minute):
        return render_template("login.html", error="too many failed sign-ins; wait a minute",
                               next=""), 429
    username = request.form.get("username", "").strip()
    with sessions().begin() as db:
        result = authenticate(db, username, request.form.get("password", ""),
                              settings.max_failed_logins,
                              timedelta(minutes=settings.lockout_minutes))
        user = (result.user.username, result.user.role) if result.user else None
    if user is None:
        limiter.failed(address)
        return render_template("login.html", error=result.reason, next=""), 401
    session.clear()
    session.permanent = True
    session["user"] = user[0]
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
def logout():
    """End the session (a POST with the CSRF token, so no other site can sign one out)."""
    with sessions().begin() as db:
        record_event(db, g.principal.name, "logout", "user", "")
    session.clear()
    flash("Signed out.")
    return redirect(url_for("auth.login"))
