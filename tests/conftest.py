"""Shared fixtures: a store on SQLite and PostgreSQL, a running broker on ephemeral ports."""
from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from broker.config import Settings, load_settings
from broker.service import Broker
from broker.store.db import make_engine, make_session_factory
from broker.store.migrate import upgrade
from tests.support.postgres import PostgresServer

_db_counter = itertools.count(1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole run, started on demand."""
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'broker.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"broker_test_{next(_db_counter)}")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated store."""
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def make_test_settings(tmp_path: Path, database_url: str | None = None, **sections) -> Settings:
    """Settings for a broker on ephemeral ports with its data under tmp_path."""
    base = load_settings(path=None, environ={
        "BROKER_DATA_DIR": str(tmp_path / "data"),
        "BROKER_HL7_PORT": "0", "BROKER_DICOM_PORT": "0", "BROKER_WEB_PORT": "0",
        "BROKER_DATABASE_URL": database_url or "",
    }, default_file=None)
    return replace(base, **sections)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A running broker on SQLite with every listener on a free port."""
    running = Broker(make_test_settings(tmp_path))
    running.start()
    yield running
    running.stop()
