"""The EHR side: the `hl7` package's MLLP client over a real socket."""
from __future__ import annotations

from hl7.client import MLLPClient

from broker.hl7.message import Message, parse


def send(port: int, message: bytes) -> bytes:
    """Send one message and return the ACK bytes without MLLP framing."""
    with MLLPClient("127.0.0.1", port) as client:
        reply = client.send_message(message)
    return reply.strip(b"\x0b\x1c\r")


def send_and_read_ack(port: int, message: bytes) -> Message:
    """Send one message and return its ACK, parsed."""
    return parse(send(port, message))
