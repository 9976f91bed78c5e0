"""drop the HL7 intake journal: the database is the only store of record

The intake commits each message durably in the database alone (synchronous=FULL on SQLite),
so inbound_message.journal_seq and intake_journal have no use.

Revision ID: 0012
Revises: 0011
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.drop_column('journal_seq')
    op.drop_table('intake_journal')


def downgrade() -> None:
    op.create_table('intake_journal',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('token', sa.String(length=36), nullable=False),
                    sa.PrimaryKeyConstraint('id', name=op.f('pk_intake_journal')))
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('journal_seq', sa.BigInteger(), nullable=True))
