"""Migration 0009: the B-trees an HL7 order no longer writes, and the queries that still search."""
from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime

import pytest
from alembic import command
from sqlalchemy import event, func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from broker.config import MatchingSettings, WorklistSettings
from broker.dicom.worklist import QueryContext, build_query
from broker.domain.lifecycle import StepStatus
from broker.hl7.commands import list_messages
from broker.store.db import make_engine, make_session_factory
from broker.store.housekeeping import cancel_stale_steps, purge_finished
from broker.store.migrate import alembic_config, current_revision, upgrade
from broker.store.models import (
    Base, InboundMessage, Order, Patient, ScheduledStep, StepStationAE,
)
from broker.store.order_updates import arrive_patient
from broker.store.patients import configure_matching
from broker.store.steps import list_steps
from tests.dicom.test_mwl_matching import _bench_module, identifier
from tests.support.schedule import schedule

NOW = datetime(2026, 11, 30, 12, 0)

DROPPED = {
    "inbound_message": {"ix_inbound_message_received_at", "ix_inbound_message_status"},
    "scheduled_step": {"ix_scheduled_step_start_at"},
    "imaging_order": {"ix_imaging_order_status"},
    "patient_block_key": {"ix_patient_block_key_key"},
    "patient": {"ix_patient_name_key"},
}
PARTIAL = {"inbound_message": "ix_inbound_message_unprocessed",
           "imaging_order": "ix_imaging_order_finished"}
STATUSES = ["PROCESSED", "PROCESSED", "FAILED", "REJECTED", "PROCESSED", "RECEIVED"]


