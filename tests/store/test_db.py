"""The SQLite connection settings that durability and intake speed rely on."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from broker.store.db import WAL_AUTOCHECKPOINT_PAGES, make_engine


@pytest.mark.parametrize("pragma,expected", [
    ("journal_mode", "wal"),
    ("synchronous", 2),                 # FULL: a commit is on disk before its ACK leaves
    ("foreign_keys", 1),
    ("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES),
    ("journal_size_limit", 64 * 1024 * 1024),
])
def test_every_sqlite_connection_gets_the_pragma(tmp_path, pragma, expected):
    engine = make_engine(f"sqlite:///{tmp_path / 'broker.db'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text(f"PRAGMA {pragma}")).scalar() == expected
    finally:
        engine.dispose()
