"""Forwarding MPPS to DICOM peers: a real second pynetdicom MPPS SCP, and a peer that is down."""
from __future__ import annotations

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import ModalityPerformedProcedureStep
from sqlalchemy import select

from broker.config import DicomSettings, MppsSettings, WorklistSettings
from broker.dicom.forward import forward_due
from broker.dicom.scp import start_dicom_server
from broker.store.models import Notification
from tests.support.modality import Modality, finished, in_progress, scheduled_item
from tests.support.postgres import free_port
from tests.support.schedule import schedule


class Peer:
    """A PACS/RIS side MPPS SCP that records what it receives, answering `status`."""

    def __init__(self, title: str, port: int = 0, status: int = 0x0000) -> None:
        self.received: list[tuple[str, str, str]] = []
        self.status = status
        ae = AE(ae_title=title)
        ae.add_supported_context(ModalityPerformedProcedureStep)
        self.server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[
            (evt.EVT_N_CREATE, self._create), (evt.EVT_N_SET, self._set)])
        self.port = self.server.server_address[1]

    def _create(self, event):
        ds = event.attribute_list
        self.received.append(("N-CREATE", str(event.request.AffectedSOPInstanceUID),
                              ds.PerformedProcedureStepStatus))
        return self.status, None

    def _set(self, event):
        ds = event.modification_list
        self.received.append(("N-SET", str(event.request.RequestedSOPInstanceUID),
                              ds.get("PerformedProcedureStepStatus", "")))
        return self.status, None

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def peers():
    started: list[Peer] = []

    def start(title, port=0, status=0):
        peer = Peer(title, port, status)
        started.append(peer)
        return peer
    yield start
    for peer in started:
        peer.stop()


def _broker(sessions, settings):
    return start_dicom_server(DicomSettings(port=0), WorklistSettings(), sessions,
                              mpps_settings=settings)


def test_every_mpps_message_reaches_the_peers_in_order_and_a_down_peer_is_retried(sessions, peers):
    pacs = peers("PACS")
    ris_port = free_port()  # nothing listens here yet
    settings = MppsSettings(forward_to=(f"PACS@127.0.0.1:{pacs.port}", f"RIS@127.0.0.1:{ris_port}"),
                            retry_base_seconds=0)
    order = schedule(sessions, 1)
    server = _broker(sessions, settings)
    try:
        with Modality(server.server_address[1]) as ct:
            _, uid = ct.create(in_progress([scheduled_item(order["study"], order["accession"])]))
            assert ct.set(finished(), uid).Status == 0
    finally:
        server.shutdown()

    assert forward_due(sessions, settings) == 1   # PACS N-CREATE; its N-SET waits; RIS is down
    assert forward_due(sessions, settings) == 1   # PACS N-SET
    assert pacs.received == [("N-CREATE", uid, "IN PROGRESS"), ("N-SET", uid, "COMPLETED")]
    with sessions() as session:
        ris = session.scalars(select(Notification).where(Notification.destination.like("RIS%"))
                              .order_by(Notification.id)).all()
        assert [(r.kind, r.status) for r in ris] == [("mpps-n-create", "PENDING"),
                                                     ("mpps-n-set", "PENDING")]
        assert ris[0].attempts == 2 and "association" in ris[0].last_error
        assert ris[1].attempts == 0  # never sent ahead of its N-CREATE

    ris = peers("RIS", port=ris_port)
    assert forward_due(sessions, settings) == 1
    assert forward_due(sessions, settings) == 1
    assert ris.received == [("N-CREATE", uid, "IN PROGRESS"), ("N-SET", uid, "COMPLETED")]
    with sessions() as session:
        assert {r.status for r in session.scalars(select(Notification))} == {"DELIVERED"}


def test_a_peer_refusing_the_message_leaves_it_failed_with_the_reason(sessions, peers):
    pacs = peers("PACS", status=0x0110)
    settings = MppsSettings(forward_to=(f"PACS@127.0.0.1:{pacs.port}",), retry_base_seconds=0)
    order = schedule(sessions, 2)
    server = _broker(sessions, settings)
    try:
        with Modality(server.server_address[1]) as ct:
            ct.create(in_progress([scheduled_item(order["study"], order["accession"])]))
    finally:
        server.shutdown()
    assert forward_due(sessions, settings) == 0
    with sessions() as session:
        row = session.scalars(select(Notification)).one()
        assert (row.status, row.attempts) == ("FAILED", 1)
        assert "0x0110" in row.last_error


def test_without_peers_nothing_is_queued(sessions):
    order = schedule(sessions, 3)
    server = _broker(sessions, MppsSettings())
    try:
        with Modality(server.server_address[1]) as ct:
            ct.create(in_progress([scheduled_item(order["study"], order["accession"])]))
    finally:
        server.shutdown()
    with sessions() as session:
        assert session.scalars(select(Notification)).all() == []
