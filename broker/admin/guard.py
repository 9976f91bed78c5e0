"""What every request goes through: a session for pages, a bearer token (or the session) for
the API and /metrics, the CSRF check of API calls made with the session, the security headers
every answer carries, and the error pages."""
from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g, jsonify, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError
from sqlalchemy import select

from broker.admin import CSP
from broker.admin.accounts import token_holder
from broker.admin.auth import PUBLIC, FailureLimiter, Principal, sessions
from broker.clock import utcnow
from broker.store.models import User


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
