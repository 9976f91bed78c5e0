"""The SQLite connection settings that durability and intake speed rely on."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from broker.store.db import PAGE_SIZE, WAL_AUTOCHECKPOINT_BYTES, make_engine


@pytest.mark.parametrize("pragma,expected", [
    ("journal_mode", "wal"),
    ("synchronous", 2),                 # FULL: a commit is on disk before its ACK leaves
    ("foreign_keys", 1),
    ("page_size", PAGE_SIZE),           # a new file: fewer WAL bytes per commit
    ("wal_autocheckpoint", WAL_AUTOCHECKPOINT_BYTES // PAGE_SIZE),
    ("journal_size_limit", 64 * 1024 * 1024),
])
def test_every_sqlite_connection_gets_the_pragma(tmp_path, pragma, expected):
    engine = make_engine(f"sqlite:///{tmp_path / 'broker.db'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text(f"PRAGMA {pragma}")).scalar() == expected
    finally:
        engine.dispose()


def test_an_existing_file_keeps_its_page_size_and_the_checkpoint_stays_40_mb(tmp_path):
    import sqlite3
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute("PRAGMA page_size=4096")
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE t (x)")
    old.close()
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA page_size")).scalar() == 4096
            assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == \
                WAL_AUTOCHECKPOINT_BYTES // 4096
    finally:
        engine.dispose()
