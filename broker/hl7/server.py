"""The asyncio MLLP listener: frames in, ACKs out, one connection per sender session."""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import time
from typing import Awaitable, Callable

from broker.config import Hl7Settings
from broker.hl7 import ack
from broker.hl7.intake import Outcome
from broker.hl7.mllp import MessageTooLarge, MllpFramingError, MllpReader, frame
from broker.metrics import observe_ack

log = logging.getLogger(__name__)
# Stores one message and returns its outcome once the transaction committed (IntakeWriter.store).
Store = Callable[[bytes, str], Awaitable[Outcome]]


def tls_context(settings: Hl7Settings) -> ssl.SSLContext | None:
    """The server TLS context when a certificate is configured; client certificates when a CA is."""
    if not settings.tls_cert_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file or None)
    if settings.tls_ca_file:
        context.load_verify_locations(settings.tls_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def peer_allowed(address: str, allowed: tuple[str, ...]) -> bool:
    """True when `allowed` is empty or the address is in one of its addresses / networks."""
    if not allowed:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(entry, strict=False) for entry in allowed)


class MllpServer:
    """Serves MLLP on one address; every message goes to `store` (the intake writer)."""

    def __init__(self, store: Store, settings: Hl7Settings) -> None:
        self._store = store
        self._settings = settings
        self._server: asyncio.Server | None = None
        self._connections = 0
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> tuple[str, int]:
        """Bind and start serving; returns the bound address (port 0 picks a free one)."""
        self._server = await asyncio.start_server(
            self._serve_connection, self._settings.host, self._settings.port,
            ssl=tls_context(self._settings))
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def close(self) -> None:
        """Stop listening and end open connections (a message being stored still commits)."""
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

    async def _serve_connection(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        address, port = writer.get_extra_info("peername")[:2]
        peer = f"{address}:{port}"
        if not peer_allowed(address, self._settings.allowed_peers):
            log.warning("mllp %s: address not in hl7.allowed_peers; connection closed", peer)
            writer.close()
            return
        if self._connections >= self._settings.max_connections:
            log.warning("mllp %s: refused, %d connections already open", peer, self._connections)
            writer.close()
            return
        self._connections += 1
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self._serve_frames(MllpReader(reader, self._settings.max_message_bytes),
                                     writer, peer)
        finally:
            self._connections -= 1
            self._tasks.discard(task)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError, ssl.SSLError):
                pass

    async def _serve_frames(self, reader: MllpReader, writer: asyncio.StreamWriter,
                            peer: str) -> None:
        while True:
            try:
                # asyncio.timeout, not wait_for: wait_for wraps every read in a new task.
                async with asyncio.timeout(self._settings.idle_timeout_seconds):
                    raw = await reader.read_frame()
            except MessageTooLarge as exc:
                # The oversized bytes are not stored (that is the point of the limit); the AR
                # answers its MSH-10 and the connection stays usable for the next frame.
                log.warning("mllp %s: %s; answered AR", peer, exc)
                writer.write(frame(_too_large_ack(exc)))
                await writer.drain()
                continue
            except MllpFramingError as exc:
                log.warning("mllp %s: not MLLP (%s); closing the connection", peer, exc)
                return
            except TimeoutError:
                log.info("mllp %s: idle for %ss; closing", peer, self._settings.idle_timeout_seconds)
                return
            except asyncio.IncompleteReadError:
                log.warning("mllp %s: connection closed in the middle of a message", peer)
                return
            except (ConnectionError, OSError, ssl.SSLError) as exc:
                log.info("mllp %s: connection lost (%s)", peer, exc)
                return
            if raw is None:
                return
            if reader.skipped_bytes:
                log.warning("mllp %s: %d bytes of garbage before a start block discarded", peer,
                            reader.skipped_bytes)
            # Returns only after the message's transaction committed.
            try:
                started = time.perf_counter()
                outcome = await self._store(raw, peer)
                observe_ack(raw, outcome.status, time.perf_counter() - started)
            except Exception as exc:  # noqa: BLE001 - the store failed: no ACK may leave
                log.error("mllp %s: message could not be stored (%s); no ACK sent, closing so "
                          "the sender resends", peer, exc)
                return
            try:
                writer.write(frame(outcome.ack))
                await writer.drain()
            except (ConnectionError, OSError) as exc:
                log.warning("mllp %s: could not send ACK for message #%s (%s); it is stored",
                            peer, outcome.message_id, exc)
                return


def _too_large_ack(exc: MessageTooLarge) -> bytes:
    return ack.fallback_ack(exc.head, str(exc), "AR", ack.ERR_APPLICATION)
