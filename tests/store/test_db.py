"""The store's transactions: savepoints, and SQLite's concurrent writers and readers."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, insert, select

from broker.store.db import make_engine, make_session_factory, read_only_sessions
from broker.store.migrate import upgrade
from broker.store.models import AuditEvent


def _count(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent))


def _event(session, action: str) -> None:
    session.execute(insert(AuditEvent).values(actor="t", action=action, entity_type="x",
                                              entity_id="1"))


def test_a_failed_savepoint_keeps_the_rest_of_the_transaction(sessions):
    with sessions.begin() as session:
        _event(session, "kept")
        with pytest.raises(RuntimeError):
            with session.begin_nested():
                _event(session, "undone")
                raise RuntimeError("apply failed")
        _event(session, "kept too")
    with sessions() as session:
        assert sorted(session.scalars(select(AuditEvent.action))) == ["kept", "kept too"]


def test_a_rolled_back_transaction_takes_its_released_savepoints_with_it(sessions):
    with pytest.raises(RuntimeError):
        with sessions.begin() as session:
            with session.begin_nested():
                _event(session, "applied")
            raise RuntimeError("the outcome could not be written")
    assert _count(sessions) == 0


def test_read_then_write_transactions_wait_for_each_other_instead_of_failing(tmp_path):
    """Two writers that each read before writing: the second waits for the first's commit
    (SQLite would otherwise answer SQLITE_BUSY at once to a read transaction's upgrade)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'broker.db'}")
    upgrade(engine)
    sessions = make_session_factory(engine)
    errors, inside = [], threading.Event()

    def writer(action: str, hold: bool) -> None:
        try:
            with sessions.begin() as session:
                session.scalar(select(func.count()).select_from(AuditEvent))
                if hold:
                    inside.set()
                    threading.Event().wait(0.5)
                _event(session, action)
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    first = threading.Thread(target=writer, args=("first", True))
    first.start()
    inside.wait(10)
    writer("second", False)
    first.join(10)
    assert errors == [] and _count(sessions) == 2
    engine.dispose()


def test_readers_are_not_blocked_by_a_writer(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'broker.db'}")
    upgrade(engine)
    sessions, readers = make_session_factory(engine), read_only_sessions(engine)
    with sessions.begin() as session:
        _event(session, "written")   # the write lock is held until this block ends
        with readers() as reader:
            assert reader.scalar(select(func.count()).select_from(AuditEvent)) == 0
    engine.dispose()

