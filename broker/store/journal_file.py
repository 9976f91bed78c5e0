"""The on-disk format of the HL7 intake journal: segment files of checksummed records.

A segment starts with a 48-byte header naming the database it belongs to (a token the
database holds, see broker.hl7.journal_replay), so a journal is never replayed into another
database (a new file in its place). Each
record is a 30-byte header (magic, sequence number, receive time, lengths, CRC-32 of all the
rest) followed by the peer address and the raw message. A crash can tear the last record;
reading stops at the first record that is incomplete or fails its checksum.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator

SEGMENT_MAGIC = b"BRKHJ001"
_SEGMENT = struct.Struct(">8s36s4x")          # magic, the database's journal token, reserved
RECORD_MAGIC = b"HJR1"
_RECORD = struct.Struct(">4sQqHII")           # magic, seq, received (us), peer len, raw len, crc
_EPOCH = datetime(1970, 1, 1)
SUFFIX = ".hj"


@dataclass(frozen=True)
class JournalRecord:
    """One received frame as the journal holds it."""
    seq: int
    received_at: datetime    # naive UTC, as the store keeps it
    peer: str
    raw: bytes


def segment_header(token: str) -> bytes:
    return _SEGMENT.pack(SEGMENT_MAGIC, token.encode("ascii"))


def segment_name(first_seq: int) -> str:
    """Segment files sort by name in sequence order."""
    return f"{first_seq:020d}{SUFFIX}"


def encode_record(seq: int, received_at: datetime, peer: str, raw: bytes) -> bytes:
    """The bytes of one record."""
    peer_bytes = peer.encode("utf-8", "replace")[:1024]
    micros = (received_at - _EPOCH) // timedelta(microseconds=1)
    head = struct.pack(">4sQqHI", RECORD_MAGIC, seq, micros, len(peer_bytes), len(raw))
    crc = zlib.crc32(raw, zlib.crc32(peer_bytes, zlib.crc32(head)))
    return head + struct.pack(">I", crc) + peer_bytes + raw


def segment_files(folder: Path) -> list[Path]:
    """The folder's segments, oldest first."""
    return sorted(folder.glob(f"*{SUFFIX}"))


def segment_token(path: Path) -> str | None:
    """The token of the database a segment was written for; None if its header is unreadable."""
    with open(path, "rb") as handle:
        header = handle.read(_SEGMENT.size)
    if len(header) < _SEGMENT.size:
        return None
    magic, token = _SEGMENT.unpack(header)
    return token.rstrip(b"\0").decode("ascii", "replace") if magic == SEGMENT_MAGIC else None


def read_segment(path: Path) -> tuple[list[JournalRecord], int]:
    """The segment's complete records, and how many trailing bytes were not one (a torn or
    corrupt tail: it was never synced, so never acknowledged)."""
    data = path.read_bytes()
    records: list[JournalRecord] = []
    offset = _SEGMENT.size
    for record, end in _records(data, offset):
        records.append(record)
        offset = end
    # A segment is allocated in full when it is opened: zeros after the records are not a tail.
    return records, len(data[offset:].rstrip(b"\0"))


def _records(data: bytes, offset: int) -> Iterator[tuple[JournalRecord, int]]:
    size = _RECORD.size
    while offset + size <= len(data):
        magic, seq, micros, peer_len, raw_len, crc = _RECORD.unpack_from(data, offset)
        end = offset + size + peer_len + raw_len
        if magic != RECORD_MAGIC or end > len(data):
            return
        peer = data[offset + size:offset + size + peer_len]
        raw = data[offset + size + peer_len:end]
        if zlib.crc32(raw, zlib.crc32(peer, zlib.crc32(data[offset:offset + size - 4]))) != crc:
            return
        yield JournalRecord(seq, _EPOCH + timedelta(microseconds=micros),
                            peer.decode("utf-8", "replace"), raw), end
        offset = end
