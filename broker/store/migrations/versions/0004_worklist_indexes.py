"""worklist query indexes: modality + start, station AE title + step, name-key pattern (issue 4)

Revision ID: 0004
Revises: 0001
"""
from alembic import op


revision = '0004'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_scheduled_step_modality_start', 'scheduled_step', ['modality', 'start_at'])
    op.create_index('ix_step_station_ae_title_step', 'step_station_ae', ['ae_title', 'step_id'])
    op.create_index('ix_patient_name_key_pattern', 'patient', ['name_key'],
                    postgresql_ops={'name_key': 'text_pattern_ops'})


def downgrade() -> None:
    op.drop_index('ix_patient_name_key_pattern', table_name='patient')
    op.drop_index('ix_step_station_ae_title_step', table_name='step_station_ae')
    op.drop_index('ix_scheduled_step_modality_start', table_name='scheduled_step')
