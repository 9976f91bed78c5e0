"""Builders for patient-matching tests: orders for a patient, and the deferred search job."""
from __future__ import annotations

from datetime import datetime
from itertools import count

from sqlalchemy.orm import Session, sessionmaker

from broker.domain.records import OrderRequest, PatientRecord, ProcedureRequest, StepRequest
from broker.matching.searches import run_pending_searches
from broker.store.models import Order
from broker.store.orders import create_order
from broker.store.patients import matching_settings

_uids = (f"1.2.9.{n}" for n in count(1))


def create_order_for(session: Session, record: PatientRecord, placer: str,
                     source_channel: str = "") -> Order:
    """A one-step CT order for `record`, as the intake stores it."""
    request = OrderRequest(patient=record, placer_order_number=placer, accession_number=placer,
                           procedures=(ProcedureRequest("RP", steps=(
                               StepRequest("S", "CT", start=datetime(2026, 1, 1)),)),))
    return create_order(session, request, lambda: next(_uids), source_channel=source_channel)


def run_searches(sessions: sessionmaker[Session]) -> int:
    """Run the pending patient searches as the scheduled job does, with the sessions' settings."""
    with sessions() as session:
        settings = matching_settings(session)
    return run_pending_searches(sessions, settings)
