"""performed step summary and calling AE title (issue 5, MPPS)

Revision ID: 0005
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('performed_step', schema=None) as batch_op:
        batch_op.add_column(sa.Column('summary', sa.JSON(), nullable=False,
                                      server_default=sa.text("'{}'")))
        batch_op.add_column(sa.Column('calling_ae_title', sa.String(length=16), nullable=False,
                                      server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('performed_step', schema=None) as batch_op:
        batch_op.drop_column('calling_ae_title')
        batch_op.drop_column('summary')
