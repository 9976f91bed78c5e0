"""Never miss an order: a broker that was down, many orders at once, a subscription the server
put in error, a FHIR server restart; and never apply one twice."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import func, select

from broker.store.models import Order
from tests.fhir.conftest import subscription, wait_active, wait_for, wait_on_worklist, worklist
from tests.support.postgres import free_port
from tests.support.sekmet import OWN_TAG_SYSTEM, new_key, patient_resource, service_request


def _orders(sekmet, count: int, prefix: str, patients: int = 5) -> list[str]:
    """Create `count` ServiceRequests in parallel; their accession numbers."""
    people = [sekmet.create(patient_resource(new_key("M"))) for _ in range(patients)]
    start = datetime.now() + timedelta(hours=3)
    accessions = [f"{prefix}{n:04d}" for n in range(count)]

    def create(n: int) -> None:
        sekmet.create(service_request(people[n % patients]["id"], f"{prefix}P{n}",
                                      accessions[n], start + timedelta(minutes=n)))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(count)))
    return accessions


def _accessions_served(broker, prefix: str) -> list[str]:
    return [i.AccessionNumber for i in worklist(broker, f"{prefix}*")]


def test_orders_created_while_the_broker_was_down_all_appear_after_restart(make_broker, sekmet):
    web_port = free_port()  # the same callback URL after the restart
    broker = make_broker(poll_seconds=600.0, web_port=web_port)
    wait_active(broker)
    broker.stop()
    prefix = new_key("D")[:8]
    accessions = _orders(sekmet, 5, prefix, patients=2)
    # The server gives up on the unreachable broker after three failed deliveries.
    sub = wait_for(lambda: subscription(broker).get("status") == "error" and subscription(broker),
                   60, "the server putting the subscription in error")

    from broker.service import Broker
    # Deliveries the server was still retrying when the broker came back may put the
    # subscription in error once more: the watch (every poll_seconds) revives it again.
    again = Broker(replace(broker.settings, fhir=replace(broker.settings.fhir, poll_seconds=2.0)))
    again.start()
    try:
        wait_for(lambda: sorted(_accessions_served(again, prefix)) == accessions, 60,
                 "every order created while the broker was down")
        revived = wait_active(again)
        assert revived["id"] == sub["id"]  # updated, not duplicated
        assert len(sekmet.search("Subscription", _tag=f"{OWN_TAG_SYSTEM}|"
                                 f"{revived['meta']['tag'][0]['code']}")) == 1
        # Live again: the next order comes by notification.
        late = _orders(sekmet, 1, prefix + "L", patients=1)
        wait_on_worklist(again, late[0])
    finally:
        again.stop()


def test_200_orders_created_in_parallel_are_all_on_the_worklist_once(make_broker, sekmet):
    broker = make_broker(poll_seconds=5.0)
    wait_active(broker)
    prefix = new_key("B")[:8]
    accessions = _orders(sekmet, 200, prefix)
    wait_for(lambda: len(_accessions_served(broker, prefix)) >= 200, 120, "200 orders")
    served = _accessions_served(broker, prefix)
    assert sorted(served) == accessions  # each exactly once
    with broker.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Order).where(
            Order.accession_number.like(f"{prefix}%"))) == 200


def test_a_subscription_the_server_put_in_error_is_revived(make_broker, sekmet):
    broker = make_broker(poll_seconds=1.0)
    sub = wait_active(broker)
    sekmet.update({**sub, "status": "error", "error": "delivery failed (test)"})
    revived = wait_for(lambda: subscription(broker).get("status") == "active"
                       and int(subscription(broker)["meta"]["versionId"]) >
                       int(sub["meta"]["versionId"]) + 1 and subscription(broker), 30, "revival")
    assert revived["id"] == sub["id"]
    status = broker.fhir.status()
    assert int(status["revived"]) >= 1


def test_heartbeats_stopping_after_a_server_restart_is_not_fatal(make_broker, sekmet):
    broker = make_broker("backport", poll_seconds=2.0)
    wait_active(broker)
    sekmet.restart()  # its heartbeat thread does not come back
    patient = sekmet.create(patient_resource(new_key("M")))
    accession = new_key("A")
    sekmet.create(service_request(patient["id"], new_key("P"), accession,
                                  datetime.now() + timedelta(hours=1)))
    wait_on_worklist(broker, accession)


def test_silent_heartbeats_are_reported_once_and_catch_up_goes_on(make_broker, sekmet, caplog):
    from broker.store.fhir import set_state
    broker = make_broker("backport", poll_seconds=600.0)
    wait_active(broker)
    with broker.sessions.begin() as session:
        set_state(session, "last_heartbeat", "2020-01-01T00:00:00.000Z")
    broker.fhir.tick()
    broker.fhir.tick()
    assert caplog.text.count("no heartbeat since 2020-01-01T00:00:00.000Z") == 1
    assert broker.fhir.status()["last_catch_up"] > "2020"
