"""Delivery as the EHR sees it: down for a while, refusing a message, the broker killed mid-send."""
import os
import signal
import time
from dataclasses import replace

from sqlalchemy import select

from broker.cli import main
from broker.config import NotifySettings
from broker.service import Broker
from broker.store.db import make_engine, make_session_factory
from broker.store.models import Notification
from tests.conftest import make_test_settings
from tests.notify.chain import order_and_worklist, order_message, perform, reference_of
from tests.support.dcmtk import findscu
from tests.support.ehr import AsyncioEhr
from tests.support.hl7client import send
from tests.support.modality import Modality, in_progress
from tests.support.orthanc import free_port
from tests.support.serve import ServeProcess


def _broker(tmp_path, destination, **notify):
    settings = make_test_settings(tmp_path)
    settings = replace(settings, notify=NotifySettings(
        hl7_to=(destination,), trigger="mpps", interval_seconds=0.1, retry_base_seconds=0.2,
        retry_max_seconds=0.5, **notify))
    broker = Broker(settings)
    broker.start()
    return broker


def _rows(sessions):
    with sessions() as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


def _dead(sessions):
    return [r for r in _rows(sessions) if r.status == "DEAD"]


def _cli_config(tmp_path):
    """A config file naming the running broker's data folder, for `broker outbox` commands."""
    config = tmp_path / "broker.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    return config


