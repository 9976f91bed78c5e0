"""commit_held: a session held across many transactions, as the HL7 writer holds one."""
from __future__ import annotations

from sqlalchemy import select, update

from broker.store.fastsql import commit_held
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
