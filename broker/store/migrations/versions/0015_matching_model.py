"""matching_model: patient-matching models fitted on the site's own patients

`broker patients train` estimates the m and u probabilities of every field's comparison levels
from the site's patients and stores them here, versioned; scans and live searches use the newest.

Revision ID: 0015
Revises: 0014
"""
from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'matching_model',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('patients', sa.Integer(), nullable=False),
        sa.Column('candidate_pairs', sa.Integer(), nullable=False),
        sa.Column('random_pairs', sa.Integer(), nullable=False),
        sa.Column('created_by', sa.String(length=64), nullable=False),
        sa.Column('parameters', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_matching_model')),
        sa.UniqueConstraint('version', name=op.f('uq_matching_model_version')))


def downgrade() -> None:
    op.drop_table('matching_model')
