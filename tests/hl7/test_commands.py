"""`broker messages list|reprocess`: the functions and the CLI over a real SQLite store."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import insert

from broker.cli import main
from broker.config import load_settings
from broker.store.messages import list_messages
from broker.hl7.handlers import build_intake
from broker.store.db import make_engine, make_session_factory
from broker.store.migrate import upgrade
from broker.store.models import InboundMessage
from tests.support.hl7messages import orm


def test_list_and_reprocess(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("BROKER_DATA_DIR", str(tmp_path / "data"))
    settings = load_settings(path=None, default_file=None)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    intake = build_intake(settings, sessions)
    failed = intake.receive(orm("C1", "XO"), "peer")        # unknown order: FAILED
    intake.receive(orm("C2", "NW"), "peer")                  # now it exists
    with sessions() as session:
        rows = list_messages(session)
        assert [(r.control_id, r.status) for r in rows] == [("C2", "PROCESSED"), ("C1", "FAILED")]
        assert [r.control_id for r in list_messages(session, status="failed")] == ["C1"]
        assert list_messages(session, sender="OTHER|X") == []
    engine.dispose()

    assert main(["messages", "list", "--status", "FAILED"]) == 0
    out = capsys.readouterr().out
    assert "C1" in out and "C2" not in out and "not known" in out
    assert main(["messages", "reprocess", str(failed.message_id)]) == 0
    assert f"message #{failed.message_id}: PROCESSED" in capsys.readouterr().out
    assert main(["messages", "reprocess", str(failed.message_id)]) == 1  # already processed
    assert "already processed" in capsys.readouterr().out
    assert main(["messages", "reprocess", "999"]) == 1


STORED = ["PROCESSED", "FAILED", "PROCESSED", "REJECTED", "RECEIVED", "FAILED", "PROCESSED"]


@pytest.mark.parametrize("status", ["PROCESSED", "FAILED", "rejected", "RECEIVED", None])
def test_list_messages_by_status_newest_first(sessions, status):
    # Statuses other than PROCESSED are read from a partial index (migration 0009): same rows.
    with sessions.begin() as session:
        session.execute(insert(InboundMessage), [dict(
            channel="hl7", sender="RIS|HOSP", control_id=f"C{n}", message_type="ORM^O01", peer="",
            raw=b"MSH|", received_at=datetime(2026, 11, 24), status=s, error="", attempts=1)
            for n, s in enumerate(STORED)])
    expected = [f"C{n}" for n, s in reversed(list(enumerate(STORED)))
                if status is None or s == status.upper()]
    with sessions() as session:
        assert [r.control_id for r in list_messages(session, status=status)] == expected
        newest = list_messages(session, status=status, limit=1)
        assert [r.control_id for r in newest] == expected[:1]
