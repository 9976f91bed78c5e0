"""core tables

Revision ID: 0001
Revises:
Create Date: 2026-11-23 05:32:08.570234
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('app_user',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_app_user')),
    sa.UniqueConstraint('username', name=op.f('uq_app_user_username'))
    )
    op.create_table('audit_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=32), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_event'))
    )
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_event_at'), ['at'], unique=False)
        batch_op.create_index('ix_audit_event_entity', ['entity_type', 'entity_id'], unique=False)

    op.create_table('inbound_message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('sender', sa.String(length=255), nullable=False),
    sa.Column('control_id', sa.String(length=199), nullable=True),
    sa.Column('message_type', sa.String(length=32), nullable=False),
    sa.Column('peer', sa.String(length=64), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('ack', sa.LargeBinary(), nullable=True),
    sa.Column('processed_at', sa.DateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_message')),
    sa.UniqueConstraint('channel', 'sender', 'control_id', name='uq_inbound_message_resend')
    )
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbound_message_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbound_message_status'), ['status'], unique=False)

    op.create_table('notification',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('destination', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('ordering_key', sa.String(length=128), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('delivered_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification'))
    )
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.create_index('ix_notification_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_notification_ordering_key'), ['ordering_key'], unique=False)

    op.create_table('patient',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=324), nullable=False),
    sa.Column('family_name', sa.String(length=64), nullable=False),
    sa.Column('given_name', sa.String(length=64), nullable=False),
    sa.Column('middle_name', sa.String(length=64), nullable=False),
    sa.Column('name_prefix', sa.String(length=64), nullable=False),
    sa.Column('name_suffix', sa.String(length=64), nullable=False),
    sa.Column('name_key', sa.String(length=324), nullable=False),
    sa.Column('birth_date', sa.String(length=8), nullable=False),
    sa.Column('sex', sa.String(length=1), nullable=False),
    sa.Column('address', sa.String(length=255), nullable=False),
    sa.Column('phone', sa.String(length=64), nullable=False),
    sa.Column('merged_into_id', sa.Integer(), nullable=True),
    sa.Column('extra', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['merged_into_id'], ['patient.id'], name=op.f('fk_patient_merged_into_id_patient')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient'))
    )
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_patient_birth_date'), ['birth_date'], unique=False)
        batch_op.create_index(batch_op.f('ix_patient_merged_into_id'), ['merged_into_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_patient_name_key'), ['name_key'], unique=False)

    op.create_table('imaging_order',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('placer_order_number', sa.String(length=64), nullable=True),
    sa.Column('placer_issuer', sa.String(length=64), nullable=False),
    sa.Column('filler_order_number', sa.String(length=64), nullable=True),
    sa.Column('filler_issuer', sa.String(length=64), nullable=False),
    sa.Column('accession_number', sa.String(length=16), nullable=True),
    sa.Column('accession_issuer', sa.String(length=64), nullable=False),
    sa.Column('priority', sa.String(length=16), nullable=False),
    sa.Column('referring_physician', sa.String(length=324), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('source_channel', sa.String(length=16), nullable=False),
    sa.Column('source_message_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_imaging_order_patient_id_patient')),
    sa.ForeignKeyConstraint(['source_message_id'], ['inbound_message.id'], name=op.f('fk_imaging_order_source_message_id_inbound_message')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_imaging_order')),
    sa.UniqueConstraint('accession_number', 'accession_issuer', name='uq_imaging_order_accession'),
    sa.UniqueConstraint('placer_order_number', 'placer_issuer', name='uq_imaging_order_placer')
    )
    with op.batch_alter_table('imaging_order', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_imaging_order_accession_number'), ['accession_number'], unique=False)
        batch_op.create_index(batch_op.f('ix_imaging_order_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_imaging_order_status'), ['status'], unique=False)

    op.create_table('match_candidate',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('incoming_patient_id', sa.Integer(), nullable=False),
    sa.Column('candidate_patient_id', sa.Integer(), nullable=False),
    sa.Column('total_score', sa.Float(), nullable=False),
    sa.Column('field_scores', sa.JSON(), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('resolved_by', sa.String(length=64), nullable=False),
    sa.Column('resolved_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['candidate_patient_id'], ['patient.id'], name=op.f('fk_match_candidate_candidate_patient_id_patient')),
    sa.ForeignKeyConstraint(['incoming_patient_id'], ['patient.id'], name=op.f('fk_match_candidate_incoming_patient_id_patient')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_match_candidate'))
    )
    with op.batch_alter_table('match_candidate', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_match_candidate_candidate_patient_id'), ['candidate_patient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_match_candidate_incoming_patient_id'), ['incoming_patient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_match_candidate_status'), ['status'], unique=False)

    op.create_table('patient_block_key',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=96), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_patient_block_key_patient_id_patient')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient_block_key'))
    )
    with op.batch_alter_table('patient_block_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_patient_block_key_key'), ['key'], unique=False)
        batch_op.create_index(batch_op.f('ix_patient_block_key_patient_id'), ['patient_id'], unique=False)

    op.create_table('patient_identifier',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('value', sa.String(length=64), nullable=False),
    sa.Column('issuer', sa.String(length=64), nullable=False),
    sa.Column('type_code', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_patient_identifier_patient_id_patient')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient_identifier')),
    sa.UniqueConstraint('value', 'issuer', name='uq_patient_identifier_value_issuer')
    )
    with op.batch_alter_table('patient_identifier', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_patient_identifier_patient_id'), ['patient_id'], unique=False)

    op.create_table('patient_merge',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('survivor_id', sa.Integer(), nullable=False),
    sa.Column('merged_id', sa.Integer(), nullable=False),
    sa.Column('moved', sa.JSON(), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('undone_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['merged_id'], ['patient.id'], name=op.f('fk_patient_merge_merged_id_patient')),
    sa.ForeignKeyConstraint(['survivor_id'], ['patient.id'], name=op.f('fk_patient_merge_survivor_id_patient')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient_merge'))
    )
    with op.batch_alter_table('patient_merge', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_patient_merge_merged_id'), ['merged_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_patient_merge_survivor_id'), ['survivor_id'], unique=False)

    op.create_table('performed_step',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sop_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('modality', sa.String(length=16), nullable=False),
    sa.Column('station_ae_title', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.Column('study_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=True),
    sa.Column('unscheduled', sa.Boolean(), nullable=False),
    sa.Column('discontinuation_reason', sa.String(length=64), nullable=False),
    sa.Column('dataset', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_performed_step_patient_id_patient')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_performed_step')),
    sa.UniqueConstraint('sop_instance_uid', name=op.f('uq_performed_step_sop_instance_uid'))
    )
    with op.batch_alter_table('performed_step', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_performed_step_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_performed_step_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_performed_step_study_instance_uid'), ['study_instance_uid'], unique=False)

    op.create_table('requested_procedure',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('procedure_id', sa.String(length=16), nullable=False),
    sa.Column('code_value', sa.String(length=64), nullable=False),
    sa.Column('code_scheme', sa.String(length=64), nullable=False),
    sa.Column('code_meaning', sa.String(length=64), nullable=False),
    sa.Column('study_instance_uid', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['imaging_order.id'], name=op.f('fk_requested_procedure_order_id_imaging_order')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_requested_procedure'))
    )
    with op.batch_alter_table('requested_procedure', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_requested_procedure_order_id'), ['order_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_requested_procedure_study_instance_uid'), ['study_instance_uid'], unique=False)

    op.create_table('scheduled_step',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('requested_procedure_id', sa.Integer(), nullable=False),
    sa.Column('step_id', sa.String(length=16), nullable=False),
    sa.Column('modality', sa.String(length=16), nullable=False),
    sa.Column('station_ae_title', sa.String(length=170), nullable=False),
    sa.Column('station_name', sa.String(length=64), nullable=False),
    sa.Column('location', sa.String(length=64), nullable=False),
    sa.Column('start_at', sa.DateTime(), nullable=True),
    sa.Column('performing_physician', sa.String(length=324), nullable=False),
    sa.Column('description', sa.String(length=64), nullable=False),
    sa.Column('protocol_codes', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('extra', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['requested_procedure_id'], ['requested_procedure.id'], name=op.f('fk_scheduled_step_requested_procedure_id_requested_procedure')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduled_step'))
    )
    with op.batch_alter_table('scheduled_step', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_scheduled_step_modality'), ['modality'], unique=False)
        batch_op.create_index(batch_op.f('ix_scheduled_step_requested_procedure_id'), ['requested_procedure_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_scheduled_step_start_at'), ['start_at'], unique=False)
        batch_op.create_index('ix_scheduled_step_status_start', ['status', 'start_at'], unique=False)

    op.create_table('performed_step_link',
    sa.Column('performed_step_id', sa.Integer(), nullable=False),
    sa.Column('scheduled_step_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['performed_step_id'], ['performed_step.id'], name=op.f('fk_performed_step_link_performed_step_id_performed_step')),
    sa.ForeignKeyConstraint(['scheduled_step_id'], ['scheduled_step.id'], name=op.f('fk_performed_step_link_scheduled_step_id_scheduled_step')),
    sa.PrimaryKeyConstraint('performed_step_id', 'scheduled_step_id', name=op.f('pk_performed_step_link'))
    )
    with op.batch_alter_table('performed_step_link', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_performed_step_link_scheduled_step_id'), ['scheduled_step_id'], unique=False)

    op.create_table('step_station_ae',
    sa.Column('step_id', sa.Integer(), nullable=False),
    sa.Column('ae_title', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['step_id'], ['scheduled_step.id'], name=op.f('fk_step_station_ae_step_id_scheduled_step')),
    sa.PrimaryKeyConstraint('step_id', 'ae_title', name=op.f('pk_step_station_ae'))
    )
    with op.batch_alter_table('step_station_ae', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_step_station_ae_ae_title'), ['ae_title'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('step_station_ae', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_step_station_ae_ae_title'))

    op.drop_table('step_station_ae')
    with op.batch_alter_table('performed_step_link', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_performed_step_link_scheduled_step_id'))

    op.drop_table('performed_step_link')
    with op.batch_alter_table('scheduled_step', schema=None) as batch_op:
        batch_op.drop_index('ix_scheduled_step_status_start')
        batch_op.drop_index(batch_op.f('ix_scheduled_step_start_at'))
        batch_op.drop_index(batch_op.f('ix_scheduled_step_requested_procedure_id'))
        batch_op.drop_index(batch_op.f('ix_scheduled_step_modality'))

    op.drop_table('scheduled_step')
    with op.batch_alter_table('requested_procedure', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_requested_procedure_study_instance_uid'))
        batch_op.drop_index(batch_op.f('ix_requested_procedure_order_id'))

    op.drop_table('requested_procedure')
    with op.batch_alter_table('performed_step', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_performed_step_study_instance_uid'))
        batch_op.drop_index(batch_op.f('ix_performed_step_status'))
        batch_op.drop_index(batch_op.f('ix_performed_step_patient_id'))

    op.drop_table('performed_step')
    with op.batch_alter_table('patient_merge', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_patient_merge_survivor_id'))
        batch_op.drop_index(batch_op.f('ix_patient_merge_merged_id'))

    op.drop_table('patient_merge')
    with op.batch_alter_table('patient_identifier', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_patient_identifier_patient_id'))

    op.drop_table('patient_identifier')
    with op.batch_alter_table('patient_block_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_patient_block_key_patient_id'))
        batch_op.drop_index(batch_op.f('ix_patient_block_key_key'))

    op.drop_table('patient_block_key')
    with op.batch_alter_table('match_candidate', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_match_candidate_status'))
        batch_op.drop_index(batch_op.f('ix_match_candidate_incoming_patient_id'))
        batch_op.drop_index(batch_op.f('ix_match_candidate_candidate_patient_id'))

    op.drop_table('match_candidate')
    with op.batch_alter_table('imaging_order', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_imaging_order_status'))
        batch_op.drop_index(batch_op.f('ix_imaging_order_patient_id'))
        batch_op.drop_index(batch_op.f('ix_imaging_order_accession_number'))

    op.drop_table('imaging_order')
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_patient_name_key'))
        batch_op.drop_index(batch_op.f('ix_patient_merged_into_id'))
        batch_op.drop_index(batch_op.f('ix_patient_birth_date'))

    op.drop_table('patient')
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_ordering_key'))
        batch_op.drop_index('ix_notification_due')

    op.drop_table('notification')
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbound_message_status'))
        batch_op.drop_index(batch_op.f('ix_inbound_message_received_at'))

    op.drop_table('inbound_message')
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_event_entity')
        batch_op.drop_index(batch_op.f('ix_audit_event_at'))

    op.drop_table('audit_event')
    op.drop_table('app_user')
