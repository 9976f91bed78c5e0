"""The HL7 intake journal: what a crash leaves behind comes back, and nothing else does."""
from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from broker.store.journal import IntakeJournal, JournalBusy, sync_database
from broker.store.journal_file import read_segment, segment_files

WHEN = datetime(2026, 11, 23, 8, 15, 0, 123456)
TOKEN = "0b7e3c5e-9d0a-4c11-8f7e-2f4d5b6a7c8d"
FRAMES = [("10.0.0.5:4001", "MSH|^~\\&|RIS|HOSP|||20261123||ORM^O01|C1|P|2.3.1\rPID|1||P1"
           .encode()),
          ("10.0.0.5:4001", "MSH|^~\\&|RIS|HOSP|||20261123||ADT^A08|C2|P|2.5.1\rPID|1||P2||Åström"
           .encode("latin-1")),
          ("[::1]:5000", b"MSH|^~\\&|LAB|X|||20261123||ORM^O01|C3|P|2.3.1")]

# Writes FRAMES and dies without closing, as a crashed broker does (the kernel drops its lock).
CRASHING_WRITER = """
import os, sys
from datetime import datetime
from pathlib import Path
from broker.store.journal import IntakeJournal
from tests.store.test_journal import FRAMES, TOKEN, WHEN
journal = IntakeJournal(Path(sys.argv[1]), Path(sys.argv[2]), TOKEN,
                        segment_bytes=int(sys.argv[3]))
journal.start(int(sys.argv[4]))
for peer, raw in FRAMES * int(sys.argv[5]):
    journal.append(raw, peer, WHEN)
journal.sync()
os._exit(0)
"""


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "broker.db"
    path.write_bytes(b"")
    return path


def crash_after_writing(folder: Path, database: Path, first: int = 1, copies: int = 1,
                        segment_bytes: int = 1 << 20) -> None:
    subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(folder), str(database),
                    str(segment_bytes), str(first), str(copies)],
                   check=True, cwd=Path(__file__).resolve().parents[2], timeout=60)


def test_records_written_before_a_crash_come_back_in_order(tmp_path, database):
    folder = tmp_path / "journal"
    crash_after_writing(folder, database, first=41)
    records = IntakeJournal(folder, database, TOKEN).recover()
    assert [(r.seq, r.peer, r.raw, r.received_at) for r in records] == [
        (41 + i, peer, raw, WHEN) for i, (peer, raw) in enumerate(FRAMES)]


def test_a_torn_last_record_is_left_out_and_reported(tmp_path, database, caplog):
    folder = tmp_path / "journal"
    crash_after_writing(folder, database)
    segment = segment_files(folder)[0]
    end = _end_of_records(segment)
    with open(segment, "r+b") as handle:  # half of a fourth record: the crash cut it short
        handle.seek(end)
        handle.write(segment.read_bytes()[end - 40:end - 20])
    found = IntakeJournal(folder, database, TOKEN).recover()
    assert [r.seq for r in found] == [1, 2, 3]
    assert "20 bytes that are no complete record" in caplog.text


def test_reading_stops_at_a_record_that_fails_its_checksum(tmp_path, database):
    folder = tmp_path / "journal"
    crash_after_writing(folder, database)
    segment = segment_files(folder)[0]
    data = bytearray(segment.read_bytes())
    data[data.index(b"ADT^A08")] ^= 0x01   # one flipped bit in the second record's message
    segment.write_bytes(bytes(data))
    assert [r.seq for r in IntakeJournal(folder, database, TOKEN).recover()] == [1]


def test_a_journal_of_another_database_file_is_moved_aside_not_replayed(tmp_path, database,
                                                                        caplog):
    folder = tmp_path / "journal"
    crash_after_writing(folder, database)
    # The database replaced by a new one (which names its journal with a new token).
    assert IntakeJournal(folder, database, "another-token").recover() == []
    assert segment_files(folder) == []
    assert len(segment_files(folder / "stale")) == 1
    assert "belongs to another database" in caplog.text


