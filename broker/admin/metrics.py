"""/metrics in the Prometheus text format: the process's counters and histograms, and gauges
read from the database at scrape time (so every process of a cluster reports the same)."""
from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from broker.admin.auth import sessions
from broker.admin.outbox_rows import oldest_pending_age, outbox_depth
from broker.metrics import REGISTRY
from broker.store.models import MatchCandidate, PerformedStep

bp = Blueprint("metrics", __name__)


class StoreGauges:
    """A collector that reads the queue, the outbox and MPPS counts when scraped."""

    def __init__(self, session_factory) -> None:
        self._sessions = session_factory

    def collect(self):
        with self._sessions() as session:
            open_queue = session.scalar(select(func.count()).select_from(MatchCandidate)
                                        .where(MatchCandidate.status == "OPEN"))
            depth = outbox_depth(session)
            age = oldest_pending_age(session)
            mpps = dict(session.execute(select(PerformedStep.status, func.count())
                                        .group_by(PerformedStep.status)).all())
        yield GaugeMetricFamily("broker_match_queue_open", "Open entries of the patient match "
                                "review queue", value=open_queue or 0)
        outbox = GaugeMetricFamily("broker_outbox_depth", "Notifications not delivered, by status",
                                   labels=["status"])
        for status in ("PENDING", "FAILED", "DEAD"):
            outbox.add_metric([status], depth.get(status, 0))
        yield outbox
        yield GaugeMetricFamily("broker_outbox_oldest_pending_seconds", "Age of the oldest "
                                "notification waiting to be delivered", value=age)
        performed = GaugeMetricFamily("broker_mpps_performed_steps", "Performed procedure "
                                      "steps stored, by status", labels=["status"])
        for status, count in sorted(mpps.items()):
            performed.add_metric([status], count)
        yield performed


@bp.get("/metrics")
def metrics():
    """Process instruments, then the store's gauges (two registries, distinct names)."""
    gauges = CollectorRegistry(auto_describe=False)
    gauges.register(StoreGauges(sessions()))
    body = generate_latest(REGISTRY) + generate_latest(gauges)
    return Response(body, mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                    headers={"Content-Type": CONTENT_TYPE_LATEST})
