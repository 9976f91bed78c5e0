"""The admin web UI and JSON API (Flask); templates and static files live in web/."""
from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from flask import Blueprint, Flask
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import Session, sessionmaker

from broker.resources import web_dir

# Pages may load only what the broker serves itself: no inline script, no CDN.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def create_app(session_factory: sessionmaker[Session], config: dict[str, Any] | None = None) -> Flask:
    """The Flask app; the store's session factory and settings enter here and nowhere else."""
    from broker.config import Settings
    web = web_dir()
    app = Flask(__name__, template_folder=str(web / "templates"),
                static_folder=str(web / "static"))
    app.config.update(SECRET_KEY=secrets.token_hex(32), SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax", WTF_CSRF_TIME_LIMIT=None,
                      BROKER_SETTINGS=Settings(), BROKER_LISTENERS=[])
    app.config.update(config or {})
    web_settings = app.config["BROKER_SETTINGS"].web
    app.config.setdefault("PERMANENT_SESSION_LIFETIME", timedelta(hours=web_settings.session_hours))
    app.extensions["broker.sessions"] = session_factory
    csrf = CSRFProtect(app)
    from broker.admin import (
        api, api_actions, audit, auth, bench, dashboard, guard, matches, messages, metrics,
        orders, outbox, patients, status, users, worklist,
    )
    for module in (status, auth, dashboard, worklist, orders, matches, patients, messages,
                   outbox, audit, users, bench, metrics, api, api_actions):
        app.register_blueprint(module.bp)
    # The API is called with bearer tokens, which a browser never sends on its own; a call
    # that rides on the session cookie is checked for its CSRF token in guard.require_login.
    csrf.exempt(api.bp)
    csrf.exempt(api_actions.bp)
    csrf.exempt(metrics.bp)
    app.extensions["broker.csrf"] = csrf
    app.extensions["broker.public_blueprints"] = set()
    guard.install(app)
    return app


def register_public_blueprint(app: Flask, blueprint: Blueprint) -> None:
    """Add a blueprint that machines call with their own credentials (the FHIR notification
    endpoint checks its shared secret): no sign-in and no CSRF token asked of it."""
    app.register_blueprint(blueprint)
    app.extensions["broker.csrf"].exempt(blueprint)
    app.extensions["broker.public_blueprints"].add(blueprint.name)
