"""Engines and sessions for SQLite (embedded default) and PostgreSQL."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


PAGE_SIZE = 1024
WAL_AUTOCHECKPOINT_BYTES = 40 * 1024 * 1024


def make_engine(url: str, echo: bool = False) -> Engine:
    """An engine for `url`; SQLite gets WAL, durable commits and foreign keys."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # Every commit writes each page it dirtied to the WAL in full, and its fsync time grows
    # with those bytes: an HL7 order dirties ~25 pages (one leaf per table and index), i.e.
    # 94 KB at 4 KiB pages but 31 KB at 1 KiB; that made a stored message ~25% cheaper
    # (bench/hl7_ingest.py). Only takes effect when the file is created (before WAL mode);
    # an existing database keeps its page size.
    cursor.execute(f"PRAGMA page_size={PAGE_SIZE}")
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before we acknowledge the message that caused it.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # An HL7 order commit writes ~28 pages to the WAL, so the default auto-checkpoint (1,000
    # pages) ran a checkpoint -- copying pages back and fsyncing the database file -- inside
    # every ~36th commit, on the writer thread, with the sender waiting for its ACK. 40 MB of
    # WAL (in pages of this file's size, which an older file may have larger) makes that rarer and each run cheaper per message (the
    # same hot pages are copied once). Durability is unchanged: every commit still fsyncs the
    # WAL. Growth stays bounded: the checkpoint still runs at 40 MB of WAL, jobs.checkpoint_wal
    # truncates every 10 minutes, and journal_size_limit trims the file after a checkpoint.
    page_size = cursor.execute("PRAGMA page_size").fetchone()[0]
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_BYTES // page_size}")
    cursor.execute(f"PRAGMA journal_size_limit={64 * 1024 * 1024}")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
