"""Sending HL7 messages to EHR destinations over persistent MLLP connections.

The `hl7` package's asyncio streams frame the blocks (HL7 v2.5.1 Appendix C, MLLP); one
connection per destination is kept open between messages on one event-loop thread and opened
again when the peer has closed it (some EHRs close after every message).
"""
from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass

from hl7.mllp import open_hl7_connection

from broker.config import parse_hostport
from broker.hl7.message import Hl7ParseError, parse, read_header

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """One send's outcome; permanent: the peer refused it and a retry would be refused too."""
    ok: bool
    error: str = ""
    permanent: bool = False


def read_ack(ack: bytes, control_id: str) -> Delivery:
    """MSA-1 AA/CA delivered; AE/AR/CE/CR refused with MSA-3 and the ERR text (HL7 2.9.2)."""
    try:
        message = parse(ack)
    except Hl7ParseError as exc:
        return Delivery(False, f"unreadable ACK: {exc}")
    code, acked = message.get("MSA", 1), message.get("MSA", 2)
    if acked != control_id:
        return Delivery(False, f"ACK names control id {acked!r}, sent {control_id!r}")
    if code in ("AA", "CA"):
        return Delivery(True)
    texts = [message.get("MSA", 3)]
    for err in message.segments_named("ERR"):
        # ERR-8 user message and ERR-3 code (v2.5), or ERR-1 (v2.3.1).
        texts += [message.field(err, 8), message.field(err, 3, comp=2), message.field(err, 1, comp=4)]
    detail = "; ".join(dict.fromkeys(t for t in texts if t))
    return Delivery(False, f"{code or 'no MSA-1'}: {detail}".rstrip(": "),
                    permanent=code in ("AE", "AR", "CE", "CR"))


class MllpSender:
    """Persistent MLLP connections on a private event loop; send_batch is called from any thread."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._connections: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        self._thread = threading.Thread(target=self._loop.run_forever, name="mllp-out",
                                        daemon=True)
        self._thread.start()

    def send_batch(self, destination: str, payloads: list[bytes]) -> list[Delivery]:
        """Send each message in turn, waiting for its ACK; after a connection failure the rest
        are not tried (they are retried later, in order)."""
        future = asyncio.run_coroutine_threadsafe(self._send_all(destination, payloads),
                                                  self._loop)
        return future.result()

    def close(self) -> None:
        """Close every connection and stop the loop thread."""
        if not self._loop.is_running():
            return
        asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _send_all(self, destination: str, payloads: list[bytes]) -> list[Delivery]:
        results: list[Delivery] = []
        for payload in payloads:
            if results and not results[-1].ok and not results[-1].permanent:
                results.append(Delivery(False, f"not sent: {results[-1].error}"))
                continue
            results.append(await self._send_one(destination, payload))
        return results

    async def _send_one(self, destination: str, payload: bytes) -> Delivery:
        header = read_header(payload)
        control_id = header.control_id if header else ""
        for _ in range(2):
            fresh = destination not in self._connections
            try:
                reader, writer = await self._connection(destination)
            except (OSError, asyncio.TimeoutError) as exc:
                return Delivery(False, f"cannot connect to {destination}: {exc or 'timeout'}")
            try:
                writer.writeblock(payload)
                await writer.drain()
                async with asyncio.timeout(self.timeout):  # no task per message, as wait_for has
                    ack = await reader.readblock()
            except asyncio.TimeoutError:
                await self._drop(destination)
                return Delivery(False, f"no ACK from {destination} within {self.timeout:g} s")
            except (OSError, EOFError, asyncio.IncompleteReadError) as exc:
                await self._drop(destination)
                if fresh:
                    return Delivery(False, f"{destination} closed the connection: {exc}")
                continue  # a kept connection the peer had closed: once more on a new one
            except Exception as exc:  # noqa: BLE001 - a malformed answer block
                await self._drop(destination)
                return Delivery(False, f"bad answer from {destination}: {exc}")
            return read_ack(ack, control_id)
        return Delivery(False, f"{destination} closed the connection")

    async def _connection(self, destination: str):
        kept = self._connections.get(destination)
        if kept is not None and not kept[0].at_eof():
            return kept
        if kept is not None:
            await self._drop(destination)
        address = parse_hostport(destination)
        if address is None:
            raise OSError(f"bad destination {destination!r}")
        connection = await asyncio.wait_for(open_hl7_connection(*address), self.timeout)
        self._connections[destination] = connection
        log.debug("mllp out: connected to %s", destination)
        return connection

    async def _drop(self, destination: str) -> None:
        kept = self._connections.pop(destination, None)
        if kept is not None:
            kept[1].close()
            try:
                await kept[1].wait_closed()
            except OSError:
                pass

    async def _close_all(self) -> None:
        for destination in list(self._connections):
            await self._drop(destination)
