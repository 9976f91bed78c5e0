"""SQLAlchemy 2 models of the scheduling store (DESIGN.md, "Data model").

Columns the worklist is searched on are plain indexed columns, so a C-FIND is one indexed query.
Timestamps of record keeping are naive UTC; scheduled start times are the site's local time,
as DICOM DA/TM values are.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON, Boolean, ColumnElement, DateTime, Float, ForeignKey, Index, Integer, LargeBinary,
    MetaData, String, Text, UniqueConstraint, literal_column,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from broker.clock import utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


_utcnow = utcnow

FINISHED_ORDER_STATUSES = ("COMPLETED", "DISCONTINUED", "CANCELED")


# Conditions of the partial indexes below. SQLite uses a partial index only for a query whose
# WHERE contains the index's own term (status = 'FAILED' does not prove status != 'PROCESSED'
# to it, and an IN list of bound parameters matches no literal list), so the queries that need
# these indexes add the term from here, values inline.
def unprocessed_message(status: Any) -> ColumnElement[bool]:
    """status != 'PROCESSED': the messages an admin looks for (FAILED, REJECTED, RECEIVED)."""
    return status != literal_column("'PROCESSED'")


def finished_order(status: Any) -> ColumnElement[bool]:
    """status IN ('COMPLETED', 'DISCONTINUED', 'CANCELED'): the orders housekeeping purges."""
    return status.in_([literal_column(f"'{s}'") for s in FINISHED_ORDER_STATUSES])


class Patient(Base):
    __tablename__ = "patient"
    # PostgreSQL: lets LIKE 'ABC%' on the name key use an index whatever the database collation;
    # its operator class has = too, so it is the only index on name_key (SQLite: a plain one).
    __table_args__ = (Index("ix_patient_name_key_pattern", "name_key",
                            postgresql_ops={"name_key": "text_pattern_ops"}),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(324), default="")  # full DICOM PN value
    family_name: Mapped[str] = mapped_column(String(64), default="")
    given_name: Mapped[str] = mapped_column(String(64), default="")
    middle_name: Mapped[str] = mapped_column(String(64), default="")
    name_prefix: Mapped[str] = mapped_column(String(64), default="")
    name_suffix: Mapped[str] = mapped_column(String(64), default="")
    # Upper-case alphabetic PN group: what case-insensitive PatientName matching runs on.
    name_key: Mapped[str] = mapped_column(String(324), default="")
    birth_date: Mapped[str] = mapped_column(String(8), default="", index=True)
    sex: Mapped[str] = mapped_column(String(1), default="")
    address: Mapped[str] = mapped_column(String(255), default="")
    phone: Mapped[str] = mapped_column(String(64), default="")
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"), index=True)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow, onupdate=_utcnow)

    identifiers: Mapped[list[PatientIdentifier]] = relationship(
        back_populates="patient", order_by="PatientIdentifier.id")
    orders: Mapped[list[Order]] = relationship(back_populates="patient")


class PatientIdentifier(Base):
    __tablename__ = "patient_identifier"
    __table_args__ = (UniqueConstraint("value", "issuer", name="uq_patient_identifier_value_issuer"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    value: Mapped[str] = mapped_column(String(64))
    issuer: Mapped[str] = mapped_column(String(64), default="")
    type_code: Mapped[str] = mapped_column(String(16), default="")

    patient: Mapped[Patient] = relationship(back_populates="identifiers")


class PatientBlockKey(Base):
    """Blocking keys for candidate search: several per patient, each indexed."""
    __tablename__ = "patient_block_key"
    # Covering index: a candidate search reads patient ids from the index alone. It serves
    # lookups by key as well, so key has no index of its own.
    __table_args__ = (Index("ix_patient_block_key_key_patient", "key", "patient_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    key: Mapped[str] = mapped_column(String(96))


class Order(Base):
    __tablename__ = "imaging_order"
    __table_args__ = (
        UniqueConstraint("accession_number", "accession_issuer", name="uq_imaging_order_accession"),
        UniqueConstraint("placer_order_number", "placer_issuer", name="uq_imaging_order_placer"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    placer_order_number: Mapped[str | None] = mapped_column(String(64))
    placer_issuer: Mapped[str] = mapped_column(String(64), default="")
    filler_order_number: Mapped[str | None] = mapped_column(String(64))
    filler_issuer: Mapped[str] = mapped_column(String(64), default="")
    # NULL, not "", when absent: unique constraints ignore NULLs. No index of its own:
    # uq_imaging_order_accession (accession_number, accession_issuer) serves lookups by it.
    accession_number: Mapped[str | None] = mapped_column(String(16))
    accession_issuer: Mapped[str] = mapped_column(String(64), default="")
    priority: Mapped[str] = mapped_column(String(16), default="")
    referring_physician: Mapped[str] = mapped_column(String(324), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    # Indexed only while finished (ix_imaging_order_finished): a new order writes no entry.
    status: Mapped[str] = mapped_column(String(16), default="SCHEDULED")
    source_channel: Mapped[str] = mapped_column(String(16), default="")
    source_message_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_message.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow, onupdate=_utcnow)

    patient: Mapped[Patient] = relationship(back_populates="orders")
    procedures: Mapped[list[RequestedProcedure]] = relationship(
        back_populates="order", order_by="RequestedProcedure.id")


# (updated_at): the purge searches finished orders by age.
Index("ix_imaging_order_finished", Order.updated_at,
      sqlite_where=finished_order(Order.status), postgresql_where=finished_order(Order.status))


class RequestedProcedure(Base):
    __tablename__ = "requested_procedure"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("imaging_order.id"), index=True)
    procedure_id: Mapped[str] = mapped_column(String(16))
    code_value: Mapped[str] = mapped_column(String(64), default="")
    code_scheme: Mapped[str] = mapped_column(String(64), default="")
    code_meaning: Mapped[str] = mapped_column(String(64), default="")
    study_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    # The Accession Number a worklist item carries (IHE RAD-4: one per IPC); the order's
    # accession when the order sent one for all its procedures. Searched by the worklist.
    accession_number: Mapped[str | None] = mapped_column(String(16), index=True)
    accession_issuer: Mapped[str] = mapped_column(String(64), default="")

    order: Mapped[Order] = relationship(back_populates="procedures")
    steps: Mapped[list[ScheduledStep]] = relationship(
        back_populates="procedure", order_by="ScheduledStep.id")


class ScheduledStep(Base):
    __tablename__ = "scheduled_step"
    __table_args__ = (
        Index("ix_scheduled_step_status_start", "status", "start_at"),
        # Worklist shape "modality + date range": one index range scan, already in start order.
        Index("ix_scheduled_step_modality_start", "modality", "start_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    requested_procedure_id: Mapped[int] = mapped_column(
        ForeignKey("requested_procedure.id"), index=True)
    step_id: Mapped[str] = mapped_column(String(16))
    # Indexed through ix_scheduled_step_modality_start (modality is its first column).
    modality: Mapped[str] = mapped_column(String(16), default="")
    # Backslash-joined as DICOM shows it; step_station_ae holds one indexed row per title.
    station_ae_title: Mapped[str] = mapped_column(String(170), default="")
    station_name: Mapped[str] = mapped_column(String(64), default="")
    location: Mapped[str] = mapped_column(String(64), default="")
    # Searched through ix_scheduled_step_status_start / _modality_start: every query on it
    # names the status or the modality too (list_steps searches status by status).
    start_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Shown to the modality (Scheduled Procedure Step End Date/Time), never searched: no index.
    end_at: Mapped[datetime | None] = mapped_column(DateTime)
    performing_physician: Mapped[str] = mapped_column(String(324), default="")
    description: Mapped[str] = mapped_column(String(64), default="")
    protocol_codes: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16), default="SCHEDULED")
    # Attributes carried by an imported worklist file that have no column of their own.
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow, onupdate=_utcnow)

    procedure: Mapped[RequestedProcedure] = relationship(back_populates="steps")
    stations: Mapped[list[StepStationAE]] = relationship(
        back_populates="step", cascade="all, delete-orphan")


class StepStationAE(Base):
    __tablename__ = "step_station_ae"
    # Covering index for "station AE + ...": the step ids come from the index alone.
    # WITHOUT ROWID on SQLite: the table is its primary-key B-tree, not a rowid table plus one.
    __table_args__ = (Index("ix_step_station_ae_title_step", "ae_title", "step_id"),
                      {"sqlite_with_rowid": False})

    step_id: Mapped[int] = mapped_column(ForeignKey("scheduled_step.id"), primary_key=True)
    # Indexed through ix_step_station_ae_title_step (ae_title is its first column).
    ae_title: Mapped[str] = mapped_column(String(16), primary_key=True)

    step: Mapped[ScheduledStep] = relationship(back_populates="stations")


class PerformedStep(Base):
    __tablename__ = "performed_step"

    id: Mapped[int] = mapped_column(primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    modality: Mapped[str] = mapped_column(String(16), default="")
    station_ae_title: Mapped[str] = mapped_column(String(16), default="")
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    study_instance_uid: Mapped[str] = mapped_column(String(64), default="", index=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"), index=True)
    unscheduled: Mapped[bool] = mapped_column(Boolean, default=False)
    discontinuation_reason: Mapped[str] = mapped_column(String(64), default="")
    dataset: Mapped[dict[str, Any]] = mapped_column(default=dict)  # DICOM JSON as received
    # What was performed, read from the dataset: series with image counts, protocols, dose.
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    calling_ae_title: Mapped[str] = mapped_column(String(16), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow, onupdate=_utcnow)


class PerformedStepLink(Base):
    """Which scheduled steps an MPPS covers (one MPPS may cover several; several may share one)."""
    __tablename__ = "performed_step_link"

    performed_step_id: Mapped[int] = mapped_column(
        ForeignKey("performed_step.id"), primary_key=True)
    scheduled_step_id: Mapped[int] = mapped_column(
        ForeignKey("scheduled_step.id"), primary_key=True, index=True)


class InboundMessage(Base):
    """Every message received, raw, stored before it is acknowledged."""
    __tablename__ = "inbound_message"
    __table_args__ = (
        UniqueConstraint("channel", "sender", "control_id", name="uq_inbound_message_resend"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))       # hl7, fhir
    sender: Mapped[str] = mapped_column(String(255), default="")
    control_id: Mapped[str | None] = mapped_column(String(199))
    message_type: Mapped[str] = mapped_column(String(32), default="")
    peer: Mapped[str] = mapped_column(String(64), default="")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    # Not indexed: lists go by id, which is arrival order too.
    received_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)
    # Indexed only when not PROCESSED (ix_inbound_message_unprocessed): a message that went
    # through, nearly all of them, writes no entry.
    status: Mapped[str] = mapped_column(String(16), default="RECEIVED")
    error: Mapped[str] = mapped_column(Text, default="")
    ack: Mapped[bytes | None] = mapped_column(LargeBinary)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


Index("ix_inbound_message_unprocessed", InboundMessage.status,
      sqlite_where=unprocessed_message(InboundMessage.status),
      postgresql_where=unprocessed_message(InboundMessage.status))


class PatientSearch(Base):
    """A pending fuzzy candidate search for a new patient: written in the transaction that
    created the patient, run after the message was acknowledged, deleted when done."""
    __tablename__ = "patient_search"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    source: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")


class Notification(Base):
    """Outbox row: written in the transaction of the change that causes it."""
    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    destination: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    ordering_key: Mapped[str] = mapped_column(String(128), default="", index=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="PENDING")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)
    # What the notification tells (order status IP/CM/DC, "available"): later triggers check
    # what an order's destination has already been told.
    event: Mapped[str] = mapped_column(String(16), default="", server_default="")


class MatchCandidate(Base):
    __tablename__ = "match_candidate"

    id: Mapped[int] = mapped_column(primary_key=True)
    incoming_patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    candidate_patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    total_score: Mapped[float] = mapped_column(Float)
    field_scores: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reason: Mapped[str] = mapped_column(String(255), default="")
    source: Mapped[str] = mapped_column(String(32), default="")
    # duplicate: two patient records that may be one person; conflict: an identifier match whose
    # demographics disagree (incoming_patient_id == candidate_patient_id, `incoming` holds them).
    kind: Mapped[str] = mapped_column(String(16), default="duplicate", server_default="duplicate")
    incoming: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="OPEN", index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)
    resolved_by: Mapped[str] = mapped_column(String(64), default="")
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime)


class PatientMerge(Base):
    """A merge, recorded exactly enough to undo it."""
    __tablename__ = "patient_merge"

    id: Mapped[int] = mapped_column(primary_key=True)
    survivor_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    merged_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    moved: Mapped[dict[str, Any]] = mapped_column(default=dict)  # ids of rows that changed patient
    actor: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)
    undone_at: Mapped[datetime | None] = mapped_column(DateTime)


class AuditEvent(Base):
    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_entity", "entity_type", "entity_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class User(Base):
    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="viewer")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)
    # Web sign-in (migration 0020): a disabled account cannot sign in; failures lock it a while.
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)


class ApiToken(Base):
    """A bearer token of the JSON API: only a hash of its secret is stored."""
    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="viewer")
    secret_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


class StudyCheck(Base):
    """A study waiting to be confirmed in the PACS before the EHR hears it is available."""
    __tablename__ = "study_check"
    __table_args__ = (Index("ix_study_check_due", "status", "next_check_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    accession_number: Mapped[str] = mapped_column(String(16), default="")
    order_id: Mapped[int | None] = mapped_column(ForeignKey("imaging_order.id"), index=True)
    performed_step_id: Mapped[int | None] = mapped_column(ForeignKey("performed_step.id"))
    # What the MPPS said was made (PS3.4 F.7.2.1 Performed Series Sequence), and what the PACS holds.
    expected_series: Mapped[int] = mapped_column(Integer, default=0)
    expected_instances: Mapped[int] = mapped_column(Integer, default=0)
    found_series: Mapped[int] = mapped_column(Integer, default=0)
    found_instances: Mapped[int] = mapped_column(Integer, default=0)
    # WAITING (checks continue), AVAILABLE (the EHR was told), MISSING (given up: images missing).
    status: Mapped[str] = mapped_column(String(16), default="WAITING")
    checks: Mapped[int] = mapped_column(Integer, default=0)
    next_check_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)
    give_up_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_result: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow, onupdate=_utcnow)


class FhirResourceVersion(Base):
    """The newest version of each FHIR resource the broker applied (or wrote itself): a version
    at or below it is a repeat, an out-of-order delivery or the echo of the broker's own write."""
    __tablename__ = "fhir_resource_version"
    __table_args__ = (UniqueConstraint("resource_type", "resource_id",
                                       name="uq_fhir_resource_version_resource"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=0)
    last_updated: Mapped[str] = mapped_column(String(40), default="")
    message_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_message.id"))
    applied_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow, onupdate=_utcnow)


class FhirState(Base):
    """Durable FHIR intake state shared by every broker process: the catch-up watermark, the
    Subscription id, its shared secret, the last event number and heartbeat."""
    __tablename__ = "fhir_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow, onupdate=_utcnow)


class MatchingModel(Base):
    """A patient-matching model (broker.matching.score.model) fitted on this site's patients by
    `broker patients train`; the newest one scores scans and live searches."""
    __tablename__ = "matching_model"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)
    patients: Mapped[int] = mapped_column(Integer, default=0)
    candidate_pairs: Mapped[int] = mapped_column(Integer, default=0)
    random_pairs: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
