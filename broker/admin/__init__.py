"""The admin web UI and JSON API (Flask); templates and static files live in web/."""
from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from broker.resources import web_dir


def create_app(session_factory: sessionmaker[Session], config: dict[str, Any] | None = None) -> Flask:
    """The Flask app; the store's session factory and settings enter here and nowhere else."""
    web = web_dir()
    app = Flask(__name__, template_folder=str(web / "templates"),
                static_folder=str(web / "static"))
    app.config.update(config or {})
    app.extensions["broker.sessions"] = session_factory
    from broker.admin import status
    app.register_blueprint(status.bp)
    from broker.notify import http as notify_http
    app.register_blueprint(notify_http.bp)
    return app
