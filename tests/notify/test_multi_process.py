"""Two `broker serve` processes on one PostgreSQL share the outbox: each notification reaches
the EHR exactly once, and the messages of one order in the order they were queued."""
import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from broker.notify.messages import new_control_id
from broker.notify.outbox import enqueue
from broker.notify.runtime import site_templates
from broker.notify.triggers import HL7_KIND
from broker.config import load_settings
from broker.store.db import make_engine, make_session_factory
from broker.store.migrate import upgrade
from broker.store.models import Notification
from tests.support.ehr import AsyncioEhr
from tests.support.serve import ServeProcess

pytestmark = pytest.mark.postgres
ORDERS, PER_ORDER = 40, 5


def test_two_processes_deliver_each_notification_once(tmp_path, postgres):
    url = postgres.create_database("broker_notify_two")
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    ehr = AsyncioEhr().start()
    env = {"BROKER_NOTIFY_HL7_TO": ehr.destination, "BROKER_NOTIFY_INTERVAL_SECONDS": "0.05",
           "BROKER_NOTIFY_BATCH_SIZE": "10", "BROKER_HL7_ENABLED": "false"}
    first = ServeProcess(tmp_path / "a", url, env)
    second = ServeProcess(tmp_path / "b", url, env)
    templates = site_templates(load_settings(path=None, environ={}, default_file=None))
    sent = {}
    try:
        with sessions.begin() as session:
            for step in range(PER_ORDER):
                for order in range(ORDERS):
                    control_id = new_control_id()
                    sent[control_id] = (order, step)
                    payload = templates.render("orm_o01", {"control_id": control_id,
                                                           "placer_order_number": f"P{order}",
                                                           "order_status": "IP"})
                    enqueue(session, ehr.destination, HL7_KIND, payload, f"order:{order}")
        ehr.wait_for(len(sent), timeout=120)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with sessions() as session:
                if not session.scalar(select(func.count()).select_from(Notification)
                                      .where(Notification.status != "DELIVERED")):
                    break
            time.sleep(0.1)
    finally:
        first.stop()
        second.stop()
        ehr.close()
        engine.dispose()
    counts = Counter(r.control_id for r in ehr.received)
    assert set(counts) == set(sent) and set(counts.values()) == {1}
    steps_seen = {}
    for r in ehr.received:
        order, step = sent[r.control_id]
        steps_seen.setdefault(order, []).append(step)
    assert all(steps == list(range(PER_ORDER)) for steps in steps_seen.values())
