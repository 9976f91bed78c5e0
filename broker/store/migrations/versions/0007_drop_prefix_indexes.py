"""drop single-column indexes that are the first column of another index on the same table

Every HL7 order wrote these B-trees for nothing: a query on the column uses the composite index
just as well (SQLite and PostgreSQL both search a B-tree by its leading column), so each one
only cost a page write per inserted row.
  ix_imaging_order_accession_number  -> uq_imaging_order_accession (accession_number, issuer)
  ix_scheduled_step_modality         -> ix_scheduled_step_modality_start (modality, start_at)
  ix_step_station_ae_ae_title        -> ix_step_station_ae_title_step (ae_title, step_id)

Revision ID: 0007
Revises: 0006
"""
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_DROPPED = (
    ('ix_imaging_order_accession_number', 'imaging_order', ['accession_number']),
    ('ix_scheduled_step_modality', 'scheduled_step', ['modality']),
    ('ix_step_station_ae_ae_title', 'step_station_ae', ['ae_title']),
)


def upgrade() -> None:
    for name, table, _ in _DROPPED:
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    for name, table, columns in _DROPPED:
        op.create_index(name, table, columns, unique=False)
