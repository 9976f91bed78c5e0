"""MLLP framing (HL7 v2 minimal lower layer protocol): <VT> message <FS><CR>."""
from __future__ import annotations

import asyncio

START = b"\x0b"
END = b"\x1c\x0d"
BLANK = b"\r\n\t \x00"
# Bytes that are not MLLP are tolerated before a start block only briefly: a sender's stray
# bytes are followed by a frame at once, while a stream that is not MLLP at all (an HTTP probe,
# a port scanner) sends no start block and must be closed, not waited on.
JUNK_LIMIT = 1024
JUNK_GRACE_SECONDS = 2.0


class MllpFramingError(ValueError):
    """The peer sent bytes that are not MLLP framed."""


class MessageTooLarge(ValueError):
    """A frame exceeded the configured maximum; the rest of it was discarded."""

    def __init__(self, text: str, head: bytes) -> None:
        super().__init__(text)
        self.head = head  # the first bytes, enough to answer MSH-10 in the AR


def frame(message: bytes) -> bytes:
    """Wrap one message in MLLP block characters."""
    return START + message + END


class MllpReader:
    """Reads whole MLLP frames from a stream, however the bytes are cut into packets."""

    def __init__(self, reader: asyncio.StreamReader, max_bytes: int,
                 junk_grace_seconds: float = JUNK_GRACE_SECONDS) -> None:
        self._reader = reader
        self._max = max_bytes
        self._grace = junk_grace_seconds
        self._buffer = bytearray()
        self.skipped_bytes = 0  # garbage discarded before the last frame, for the caller's log

    async def read_frame(self) -> bytes | None:
        """The next message without block characters; None at a clean end of stream.

        Garbage before a start block is discarded (counted in `skipped_bytes`); bytes that bring
        no start block (over JUNK_LIMIT, or nothing more within the grace period, or the end of
        the stream) are a framing error. An oversized frame is consumed, then MessageTooLarge.
        """
        self.skipped_bytes = 0
        while True:
            start = self._buffer.find(START)
            if start >= 0:
                if self._buffer[:start].strip(BLANK):
                    self.skipped_bytes = start
                del self._buffer[:start + 1]
                return await self._read_body()
            junk = len(self._buffer.strip(BLANK))
            if not junk:
                self._buffer.clear()
                if not await self._fill():
                    return None
                continue
            if junk > JUNK_LIMIT:
                raise MllpFramingError(f"{junk} bytes without a start block")
            try:
                more = await asyncio.wait_for(self._fill(), self._grace)
            except asyncio.TimeoutError:
                more = False
            if not more:
                raise MllpFramingError(f"{junk} bytes without a start block")

    async def _read_body(self) -> bytes:
        scanned = 0
        oversized = False
        head = b""
        while True:
            end = self._buffer.find(END, max(scanned - 1, 0))
            if end >= 0:
                body = bytes(self._buffer[:end])
                del self._buffer[:end + len(END)]
                if oversized or len(body) > self._max:
                    raise MessageTooLarge(f"message exceeds {self._max} bytes", head or body[:4096])
                return body
            if START in self._buffer:
                raise MllpFramingError("start block inside a message (missing end block)")
            scanned = len(self._buffer)
            if scanned > self._max + len(END):
                # Keep the tail only: the end block may straddle the next read.
                oversized = True
                head = head or bytes(self._buffer[:4096])
                del self._buffer[:-1]
                scanned = len(self._buffer)
            if not await self._fill():
                raise asyncio.IncompleteReadError(bytes(self._buffer), None)

    async def _fill(self) -> bool:
        chunk = await self._reader.read(65536)
        if not chunk:
            return False
        self._buffer += chunk
        return True
