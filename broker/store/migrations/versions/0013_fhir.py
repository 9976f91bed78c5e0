"""fhir: applied FHIR resource versions and the FHIR intake's durable state

Each ServiceRequest version is applied at most once, and never one older than the version
applied; the catch-up watermark, the Subscription id and its secret survive a restart and are
shared by every broker process.

Revision ID: 0013
Revises: 0012
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'fhir_resource_version',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('resource_type', sa.String(length=64), nullable=False),
        sa.Column('resource_id', sa.String(length=64), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('last_updated', sa.String(length=40), nullable=False),
        sa.Column('message_id', sa.Integer(), nullable=True),
        sa.Column('applied_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['message_id'], ['inbound_message.id'],
                                name=op.f('fk_fhir_resource_version_message_id_inbound_message')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_fhir_resource_version')),
        sa.UniqueConstraint('resource_type', 'resource_id',
                            name='uq_fhir_resource_version_resource'))
    op.create_table(
        'fhir_state',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('value', sa.Text(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_fhir_state')))


def downgrade() -> None:
    op.drop_table('fhir_state')
    op.drop_table('fhir_resource_version')
