"""The store as the broker's processes open it: engine, migrated schema, configured sessions."""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from broker.config import Settings
from broker.store.patients import configure_matching
from broker.store.db import make_engine, make_session_factory
from broker.store.migrate import upgrade

T = TypeVar("T")


@dataclass(frozen=True)
class Store:
    engine: Engine
    sessions: sessionmaker[Session]


def connect_store(settings: Settings) -> Store:
    """An engine for the configured database and sessions carrying the site's settings."""
    engine = make_engine(settings.database_url, settings.database.echo)
    sessions = make_session_factory(engine)
    # Every session must reconcile patients with the site's [matching] rules, whoever opens it.
    configure_matching(sessions, settings.matching)
    return Store(engine, sessions)


@contextmanager
def open_store(settings: Settings) -> Iterator[Store]:
    """For one command: connect, migrate, and dispose of the engine on the way out."""
    store = connect_store(settings)
    try:
        # Migration progress lines would bury the command's own output.
        logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
        upgrade(store.engine)
        yield store
    finally:
        store.engine.dispose()


def change_store(settings: Settings, change: Callable[[Session], T]) -> T | None:
    """For one command that changes the store: `change` in one transaction. A refusal
    (LookupError, ValueError) is printed as `broker: <reason>` on stderr, nothing is kept,
    and the result is None."""
    with open_store(settings) as store:
        try:
            with store.sessions.begin() as session:
                return change(session)
        except (LookupError, ValueError) as exc:
            print(f"broker: {exc}", file=sys.stderr)
            return None
