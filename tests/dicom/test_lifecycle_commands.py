"""`broker steps` and `broker mpps` commands against a real SQLite store."""
from datetime import datetime

import pytest
from sqlalchemy import select

from broker.cli import main
from broker.store.db import make_engine, make_session_factory
from broker.store.migrate import upgrade
from broker.store.models import PerformedStep, ScheduledStep
from tests.support.schedule import schedule


@pytest.fixture
def store(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    config = tmp_path / "broker.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    engine = make_engine(url)
    upgrade(engine)
    yield make_session_factory(engine), str(config)
    engine.dispose()


def test_steps_list_and_arrive(store, capsys):
    sessions, config = store
    order = schedule(sessions, 1, start=datetime(2026, 11, 24, 9, 30))
    step_id = order["steps"][0]
    assert main(["steps", "list", "--config", config]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[1].split()[:4] == [str(step_id), "SPS1-CT", "SCHEDULED", "CT"]
    assert "ACC1" in listing[1] and "2026-11-24 09:30" in listing[1]
    assert main(["steps", "arrive", str(step_id), "--config", config, "--actor", "desk"]) == 0
    assert capsys.readouterr().out.strip() == f"step {step_id} (SPS1-CT): ARRIVED"
    assert main(["steps", "list", "--status", "SCHEDULED", "--config", config]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1  # header only
    assert main(["steps", "arrive", str(step_id), "--config", config]) == 1
    assert "ARRIVED" in capsys.readouterr().err
    with sessions() as session:
        assert session.get(ScheduledStep, step_id).status == "ARRIVED"


def test_mpps_unscheduled_and_attach(store, capsys):
    sessions, config = store
    order = schedule(sessions, 2)
    with sessions.begin() as session:
        row = PerformedStep(sop_instance_uid="1.2.3.4", status="IN PROGRESS", modality="CT",
                            unscheduled=True)
        session.add(row)
        session.flush()
        performed_id = row.id
    assert main(["mpps", "unscheduled", "--config", config]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:3] == [str(performed_id), "IN", "PROGRESS"]
    assert main(["mpps", "attach", str(performed_id), str(order["steps"][0]),
                 "--config", config]) == 0
    with sessions() as session:
        assert session.get(ScheduledStep, order["steps"][0]).status == "STARTED"
        assert session.scalars(select(PerformedStep)).one().unscheduled is False
    assert main(["mpps", "attach", "999", str(order["steps"][0]), "--config", config]) == 1
