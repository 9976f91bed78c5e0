"""The EHR as a receiver of the broker's notifications, played by libraries nobody here wrote:
the `hl7` package's asyncio MLLP server (one persistent connection) and hl7apy's MLLPServer
(closes the connection after every message)."""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Callable

import hl7.mllp
from hl7apy.mllp import AbstractErrorHandler, AbstractHandler, MLLPServer

from broker.hl7.message import Message, parse

# What the EHR answers a message: ("AA", "") or ("AE", "why").
Answer = Callable[[Message], tuple[str, str]]


def accept(_: Message) -> tuple[str, str]:
    return "AA", ""


def ack_for(message: Message, code: str, text: str) -> bytes:
    """An ACK echoing MSH-10 in MSA-2, with an ERR segment when refused (HL7 v2.5.1 2.14.1)."""
    lines = [f"MSH|^~\\&|EHR|HOSP|BROKER|RAD|{time.strftime('%Y%m%d%H%M%S')}||ACK|"
             f"A{message.control_id}|P|2.5.1", f"MSA|{code}|{message.control_id}|{text}"]
    if code != "AA":
        lines.append(f"ERR||||E|||{text}")
    return ("\r".join(lines) + "\r").encode()


@dataclass
class Received:
    control_id: str
    message_type: str
    order_status: str  # ORC-5
    placer: str  # ORC-2.1
    message: Message


class _Recorder:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.received: list[Received] = []
        self._lock = threading.Lock()

    def record(self, raw: bytes) -> bytes:
        message = parse(raw)
        with self._lock:
            self.received.append(Received(message.control_id, message.message_type,
                                          message.get("ORC", 5), message.get("ORC", 2),
                                          message))
        return ack_for(message, *self.answer(message))

    def wait_for(self, count: int, timeout: float = 60.0) -> list[Received]:
        """The messages once at least `count` arrived (AssertionError after `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"EHR received {len(self.received)} of {count} messages: "
                             f"{[(r.message_type, r.order_status) for r in self.received]}")


class AsyncioEhr(_Recorder):
    """hl7.mllp.start_hl7_server on 127.0.0.1: keeps the connection, answers each message."""

    def __init__(self, port: int = 0, answer: Answer = accept) -> None:
        super().__init__(answer)
        self.port = port
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = None

    async def _client(self, reader, writer) -> None:
        self.connections += 1
        try:
            while not reader.at_eof():
                raw = await reader.readblock()
                writer.writeblock(self.record(raw))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _start(self) -> int:
        self._server = await hl7.mllp.start_hl7_server(self._client, "127.0.0.1", self.port)
        return self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    def start(self) -> "AsyncioEhr":
        """Listen (again, on the same port after stop())."""
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        """Stop listening; open connections are closed by the server's loop."""
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
            self._server = None

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def destination(self) -> str:
        return f"127.0.0.1:{self.port}"


class ClosingEhr(_Recorder):
    """hl7apy's MLLPServer: one message per connection, then it closes."""

    def __init__(self, answer: Answer = accept) -> None:
        super().__init__(answer)
        recorder = self

        class Reply(AbstractHandler):
            def reply(self):
                ack = recorder.record(self.incoming_message.encode("utf-8"))
                return "\x0b" + ack.decode() + "\x1c\r"

        class Error(AbstractErrorHandler):
            def reply(self):
                ack = recorder.record(self.incoming_message.encode("utf-8"))
                return "\x0b" + ack.decode() + "\x1c\r"

        handlers = {kind: (Reply,) for kind in ("ORM^O01", "OMI^O23^OMI_O23", "ORU^R01^ORU_R01")}
        handlers["ERR"] = (Error,)
        self._server = MLLPServer("127.0.0.1", 0, handlers)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def destination(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
