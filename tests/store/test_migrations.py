from sqlalchemy import inspect

from broker.store.migrate import current_revision, upgrade
from broker.store.models import Base


def test_upgrade_builds_every_table_and_is_repeatable(engine):
    upgrade(engine)  # a second run changes nothing
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert current_revision(engine) is not None


def test_worklist_search_columns_are_indexed(engine):
    insp = inspect(engine)

    def indexed(table):
        return {tuple(ix["column_names"]) for ix in insp.get_indexes(table)}
    assert ("status", "start_at") in indexed("scheduled_step")
    assert ("modality",) in indexed("scheduled_step")
    assert ("start_at",) in indexed("scheduled_step")
    assert ("name_key",) in indexed("patient")
    assert ("accession_number",) in indexed("imaging_order")
    assert ("ae_title",) in indexed("step_station_ae")
    assert ("study_instance_uid",) in indexed("requested_procedure")


def test_schema_matches_models(engine):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