@pytest.fixture
def sqlite_engine(tmp_path):
    """A migrated SQLite store (query plans and B-tree contents are SQLite's)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'broker.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def _indexes(engine, table: str) -> dict[str, dict]:
    return {ix["name"]: ix for ix in inspect(engine).get_indexes(table)}


def _where(index: dict) -> str:
    options = index.get("dialect_options", {})
    return str(options.get("sqlite_where", options.get("postgresql_where", "")))


def _with_rowid(engine) -> bool:
    sql = text("SELECT sql FROM sqlite_master WHERE name = 'step_station_ae'")
    with engine.connect() as conn:
        return "WITHOUT ROWID" not in conn.scalar(sql)


def _rows(engine) -> dict[str, list]:
    with engine.connect() as conn:
        station = (StepStationAE.step_id, StepStationAE.ae_title)
        return {
            "stations": conn.execute(select(*station).order_by(*station)).all(),
            "messages": conn.execute(select(InboundMessage.control_id, InboundMessage.status)
                                     .order_by(InboundMessage.id)).all(),
            "orders": conn.execute(select(Order.id, Order.status).order_by(Order.id)).all(),
        }


def _message(n: int, status: str) -> dict:
    return dict(channel="hl7", sender="RIS|HOSP", control_id=f"C{n}", message_type="ORM^O01",
                peer="", raw=b"MSH|", received_at=datetime(2026, 11, 24), status=status,
                error="", attempts=1)


def test_0009_keeps_the_rows_and_downgrades_cleanly(database_url):
    engine = make_engine(database_url)
    try:
        upgrade(engine, "0008")
        sessions = make_session_factory(engine)
        # Today's code writing into a 0008 schema: no patient_search (0011) for new patients.
        configure_matching(sessions, MatchingSettings(enabled=False))
        first, second = schedule(sessions, 1, modalities=("CT", "MR")), schedule(sessions, 2)
        with engine.begin() as conn:
            conn.execute(insert(StepStationAE), [{"step_id": first["steps"][0], "ae_title": "CT2"}])
            conn.execute(insert(InboundMessage), [_message(n, s) for n, s in enumerate(STATUSES)])
            conn.execute(Order.__table__.update().where(Order.id == second["order"])
                         .values(status="COMPLETED"))
        before = _rows(engine)
        assert len(before["stations"]) == 4

        upgrade(engine)
        assert _rows(engine) == before
        for table, names in DROPPED.items():
            assert not names & set(_indexes(engine, table)), table
        for table, name in PARTIAL.items():
            assert _where(_indexes(engine, table)[name]), name
        assert "ix_step_station_ae_title_step" in _indexes(engine, "step_station_ae")
        if engine.dialect.name == "sqlite":
            assert not _with_rowid(engine)

        command.downgrade(alembic_config(engine), "0008")
        assert _rows(engine) == before
        for table, names in DROPPED.items():
            assert names <= set(_indexes(engine, table)), table
        for table, name in PARTIAL.items():
            assert name not in _indexes(engine, table)
        if engine.dialect.name == "sqlite":
            assert _with_rowid(engine)
        upgrade(engine, "0009")
        assert current_revision(engine) == "0009"
    finally:
        engine.dispose()


def test_migrated_indexes_and_table_options_are_those_the_models_create(engine, request, tmp_path):
    # alembic's schema comparison ignores a partial index's WHERE and WITHOUT ROWID: compare
    # them with a schema built from the models.
    if engine.dialect.name == "sqlite":
        url = f"sqlite:///{tmp_path / 'models.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database("broker_models_0009")
    built = make_engine(url)
    try:
        Base.metadata.create_all(built)
        for table in Base.metadata.tables:
            migrated, expected = _indexes(engine, table), _indexes(built, table)
            assert {n: (ix["column_names"], _where(ix)) for n, ix in migrated.items()} == {
                n: (ix["column_names"], _where(ix)) for n, ix in expected.items()}, table
            assert (inspect(engine).get_table_options(table)
                    == inspect(built).get_table_options(table)), table
    finally:
        built.dispose()


def test_station_rows_still_need_their_step(engine):
    # The rebuilt table keeps its foreign key: no row for a missing step, and a step with
    # stations cannot be deleted before them (housekeeping deletes the stations first).
    sessions = make_session_factory(engine)
    order = schedule(sessions, 3)
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(insert(StepStationAE), [{"step_id": 999999, "ae_title": "CT1"}])
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(ScheduledStep.__table__.delete().where(
                ScheduledStep.id == order["steps"][0]))
    with pytest.raises(IntegrityError):  # still the primary key
        with engine.begin() as conn:
            conn.execute(insert(StepStationAE), [{"step_id": order["steps"][0], "ae_title": "CT1"}])
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(StepStationAE)) == 1


def _entries(engine, index: str) -> int:
    """Entries in a SQLite index B-tree, read from its pages (dbstat)."""
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT coalesce(sum(ncell), 0) FROM dbstat WHERE name = ? "
                                    "AND pagetype = 'leaf'", (index,)).scalar()


def test_a_new_order_writes_no_entry_in_the_partial_indexes(sqlite_engine):
    # What the diet is for: a processed message and a SCHEDULED order are not in them.
    engine = sqlite_engine
    order = schedule(make_session_factory(engine), 4)
    with engine.begin() as conn:
        conn.execute(insert(InboundMessage), [_message(n, s) for n, s in enumerate(STATUSES)])
    assert _entries(engine, "ix_inbound_message_unprocessed") == 3  # FAILED, REJECTED, RECEIVED
    assert _entries(engine, "ix_imaging_order_finished") == 0
    with engine.begin() as conn:
        conn.execute(Order.__table__.update().where(Order.id == order["order"])
                     .values(status="CANCELED"))
    assert _entries(engine, "ix_imaging_order_finished") == 1


# ---- query plans (SQLite): each query that lost its index still searches one ------------------

def _plans(engine, run) -> list[list[str]]:
    """EXPLAIN QUERY PLAN of each SELECT `run(session)` executes, with its own parameters."""
    statements = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))
    event.listen(engine, "before_cursor_execute", keep)
    try:
        with make_session_factory(engine)() as session:
            run(session)
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    with engine.connect() as conn:
        return [[row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)]
                for sql, params in statements]


@pytest.mark.parametrize("status", ["FAILED", "rejected", "RECEIVED"])
def test_listing_messages_that_need_an_admin_searches_the_partial_index(sqlite_engine, status):
    [plan] = _plans(sqlite_engine, lambda session: list_messages(session, status=status))
    # In id order within one status: no sort either.
    assert plan == ["SEARCH inbound_message USING INDEX ix_inbound_message_unprocessed (status=?)"]


def test_the_purge_searches_finished_orders_by_age(sqlite_engine):
    plans = _plans(sqlite_engine, lambda session: purge_finished(session, NOW, 30))
    assert plans[0] == ["SEARCH imaging_order USING INDEX ix_imaging_order_finished (updated_at<?)"]


@pytest.mark.parametrize("statuses", [(), ("scheduled",), ("scheduled", "arrived")])
def test_listing_steps_searches_each_status_in_start_order(sqlite_engine, statuses):
    [plan] = _plans(sqlite_engine, lambda session: list_steps(session, statuses))
    searches = [s for s in plan if "ix_scheduled_step_status_start" in s]
    assert len(searches) == (len(statuses) or len(StepStatus))
    # The only scans read the `limit` rows found per status.
    assert all(s.startswith("SCAN anon_") for s in plan if s.startswith("SCAN")), plan


def test_cancel_and_arrival_search_status_then_start(sqlite_engine):
    order = schedule(make_session_factory(sqlite_engine), 5)
    plans = _plans(sqlite_engine, lambda session: cancel_stale_steps(session, NOW, 7))
    plans += _plans(sqlite_engine, lambda session: arrive_patient(
        session, session.get(Patient, order["patient"]), NOW.date()))
    steps = [s for plan in plans for s in plan if "scheduled_step" in s and "SCAN" in s]
    assert steps == []


@pytest.fixture(scope="module", params=["ANALYZE", "no statistics"])
def worklist_store(request, tmp_path_factory):
    """5,000 steps over 25 days as the worklist bench loads them, with and without ANALYZE
    (the broker never runs it)."""
    bench = _bench_module()
    url = f"sqlite:///{tmp_path_factory.mktemp('diet') / 'broker.db'}"
    bench.load_store(url, bench.make_items(5_000, date(2026, 11, 24)))
    engine = make_engine(url)
    if request.param == "no statistics":
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE sqlite_stat1"))
        engine.dispose()
    yield engine
    engine.dispose()


WINDOW = replace(WorklistSettings(), days_behind=0, days_ahead=1)
# Shapes that searched ix_scheduled_step_start_at before 0009: a start range without a modality.
START_RANGES = [
    ("today", {"sps.ScheduledProcedureStepStartDate": "20261124"}, WorklistSettings()),
    ("today + station", {"sps.ScheduledProcedureStepStartDate": "20261124",
                         "sps.ScheduledStationAETitle": "CT2"}, WorklistSettings()),
    ("from a date on", {"sps.ScheduledProcedureStepStartDate": "20261124-"}, WorklistSettings()),
    ("until a date", {"sps.ScheduledProcedureStepStartDate": "-20261124"}, WorklistSettings()),
    ("date-time range", {"sps.ScheduledProcedureStepStartDateTime":
                         "20261124080000-20261124120000"}, WorklistSettings()),
    ("configured window", {}, WINDOW),
    ("window + station", {"sps.ScheduledStationAETitle": "CT1"}, WINDOW),
]


@pytest.mark.parametrize("keys,settings", [c[1:] for c in START_RANGES],
                         ids=[c[0] for c in START_RANGES])
def test_start_ranges_search_status_then_start(worklist_store, keys, settings):
    stmt = build_query(identifier(keys), QueryContext(settings, today=date(2026, 11, 24)))
    sql = str(stmt.compile(worklist_store, compile_kwargs={"literal_binds": True}))
    with worklist_store.connect() as conn:
        plan = [row[-1] for row in conn.execute(text("EXPLAIN QUERY PLAN " + sql))]
    assert not [step for step in plan if step.startswith("SCAN")], plan
    assert any(step.startswith("SEARCH scheduled_step USING INDEX ix_scheduled_step_status_start "
                               "(status=? AND start_at") for step in plan), plan
