"""requested_procedure.accession_number and accession_issuer: an accession per procedure

IHE RAD-4 (HL7 v2.5.1) carries the Accession Identifier in each IPC segment; an order whose IPC
segments name different accessions gets one per requested procedure, and the worklist serves
and searches each item by its own. Existing procedures take their order's accession.

Revision ID: 0014
Revises: 0013
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('requested_procedure', schema=None) as batch_op:
        batch_op.add_column(sa.Column('accession_number', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('accession_issuer', sa.String(length=64), nullable=False,
                                      server_default=''))
        batch_op.create_index(batch_op.f('ix_requested_procedure_accession_number'),
                              ['accession_number'])
    op.execute("UPDATE requested_procedure SET accession_number = (SELECT o.accession_number "
               "FROM imaging_order o WHERE o.id = requested_procedure.order_id), "
               "accession_issuer = (SELECT o.accession_issuer FROM imaging_order o "
               "WHERE o.id = requested_procedure.order_id)")


def downgrade() -> None:
    with op.batch_alter_table('requested_procedure', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_requested_procedure_accession_number'))
        batch_op.drop_column('accession_issuer')
        batch_op.drop_column('accession_number')
