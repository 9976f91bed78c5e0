"""The demo's web side: an admin account whose password is printed once."""
from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broker.admin.accounts import add_user
from broker.store.models import User

DEMO_ADMIN = "admin"


def ensure_demo_admin(sessions: sessionmaker[Session]) -> str | None:
    """Create the demo admin with a random password and return it; None when it exists."""
    with sessions.begin() as session:
        if session.scalar(select(User.id).where(User.username == DEMO_ADMIN)) is not None:
            return None
        password = secrets.token_urlsafe(12)
        add_user(session, DEMO_ADMIN, password, "admin", actor="demo")
    return password
