"""intake index diet: B-trees every HL7 order wrote that no query needs

An HL7 order is one transaction, and on SQLite each B-tree it touches costs at least one page
in the WAL, fsynced at commit. Each change here removes such a write without turning a query
that searched an index into a scan:

  ix_inbound_message_received_at   dropped: no query filters or orders by received_at (message
                                   lists go by id).
  ix_inbound_message_status        -> ix_inbound_message_unprocessed (status) WHERE status !=
                                   'PROCESSED': admins look for FAILED/REJECTED; a message that
                                   went through (nearly all) writes no entry. list_messages adds
                                   the same term for those statuses so SQLite can use it; the
                                   status page counts PROCESSED as total minus the others.
  ix_scheduled_step_start_at       dropped: every query on start_at also names the status (the
                                   worklist's served statuses, housekeeping, ADT arrival: all
                                   searched by ix_scheduled_step_status_start) or the modality
                                   (ix_scheduled_step_modality_start); list_steps merges one
                                   search per status.
  ix_imaging_order_status          -> ix_imaging_order_finished (updated_at) WHERE status IN
                                   ('COMPLETED', 'DISCONTINUED', 'CANCELED'): the purge of
                                   finished orders was its only query; a new order writes no entry.
  ix_patient_block_key_key         dropped: the first column of ix_patient_block_key_key_patient
                                   (as in 0007); written for each blocking key of a new patient.
  ix_patient_name_key              dropped: on SQLite the same B-tree as
                                   ix_patient_name_key_pattern; on PostgreSQL that index's
                                   text_pattern_ops serves = as well as LIKE 'ABC%', and no query
                                   orders or ranges on name_key there.
  step_station_ae                  WITHOUT ROWID on SQLite: the table becomes its primary-key
                                   B-tree (step_id, ae_title), instead of a rowid table plus that
                                   key's index; rebuilt with its rows. Nothing on PostgreSQL.

The partial indexes' WHERE is written as the models render it (broker.store.models), and the
queries that need them carry that very term: SQLite only uses a partial index when the query's
WHERE contains the index's own term, with its values inline.

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_DROPPED = (
    ('ix_inbound_message_received_at', 'inbound_message', ['received_at']),
    ('ix_inbound_message_status', 'inbound_message', ['status']),
    ('ix_scheduled_step_start_at', 'scheduled_step', ['start_at']),
    ('ix_imaging_order_status', 'imaging_order', ['status']),
    ('ix_patient_block_key_key', 'patient_block_key', ['key']),
    ('ix_patient_name_key', 'patient', ['name_key']),
)
_PARTIAL = (
    ('ix_inbound_message_unprocessed', 'inbound_message', ['status'],
     "status != 'PROCESSED'"),
    ('ix_imaging_order_finished', 'imaging_order', ['updated_at'],
     "status IN ('COMPLETED', 'DISCONTINUED', 'CANCELED')"),
)


def _rebuild_station_table(with_rowid: bool) -> None:
    """Copy step_station_ae into a table with(out) rowid, with its index (SQLite only)."""
    if op.get_bind().dialect.name != 'sqlite':
        return
    with op.batch_alter_table('step_station_ae', recreate='always',
                              table_kwargs={'sqlite_with_rowid': with_rowid}):
        pass


def upgrade() -> None:
    for name, table, _ in _DROPPED:
        op.drop_index(name, table_name=table)
    for name, table, columns, where in _PARTIAL:
        op.create_index(name, table, columns, sqlite_where=sa.text(where),
                        postgresql_where=sa.text(where))
    _rebuild_station_table(with_rowid=False)


def downgrade() -> None:
    _rebuild_station_table(with_rowid=True)
    for name, table, _, _ in _PARTIAL:
        op.drop_index(name, table_name=table)
    for name, table, columns in _DROPPED:
        op.create_index(name, table, columns, unique=False)
