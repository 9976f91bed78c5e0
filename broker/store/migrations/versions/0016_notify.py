"""notifications to the EHR: what a notification tells, and studies awaiting the PACS

Revision ID: 0016
Revises: 0015
"""
from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('event', sa.String(length=16), server_default='',
                                      nullable=False))
    op.create_table(
        'study_check',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('study_instance_uid', sa.String(length=64), nullable=False),
        sa.Column('accession_number', sa.String(length=16), nullable=False),
        sa.Column('order_id', sa.Integer(), nullable=True),
        sa.Column('performed_step_id', sa.Integer(), nullable=True),
        sa.Column('expected_series', sa.Integer(), nullable=False),
        sa.Column('expected_instances', sa.Integer(), nullable=False),
        sa.Column('found_series', sa.Integer(), nullable=False),
        sa.Column('found_instances', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('checks', sa.Integer(), nullable=False),
        sa.Column('next_check_at', sa.DateTime(), nullable=False),
        sa.Column('give_up_at', sa.DateTime(), nullable=True),
        sa.Column('last_result', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['order_id'], ['imaging_order.id'],
                                name=op.f('fk_study_check_order_id_imaging_order')),
        sa.ForeignKeyConstraint(['performed_step_id'], ['performed_step.id'],
                                name=op.f('fk_study_check_performed_step_id_performed_step')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_study_check')))
    op.create_index('ix_study_check_due', 'study_check', ['status', 'next_check_at'])
    op.create_index(op.f('ix_study_check_study_instance_uid'), 'study_check',
                    ['study_instance_uid'])
    op.create_index(op.f('ix_study_check_order_id'), 'study_check', ['order_id'])


def downgrade() -> None:
    op.drop_table('study_check')
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_column('event')
