"""The audit log: who did what, when, to which record."""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from broker.store.models import AuditEvent


def record_event(session: Session, actor: str, action: str, entity_type: str,
                 entity_id: int | str, **detail: Any) -> AuditEvent:
    """Add an audit event to the session's transaction (committed with the change it describes)."""
    event = AuditEvent(actor=actor, action=action, entity_type=entity_type,
                       entity_id=str(entity_id), detail=detail)
    session.add(event)
    return event
