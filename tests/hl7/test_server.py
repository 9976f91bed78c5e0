"""The MLLP listener over real sockets: limits, timeouts, allowlists, TLS, non-MLLP input."""
from __future__ import annotations

import socket
import ssl
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from hl7.client import MLLPClient
from sqlalchemy import func, select

from broker.hl7.message import parse
from broker.hl7.mllp import frame
from broker.service import Broker
from broker.store.models import InboundMessage
from tests.conftest import make_test_settings

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "hl7" / "orm_o01_v231_utf8.hl7"


def _start(tmp_path: Path, **hl7) -> Broker:
    settings = make_test_settings(tmp_path)
    settings = replace(settings, hl7=replace(settings.hl7, **hl7),
                       dicom=replace(settings.dicom, enabled=False),
                       web=replace(settings.web, enabled=False))
    running = Broker(settings)
    running.start()
    return running


@pytest.fixture
def start(tmp_path):
    started = []

    def _go(**hl7) -> Broker:
        started.append(_start(tmp_path, **hl7))
        return started[-1]
    yield _go
    for running in started:
        running.stop()


def _read_frame(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\x1c\r"):
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    return data.strip(b"\x0b\x1c\r")


def _closed(sock: socket.socket) -> bool:
    """True when the server has closed the connection (end of stream or reset)."""
    try:
        return sock.recv(10) == b""
    except ConnectionResetError:
        return True


def _message(control_id: str, size: int = 0) -> bytes:
    raw = FIXTURE.read_bytes().replace(b"MSG00042", control_id.encode())
    raw = raw.replace(b"ORD778", b"O" + control_id.encode()).replace(b"ACC778", control_id.encode())
    return raw + (b"\rNTE|1||" + b"x" * size if size else b"")


def test_oversized_message_is_answered_ar_and_the_connection_stays_usable(start):
    running = start(max_message_bytes=4096)
    with socket.create_connection(("127.0.0.1", running.listeners.hl7[1]), timeout=10) as sock:
        sock.sendall(frame(_message("BIG1", size=10000)))
        ack = parse(_read_frame(sock))
        assert (ack.get("MSA", 1), ack.get("MSA", 2)) == ("AR", "BIG1")
        sock.sendall(frame(_message("SMALL1")))
        ack = parse(_read_frame(sock))
        assert (ack.get("MSA", 1), ack.get("MSA", 2)) == ("AA", "SMALL1")


def test_idle_connection_is_closed(start):
    running = start(idle_timeout_seconds=0.3)
    with socket.create_connection(("127.0.0.1", running.listeners.hl7[1]), timeout=10) as sock:
        assert _closed(sock)  # the server closed it: recv returns end of stream


def test_connections_beyond_the_maximum_are_refused_others_keep_working(start):
    running = start(max_connections=1)
    port = running.listeners.hl7[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as first:
        first.sendall(frame(_message("C1")))
        assert parse(_read_frame(first)).get("MSA", 1) == "AA"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as second:
            assert _closed(second)
        first.sendall(frame(_message("C2")))
        assert parse(_read_frame(first)).get("MSA", 1) == "AA"


def test_non_mllp_input_closes_that_connection_only(start):
    running = start()
    port = running.listeners.hl7[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as bad, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as good:
        bad.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _closed(bad)
        good.sendall(frame(_message("G1")))
        assert parse(_read_frame(good)).get("MSA", 1) == "AA"


def test_garbage_before_a_start_block_is_skipped_and_the_message_answered(start):
    running = start()
    with socket.create_connection(("127.0.0.1", running.listeners.hl7[1]), timeout=10) as sock:
        sock.sendall(b"\x00\xffleftover bytes" + frame(_message("J1")))
        assert parse(_read_frame(sock)).get("MSA", 2) == "J1"
        sock.sendall(frame(_message("J2")))  # the connection stays usable
        assert parse(_read_frame(sock)).get("MSA", 2) == "J2"


def test_peer_not_in_allowlist_is_disconnected(start):
    running = start(allowed_peers=("10.99.0.0/16",))
    with socket.create_connection(("127.0.0.1", running.listeners.hl7[1]), timeout=10) as sock:
        sock.sendall(frame(_message("P1")))
        assert _closed(sock)
    with running.sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboundMessage)) == 0


@pytest.mark.parametrize("allowed, expected", [
    (("CERNER",), "AA"),                 # by MSH-3
    (("CERNER|STMARYS",), "AA"),         # by MSH-3|MSH-4
    (("CERNER|OTHER",), "AR"),
    (("EPIC",), "AR"),
])
def test_sender_allowlist_by_msh3_msh4(start, allowed, expected):
    running = start(allowed_senders=allowed)
    with MLLPClient("127.0.0.1", running.listeners.hl7[1]) as client:
        ack = parse(client.send_message(_message("S1")).strip(b"\x0b\x1c\r"))
    assert ack.get("MSA", 1) == expected
    with running.sessions() as session:  # stored either way: nothing received is dropped
        assert session.scalar(select(InboundMessage.status)) == (
            "PROCESSED" if expected == "AA" else "REJECTED")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


def test_tls_listener_serves_mllp_over_tls(start, certificate):
    cert, key = certificate
    running = start(tls_cert_file=cert, tls_key_file=key)
    context = ssl.create_default_context(cafile=cert)
    with socket.create_connection(("127.0.0.1", running.listeners.hl7[1]), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(frame(_message("T1")))
            ack = parse(_read_frame(sock))
    assert (ack.get("MSA", 1), ack.get("MSA", 2)) == ("AA", "T1")
    with socket.create_connection(("127.0.0.1", running.listeners.hl7[1]), timeout=10) as plain:
        plain.sendall(frame(_message("T2")))  # plain MLLP to a TLS port: no ACK, closed
        assert _read_frame(plain) == b""


def test_no_ack_leaves_when_the_message_could_not_be_stored(start):
    running = start()
    with running.engine.begin() as conn:  # the store breaks: inserts into it now fail
        conn.exec_driver_sql("ALTER TABLE inbound_message RENAME TO inbound_message_gone")
    with socket.create_connection(("127.0.0.1", running.listeners.hl7[1]), timeout=10) as sock:
        sock.sendall(frame(_message("LOST1")))
        assert _read_frame(sock) == b""  # closed without an ACK: the sender must resend
