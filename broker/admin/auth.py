"""Sign-in and who is asking: sessions for pages, bearer tokens for the API, roles, the
security headers every answer carries, and a per-address limit on failed sign-ins."""
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
    Blueprint, Flask, abort, current_app, flash, g, jsonify, redirect, render_template, request,
    session, url_for,
)
from flask_wtf.csrf import CSRFError
from sqlalchemy import select

from broker.admin import CSP
from broker.admin.accounts import authenticate, token_holder
from broker.clock import utcnow
from broker.store.audit import record_event
from broker.store.models import User

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


def _from_session() -> Principal | None:
    name = session.get("user")
    if not name:
        return None
    with sessions()() as db:
        user = db.scalar(select(User).where(User.username == name))
        # A disabled or removed account loses its open sessions at once.
        if user is None or user.disabled:
            return None
        return Principal(user.username, user.role, "session")


def _from_token() -> Principal | None:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    with sessions().begin() as db:
        token = token_holder(db, header[7:].strip())
        if token is None:
            return None
        token.last_used_at = utcnow()
        return Principal(token.name, token.role, "token")


def require_login() -> Any:
    """Every endpoint but the public ones needs a session, or a bearer token for the API."""
    if request.endpoint in PUBLIC or request.endpoint is None:
        return None
    if request.blueprint in current_app.extensions["broker.public_blueprints"]:
        return None
    machine = request.path.startswith("/api/") or request.path == "/metrics"
    principal = (_from_token() if machine else None) or _from_session()
    if principal is None:
        if machine:
            return jsonify(error="authentication required"), 401
        return redirect(url_for("auth.login", next=request.path))
    g.principal = principal
    if machine and principal.via == "session" and request.method not in ("GET", "HEAD"):
        current_app.extensions["broker.csrf"].protect()
    return None


def _headers(response: Any) -> Any:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"  # pages hold patient data
    return response


def _error(status: int, message: str) -> Any:
    if request.path.startswith("/api/"):
        return jsonify(error=message), status
    return render_template("error.html", status=status, message=message), status


def install(app: Flask) -> None:
    """Wire sign-in checks, headers and error pages into the app."""
    app.extensions["broker.login_limiter"] = FailureLimiter()
    app.before_request(require_login)
    app.after_request(_headers)
    app.register_error_handler(CSRFError, lambda e: _error(400, f"refused: {e.description}"))
    app.register_error_handler(403, lambda e: _error(403, "this action needs the admin role"))
    app.register_error_handler(404, lambda e: _error(404, "not found"))
    app.context_processor(lambda: {"principal": g.get("principal")})