def test_one_broker_per_journal(tmp_path, database):
    first = IntakeJournal(tmp_path / "journal", database, TOKEN)
    first.recover()
    with pytest.raises(JournalBusy, match="another broker"):
        IntakeJournal(tmp_path / "journal", database, TOKEN).recover()
    first.close()
    IntakeJournal(tmp_path / "journal", database, TOKEN).recover()  # free again


def test_full_segments_are_deleted_once_the_database_holds_their_records(tmp_path, database):
    folder = tmp_path / "journal"
    journal = IntakeJournal(folder, database, TOKEN, segment_bytes=4096).start(1)
    seqs = [journal.append(raw, peer, WHEN) for peer, raw in FRAMES * 40]
    journal.sync()
    assert len(segment_files(folder)) == 3
    journal.committed(seqs[len(seqs) // 2])
    journal.append(*reversed(FRAMES[0]), WHEN)   # the next fsync trims what is committed
    journal.sync()
    _wait_for(lambda: min(r.seq for r in _all_records(folder)) > 1)
    left = sorted(r.seq for r in _all_records(folder))
    assert left[0] <= seqs[len(seqs) // 2] + 1 and left[-1] == seqs[-1] + 1
    journal.committed(seqs[-1] + 1)
    journal.close()
    assert segment_files(folder) == []   # a clean stop with everything stored leaves nothing


def test_close_keeps_records_the_database_does_not_hold(tmp_path, database, caplog):
    folder = tmp_path / "journal"
    journal = IntakeJournal(folder, database, TOKEN).start(7)
    for peer, raw in FRAMES:
        journal.append(raw, peer, WHEN)
    journal.committed(8)
    journal.close()
    assert "1 received messages are not in the database" in caplog.text
    assert [r.seq for r in IntakeJournal(folder, database, TOKEN).recover()] == [7, 8, 9]


def test_waiters_run_on_the_loop_only_after_the_fsync_returned(tmp_path, database):
    release = threading.Event()
    synced: list[int] = []

    def slow_fsync(fd: int) -> None:
        release.wait(10)
        os.fdatasync(fd)
        synced.append(fd)

    journal = IntakeJournal(tmp_path / "journal", database, TOKEN, fsync=slow_fsync).start(1)

    async def scenario() -> list[str]:
        events: list[str] = []
        loop = asyncio.get_running_loop()
        journal.attach(loop)
        done = loop.create_future()
        seq = journal.append(b"MSH|^~\\&|A", "peer", WHEN)
        journal.after_sync(seq, lambda: (events.append(f"callback on loop thread "
                                                       f"{threading.current_thread() is main}"),
                                         done.set_result(None)))
        await asyncio.sleep(0.2)
        events.append(f"fsyncs before release: {len(synced)}")
        release.set()
        await asyncio.wait_for(done, 10)
        return events

    main = threading.current_thread()
    assert asyncio.run(scenario()) == ["fsyncs before release: 0", "callback on loop thread True"]
    journal.close()


def test_syncing_the_database_keeps_the_locks_sqlite_holds_on_it(tmp_path):
    # Closing any descriptor of a file drops every POSIX lock this process holds on it: the
    # sync must not open the database file, or another process could, for one, switch it out
    # of WAL mode under a reader.
    path = tmp_path / "live.db"
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("PRAGMA journal_mode=WAL")
        reader.execute("CREATE TABLE t (x)")
        reader.execute("INSERT INTO t VALUES (1)")
        reader.execute("BEGIN")
        reader.execute("SELECT x FROM t").fetchall()
        sync_database(path)
        other = subprocess.run(
            [sys.executable, "-c", "import sqlite3, sys; print(sqlite3.connect(sys.argv[1], "
             "timeout=0, isolation_level=None).execute('PRAGMA journal_mode=DELETE').fetchone()[0])",
             str(path)], capture_output=True, text=True, timeout=60)
    finally:
        reader.close()
    assert "database is locked" in other.stderr and other.stdout == ""


def _end_of_records(segment: Path) -> int:
    data = segment.read_bytes()
    return len(data.rstrip(b"\0"))


def _all_records(folder: Path) -> list:
    return [r for path in segment_files(folder) for r in read_segment(path)[0]]


def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