def _wait(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met")


def test_an_ehr_down_for_a_while_gets_everything_in_order_when_back(tmp_path):
    port = free_port()
    ehr = AsyncioEhr(port=port)  # not listening yet
    broker = _broker(tmp_path, f"127.0.0.1:{port}")
    try:
        perform(broker, order_and_worklist(broker), images=2)
        # Each of the three has been tried and refused at least once... or waits behind one.
        _wait(lambda: any(r.attempts >= 2 and r.last_error for r in _rows(broker.sessions)))
        assert all(r.status == "PENDING" for r in _rows(broker.sessions))
        ehr.start()
        received = ehr.wait_for(3)
        _wait(lambda: all(r.status == "DELIVERED" for r in _rows(broker.sessions)))
    finally:
        broker.stop()
        ehr.close()
    assert [(r.message_type, r.order_status) for r in received] == [
        ("ORM^O01", "IP"), ("ORM^O01", "CM"), ("ORU^R01", "CM")]


def test_an_ae_answer_is_dead_at_once_and_sent_again_by_command(tmp_path):
    refuse = {"ORU^R01": True}

    def answer(message):
        if refuse.get(message.message_type):
            return "AE", "Unknown order for result"
        return "AA", ""

    ehr = AsyncioEhr(answer=answer).start()
    broker = _broker(tmp_path, ehr.destination)
    config = _cli_config(tmp_path)
    try:
        perform(broker, order_and_worklist(broker), images=2)
        ehr.wait_for(3)
        dead = _wait(lambda: _dead(broker.sessions))
        assert len(dead) == 1 and dead[0].attempts == 1  # no retries of a refusal
        assert "Unknown order for result" in dead[0].last_error
        refuse["ORU^R01"] = False
        assert main(["outbox", "retry", str(dead[0].id), "--config", str(config)]) == 0
        received = ehr.wait_for(4)
        _wait(lambda: all(r.status == "DELIVERED" for r in _rows(broker.sessions)))
    finally:
        broker.stop()
        ehr.close()
    assert received[3].control_id == received[2].control_id  # the same message, sent again
    assert main(["outbox", "retry", "--dead", "--config", str(config)]) == 0


def test_a_refused_status_holds_back_the_rest_of_its_order_until_discarded(tmp_path, capsys):
    def answer(message):
        if message.message_type == "ORM^O01" and message.get("ORC", 5) == "IP":
            return "AE", "Order not in progress state"
        return "AA", ""

    ehr = AsyncioEhr(answer=answer).start()
    broker = _broker(tmp_path, ehr.destination)
    config = _cli_config(tmp_path)
    try:
        perform(broker, order_and_worklist(broker), images=2)
        ehr.wait_for(1)
        dead = _wait(lambda: _dead(broker.sessions))
        _wait(lambda: len(_rows(broker.sessions)) == 3)
        time.sleep(1.0)  # several delivery runs: nothing may overtake the refused IP
        assert [r.message_type for r in ehr.received] == ["ORM^O01"]
        capsys.readouterr()
        assert main(["outbox", "list", "--status", "held", "--config", str(config)]) == 0
        held = capsys.readouterr().out.splitlines()
        assert len(held) == 2 and all(f"held by #{dead[0].id}" in line for line in held)
        assert main(["outbox", "discard", str(dead[0].id), "--config", str(config)]) == 0
        received = ehr.wait_for(3)
        _wait(lambda: [r.status for r in _rows(broker.sessions)]
              == ["DISCARDED", "DELIVERED", "DELIVERED"])
    finally:
        broker.stop()
        ehr.close()
    assert [(r.message_type, r.order_status) for r in received] == [
        ("ORM^O01", "IP"), ("ORM^O01", "CM"), ("ORU^R01", "CM")]


def test_a_crash_between_send_and_mark_sends_once_more_with_the_same_control_id(tmp_path):
    data, url = tmp_path / "data", f"sqlite:///{tmp_path / 'data' / 'broker.db'}"
    first = {}

    def kill_the_broker_first(message):
        if "id" not in first:  # sent, not yet marked: the broker dies before it reads the ACK
            first["id"] = message.control_id
            os.kill(first["pid"], signal.SIGKILL)
        return "AA", ""

    ehr = AsyncioEhr(answer=kill_the_broker_first).start()
    env = {"BROKER_NOTIFY_HL7_TO": ehr.destination, "BROKER_NOTIFY_TRIGGER": "mpps",
           "BROKER_NOTIFY_INTERVAL_SECONDS": "0.1", "BROKER_NOTIFY_LEASE_SECONDS": "1"}
    serve = ServeProcess(data, url, env)
    first["pid"] = serve.process.pid
    try:
        send(serve.hl7_port, order_message(901))
        (item,) = findscu(serve.dicom_port, ["AccessionNumber=ACC901", "StudyInstanceUID",
                                             "RequestedProcedureID", "PatientID", "PatientName",
                                             "ScheduledProcedureStepSequence[0].ScheduledProcedureStepID"],
                          calling="CT1")
        with Modality(serve.dicom_port, calling="CT1") as ct:
            created, _ = ct.create(in_progress([reference_of(item)], patient_id=item.PatientID))
            assert created.Status == 0x0000
        ehr.wait_for(1)
        serve.process.wait(30)
        serve.kill()
        again = ServeProcess(data, url, env)
        try:
            engine = make_engine(url)
            sessions = make_session_factory(engine)
            _wait(lambda: all(r.status == "DELIVERED" for r in _rows(sessions)))
            engine.dispose()
        finally:
            again.stop()
    finally:
        ehr.close()
    assert [r.control_id for r in ehr.received] == [first["id"], first["id"]]


def test_an_ehr_that_never_answers_is_retried_not_given_up(tmp_path):
    import socket
    import threading
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def swallow():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)  # read nothing, answer nothing

    threading.Thread(target=swallow, daemon=True).start()
    broker = _broker(tmp_path, f"127.0.0.1:{listener.getsockname()[1]}", ack_timeout_seconds=0.3)
    try:
        perform(broker, order_and_worklist(broker), images=1)
        row = _wait(lambda: next((r for r in _rows(broker.sessions) if r.attempts >= 2), None))
    finally:
        broker.stop()
        listener.close()
        for conn in held:
            conn.close()
    assert row.status == "PENDING" and "no ACK" in row.last_error
