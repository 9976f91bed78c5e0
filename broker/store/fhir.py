"""FHIR intake state: applied resource versions and key/value state (watermark, subscription)."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from broker.clock import utcnow
from broker.store.models import FhirResourceVersion, FhirState

_INSERT = {"sqlite": sqlite_insert, "postgresql": postgresql_insert}


def _insert(session: Session):
    return _INSERT[session.get_bind().dialect.name]


def applied_version(session: Session, resource_type: str, resource_id: str) -> int:
    """The newest version of the resource applied so far; 0 when none."""
    version = session.scalar(select(FhirResourceVersion.version).where(
        FhirResourceVersion.resource_type == resource_type,
        FhirResourceVersion.resource_id == resource_id))
    return version or 0


def lock_version(session: Session, resource_type: str, resource_id: str) -> FhirResourceVersion:
    """The resource's version row, created at 0 if new, locked until the transaction ends, so
    two processes applying versions of one resource take turns (SQLite: BEGIN IMMEDIATE does)."""
    session.execute(_insert(session)(FhirResourceVersion).values(
        resource_type=resource_type, resource_id=resource_id, version=0, last_updated="",
        applied_at=utcnow()).on_conflict_do_nothing(
            index_elements=["resource_type", "resource_id"]))
    return session.scalars(select(FhirResourceVersion).where(
        FhirResourceVersion.resource_type == resource_type,
        FhirResourceVersion.resource_id == resource_id).with_for_update()).one()


def record_version(session: Session, resource_type: str, resource_id: str, version: int,
                   last_updated: str = "", message_id: int | None = None) -> None:
    """Mark `version` of the resource applied (also for the broker's own writes: their echo is
    then recognised); never lowers the recorded version."""
    row = lock_version(session, resource_type, resource_id)
    if version > row.version:
        row.version, row.last_updated, row.message_id = version, last_updated, message_id
    session.flush()


def get_state(session: Session, key: str, default: str = "") -> str:
    """One state value, or `default`."""
    value = session.scalar(select(FhirState.value).where(FhirState.key == key))
    return default if value is None else value


def all_state(session: Session) -> dict[str, str]:
    """Every state value by key."""
    return dict(session.execute(select(FhirState.key, FhirState.value)).all())


def set_state(session: Session, key: str, value: str) -> None:
    """Write one state value (insert or replace)."""
    statement = _insert(session)(FhirState).values(key=key, value=value, updated_at=utcnow())
    session.execute(statement.on_conflict_do_update(
        index_elements=["key"], set_={"value": value, "updated_at": utcnow()}))


def init_state(session: Session, key: str, value: str) -> str:
    """Set `key` unless another process set it first; returns the value in force."""
    session.execute(_insert(session)(FhirState).values(
        key=key, value=value, updated_at=utcnow()).on_conflict_do_nothing(index_elements=["key"]))
    return get_state(session, key)
