"""scheduled_step.end_at: the scheduled end of a step (Scheduled Procedure Step End Date/Time)

Filled from the order (TQ1-8) or from the procedure table's duration_minutes; NULL when neither
is known, which is every step stored before this revision. Not indexed: the worklist returns it
but does not match on it.

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('scheduled_step', schema=None) as batch_op:
        batch_op.add_column(sa.Column('end_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('scheduled_step', schema=None) as batch_op:
        batch_op.drop_column('end_at')
