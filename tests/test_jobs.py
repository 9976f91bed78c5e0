"""Which lifecycle jobs the scheduler gets, and one housekeeping run."""
from dataclasses import replace
from datetime import timedelta

from broker.clock import local_now
from broker.config import MppsSettings, WorklistSettings
from broker.jobs import build_scheduler, run_housekeeping
from broker.store.db import make_session_factory
from broker.store.models import ScheduledStep
from tests.conftest import make_test_settings
from tests.support.schedule import schedule


def _job_ids(settings, engine):
    return {job.id for job in build_scheduler(settings, engine, make_session_factory(engine)).get_jobs()}


def test_jobs_are_opt_in(tmp_path, engine):
    plain = make_test_settings(tmp_path)
    assert not {"mpps-forward", "worklist-housekeeping"} & _job_ids(plain, engine)
    configured = replace(plain, mpps=MppsSettings(forward_to=("PACS@127.0.0.1:104",)),
                         worklist=WorklistSettings(auto_cancel_after_days=7))
    assert {"mpps-forward", "worklist-housekeeping"} <= _job_ids(configured, engine)


def test_housekeeping_run_cancels_stale_steps(tmp_path, sessions):
    stale = schedule(sessions, 1, start=local_now() - timedelta(days=8))
    fresh = schedule(sessions, 2, start=local_now() - timedelta(days=1))
    settings = replace(make_test_settings(tmp_path),
                       worklist=WorklistSettings(auto_cancel_after_days=7, purge_after_days=30))
    assert run_housekeeping(sessions, settings) == (1, 0)
    with sessions() as session:
        assert session.get(ScheduledStep, stale["steps"][0]).status == "CANCELED"
        assert session.get(ScheduledStep, fresh["steps"][0]).status == "SCHEDULED"
