"""commit_held: a session held across many transactions, as the HL7 writer holds one."""
from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import insert, select, text, update

from broker.store.fastsql import FastStatement, commit_held
from broker.store.models import Patient


def _names(sessions) -> list[str]:
    """Patient names as a new session sees them: only committed rows."""
    with sessions() as session:
        return sorted(session.scalars(select(Patient.name)))


def test_each_commit_publishes_the_work_and_the_session_goes_on(engine, sessions):
    with engine.connect() as connection:
        held = sessions(bind=connection)
        held.add(Patient(name="FIRST^ONE"))  # pending ORM work: flushed by the commit
        commit_held(held)
        assert _names(sessions) == ["FIRST^ONE"]
        held.add(Patient(name="SECOND^TWO"))
        commit_held(held)
        assert _names(sessions) == ["FIRST^ONE", "SECOND^TWO"]
        held.add(Patient(name="NEVER^COMMITTED"))
        held.flush()
    # Closing the connection (what the writer does after a failure) drops the uncommitted work.
    assert _names(sessions) == ["FIRST^ONE", "SECOND^TWO"]


def test_the_next_transaction_reads_rows_changed_by_others(engine, sessions):
    with sessions.begin() as session:
        session.add(Patient(name="OLD^NAME"))
    with engine.connect() as connection:
        held = sessions(bind=connection)
        loaded = held.scalars(select(Patient)).one()  # still referenced: kept in the identity map
        assert loaded.name == "OLD^NAME"
        commit_held(held)
        with sessions.begin() as other:  # e.g. the web UI correcting the name meanwhile
            other.execute(update(Patient).values(name="NEW^NAME"))
        # Without emptying its identity map the held session would answer the old object.
        assert held.scalars(select(Patient)).one().name == "NEW^NAME"
        assert held.get(Patient, loaded.id).name == "NEW^NAME"
        held.close()


def test_fast_conversions_store_what_sqlalchemy_stores(engine, sessions):
    """The cheaper DateTime and JSON conversions (SQLite's isoformat, fixed text for empty
    JSON, the last datetime's text kept) write the bytes SQLAlchemy itself writes."""
    blank = dict.fromkeys(("family_name", "given_name", "middle_name", "name_prefix",
                           "name_suffix", "name_key", "birth_date", "sex", "address", "phone"), "")
    fast = FastStatement(insert(Patient).returning(Patient.id),
                         ["name", "extra", "created_at", "updated_at", *blank])
    core = insert(Patient).returning(Patient.id)
    stamp, later = datetime(2026, 11, 23, 8, 15, 0, 120), datetime(2026, 11, 23, 8, 15, 1)
    rows = [  # the same object twice in a row, then another, then the first again
        dict(name="A", extra={}, created_at=stamp, updated_at=stamp),
        dict(name="B", extra={"mpps": [1]}, created_at=later, updated_at=stamp),
        dict(name="C", extra={}, created_at=datetime(2026, 1, 2), updated_at=later),
    ]
    with sessions.begin() as session:
        fast_ids = [fast.scalar(session, {**blank, **row, "name": "fast " + row["name"]})
                    for row in rows]
        core_ids = [session.execute(core, {**blank, **row, "name": "core " + row["name"]})
                    .scalar_one() for row in rows]
    with engine.connect() as connection:
        stored = {row[0]: row[1:] for row in connection.execute(
            text("SELECT id, extra, created_at, updated_at FROM patient"))}
    assert [stored[i] for i in fast_ids] == [stored[i] for i in core_ids]
    extra = stored[fast_ids[1]][0]
    assert (json.loads(extra) if isinstance(extra, str) else extra) == {"mpps": [1]}
