"""MLLP framing (HL7 v2 minimal lower layer protocol): <VT> message <FS><CR>."""
from __future__ import annotations

import asyncio

START = b"\x0b"
END = b"\x1c\x0d"


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

    def __init__(self, reader: asyncio.StreamReader, max_bytes: int) -> None:
        self._reader = reader
        self._max = max_bytes
        self._buffer = bytearray()

    async def read_frame(self) -> bytes | None:
        """The next message without block characters; None at a clean end of stream.

        Bytes before a start block are skipped (senders emit stray CR/LF); anything else there
        is a framing error. An oversized frame is consumed to its end, then MessageTooLarge.
        """
        while True:
            start = self._buffer.find(START)
            if start >= 0:
                junk = bytes(self._buffer[:start])
                del self._buffer[:start + 1]
                if junk.strip(b"\r\n\t \x00"):
                    raise MllpFramingError(f"{len(junk)} bytes before start block")
                return await self._read_body()
            if self._buffer.strip(b"\r\n\t \x00"):
                raise MllpFramingError("data without a start block")
            self._buffer.clear()
            if not await self._fill():
                return None

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
