"""Two broker processes on one PostgreSQL database share one Subscription and apply each order
once (the catch-up and subscription upkeep take a database lock; versions are locked rows)."""
from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import func, select

from broker.service import Broker
from broker.store.models import Order
from tests.conftest import make_test_settings
from tests.fhir.conftest import fhir_settings, wait_active, wait_for, worklist
from tests.fhir.test_reliability import _orders
from tests.support.postgres import free_port
from tests.support.sekmet import OWN_TAG_SYSTEM, new_key

pytestmark = pytest.mark.postgres


def test_two_instances_one_subscription_each_order_once(postgres, sekmet, tmp_path):
    url = postgres.create_database(f"broker_fhir_{new_key('x').lower()}")
    first_port, second_port = free_port(), free_port()
    # Behind a load balancer both would give its URL; here the first instance is "the" URL.
    fhir = fhir_settings(sekmet, poll_seconds=1.0,
                         callback_url=f"http://127.0.0.1:{first_port}/fhir/notify")
    brokers = []
    for port, folder in ((first_port, "a"), (second_port, "b")):
        settings = make_test_settings(tmp_path / folder, url, fhir=fhir)
        broker = Broker(replace(settings, web=replace(settings.web, port=port)))
        broker.start()
        brokers.append(broker)
    try:
        sub = wait_active(brokers[0])
        prefix = new_key("G")[:8]
        accessions = _orders(sekmet, 30, prefix)
        for broker in brokers:
            wait_for(lambda: sorted(i.AccessionNumber for i in worklist(broker, f"{prefix}*"))
                     == accessions, 60, "30 orders on the worklist")
        with brokers[0].sessions() as session:
            assert session.scalar(select(func.count()).select_from(Order).where(
                Order.accession_number.like(f"{prefix}%"))) == 30
        tag = sub["meta"]["tag"][0]["code"]
        assert len(sekmet.search("Subscription", _tag=f"{OWN_TAG_SYSTEM}|{tag}")) == 1
    finally:
        for broker in brokers:
            broker.stop()
        sekmet.switch_off_subscriptions()
