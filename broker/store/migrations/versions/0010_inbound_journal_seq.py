"""inbound_message.journal_seq and intake_journal: the database's side of the HL7 journal

The HL7 writer makes each received frame durable in its journal (broker.store.journal) and
commits the database without an fsync of its own; after an OS crash, start-up replays the
journal records above the highest journal_seq stored. Not indexed: the newest rows are read
backwards by id, which is arrival order too, and an index would cost every message a page.
intake_journal holds the token the journal's segments carry, so a journal is only ever
replayed into the database it was written for.

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('journal_seq', sa.BigInteger(), nullable=True))
    op.create_table('intake_journal',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('token', sa.String(length=36), nullable=False),
                    sa.PrimaryKeyConstraint('id', name=op.f('pk_intake_journal')))


def downgrade() -> None:
    op.drop_table('intake_journal')
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.drop_column('journal_seq')
