"""The asyncio MLLP listener: frames in, ACKs out, one connection per sender session."""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor

from broker.config import Hl7Settings
from broker.hl7 import ack
from broker.hl7.intake import Hl7Intake
from broker.hl7.message import Hl7ParseError, parse
from broker.hl7.mllp import MessageTooLarge, MllpFramingError, MllpReader, frame

log = logging.getLogger(__name__)


class MllpServer:
    """Serves MLLP on one address; database work runs on `executor`, off the event loop."""

    def __init__(self, intake: Hl7Intake, settings: Hl7Settings, executor: Executor) -> None:
        self._intake = intake
        self._settings = settings
        self._executor = executor
        self._server: asyncio.Server | None = None
        self._connections = 0

    async def start(self) -> tuple[str, int]:
        """Bind and start serving; returns the bound address (port 0 picks a free one)."""
        self._server = await asyncio.start_server(
            self._serve_connection, self._settings.host, self._settings.port)
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve_connection(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        peer = "%s:%s" % writer.get_extra_info("peername")[:2]
        if self._connections >= self._settings.max_connections:
            log.warning("mllp %s: refused, %d connections already open", peer, self._connections)
            writer.close()
            return
        self._connections += 1
        try:
            await self._serve_frames(MllpReader(reader, self._settings.max_message_bytes),
                                     writer, peer)
        finally:
            self._connections -= 1
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def _serve_frames(self, reader: MllpReader, writer: asyncio.StreamWriter,
                            peer: str) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                raw = await asyncio.wait_for(reader.read_frame(),
                                             self._settings.idle_timeout_seconds)
            except MessageTooLarge as exc:
                log.warning("mllp %s: %s; answered AR", peer, exc)
                writer.write(frame(_too_large_ack(exc)))
                await writer.drain()
                continue
            except MllpFramingError as exc:
                log.warning("mllp %s: not MLLP (%s); closing the connection", peer, exc)
                return
            except asyncio.TimeoutError:
                log.info("mllp %s: idle for %ss; closing", peer, self._settings.idle_timeout_seconds)
                return
            except asyncio.IncompleteReadError:
                log.warning("mllp %s: connection closed in the middle of a message", peer)
                return
            except (ConnectionError, OSError) as exc:
                log.info("mllp %s: connection lost (%s)", peer, exc)
                return
            if raw is None:
                return
            outcome = await loop.run_in_executor(self._executor, self._intake.receive, raw, peer)
            try:
                writer.write(frame(outcome.ack))
                await writer.drain()
            except (ConnectionError, OSError) as exc:
                log.warning("mllp %s: could not send ACK for message #%s (%s); it is stored",
                            peer, outcome.message_id, exc)
                return


def _too_large_ack(exc: MessageTooLarge) -> bytes:
    try:
        header = ack.AckHeader.of(parse(exc.head.split(b"\r", 1)[0]))
    except Hl7ParseError:
        header = ack.AckHeader()
    return ack.build_ack(header, "AR", str(exc), ack.ERR_APPLICATION)
