"""patient_search: pending fuzzy candidate searches of new patients

A new patient's candidate search runs after its message was acknowledged, from a row written
in the same transaction as the patient, so a crash loses no pending search.

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'patient_search',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('patient_id', sa.Integer(), nullable=False),
        sa.Column('source', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['patient_id'], ['patient.id'],
                                name=op.f('fk_patient_search_patient_id_patient')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_patient_search')))
    op.create_index(op.f('ix_patient_search_patient_id'), 'patient_search', ['patient_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_patient_search_patient_id'), table_name='patient_search')
    op.drop_table('patient_search')
