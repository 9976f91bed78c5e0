import pytest
from sqlalchemy import inspect

from broker.store.migrate import current_revision, upgrade
from broker.store.models import Base


def test_upgrade_builds_every_table_and_is_repeatable(engine):
    upgrade(engine)  # a second run changes nothing
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert current_revision(engine) is not None


@pytest.mark.parametrize("table,column", [
    ("scheduled_step", "status"), ("scheduled_step", "modality"),
    ("patient", "name_key"), ("imaging_order", "accession_number"),
    ("step_station_ae", "ae_title"), ("requested_procedure", "study_instance_uid"),
])
def test_worklist_search_columns_lead_an_index(engine, table, column):
    # A B-tree is searched by its leading column, so a composite index or a unique constraint
    # starting with the column serves the query as well as an index of its own (0007 relies
    # on that when it drops the single-column duplicates).
    insp = inspect(engine)
    leading = {ix["column_names"][0] for ix in insp.get_indexes(table)}
    leading |= {uq["column_names"][0] for uq in insp.get_unique_constraints(table)}
    assert column in leading


def test_step_start_is_searched_after_the_status_or_the_modality(engine):
    # Every query on start_at names the status or the modality too (migration 0009).
    indexes = {tuple(ix["column_names"]) for ix in inspect(engine).get_indexes("scheduled_step")}
    assert {("status", "start_at"), ("modality", "start_at")} <= indexes


def test_prefix_duplicate_indexes_are_gone(engine):
    # Each of these only cost a page write per HL7 order (migration 0007).
    insp = inspect(engine)
    names = {ix["name"] for table in ("imaging_order", "scheduled_step", "step_station_ae")
             for ix in insp.get_indexes(table)}
    assert not names & {"ix_imaging_order_accession_number", "ix_scheduled_step_modality",
                        "ix_step_station_ae_ae_title"}
    assert {"ix_scheduled_step_modality_start", "ix_step_station_ae_title_step",
            "ix_scheduled_step_status_start"} <= names


def test_schema_matches_models(engine):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_0008_adds_a_nullable_step_end_and_downgrades_cleanly(database_url):
    from alembic import command

    from broker.store.db import make_engine
    from broker.store.migrate import alembic_config
    engine = make_engine(database_url)
    try:
        columns = lambda: {c["name"]: c for c in inspect(engine).get_columns("scheduled_step")}  # noqa: E731
        upgrade(engine, "0007")
        assert "end_at" not in columns()
        upgrade(engine)
        assert columns()["end_at"]["nullable"]
        command.downgrade(alembic_config(engine), "0007")
        assert "end_at" not in columns()
        assert {"ix_scheduled_step_modality_start", "ix_scheduled_step_status_start"} <= {
            ix["name"] for ix in inspect(engine).get_indexes("scheduled_step")}
        upgrade(engine, "0008")
        assert current_revision(engine) == "0008"
    finally:
        engine.dispose()


def test_0012_drops_the_journal_columns_and_keeps_messages(database_url):
    from datetime import datetime

    from alembic import command
    from sqlalchemy import text

    from broker.store.db import make_engine
    from broker.store.migrate import alembic_config
    engine = make_engine(database_url)
    try:
        upgrade(engine, "0011")
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO inbound_message (channel, sender, control_id, message_type, peer, "
                "raw, received_at, status, error, attempts, journal_seq) VALUES ('hl7', 'A|B', "
                "'C1', 'ORM^O01', '', :raw, :at, 'PROCESSED', '', 1, 7)"),
                {"raw": b"MSH|", "at": datetime(2026, 11, 23)})
        upgrade(engine)
        assert "intake_journal" not in inspect(engine).get_table_names()
        assert "journal_seq" not in {c["name"] for c in inspect(engine).get_columns("inbound_message")}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT control_id, raw FROM inbound_message")
                                ).all() == [("C1", b"MSH|")]
        command.downgrade(alembic_config(engine), "0011")
        assert "intake_journal" in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT control_id FROM inbound_message")).all() == [("C1",)]
    finally:
        engine.dispose()
