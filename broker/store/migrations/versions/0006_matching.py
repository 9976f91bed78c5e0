"""matching: kind and incoming record of match candidates, covering index of blocking keys

Revision ID: 0006
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('match_candidate') as batch:
        batch.add_column(sa.Column('kind', sa.String(length=16), server_default='duplicate',
                                   nullable=False))
        batch.add_column(sa.Column('incoming', sa.JSON(), nullable=True))
    op.create_index('ix_patient_block_key_key_patient', 'patient_block_key', ['key', 'patient_id'])


def downgrade() -> None:
    op.drop_index('ix_patient_block_key_key_patient', table_name='patient_block_key')
    with op.batch_alter_table('match_candidate') as batch:
        batch.drop_column('incoming')
        batch.drop_column('kind')
