"""The bare durable MLLP server bench/hl7_ingest.py measures the broker against.

It does the least a server that stores before it acknowledges can do: frame, INSERT the raw
bytes into SQLite (WAL, synchronous=FULL), commit (one fsync per message), answer AA with the
message's own control id. Run as a process of its own, like `broker serve`:

    python bench/mllp_baseline.py --port 2576 --database /tmp/baseline.db
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sqlite3

START, END = b"\x0b", b"\x1c\r"
ACK = ("MSH|^~\\&|BASELINE|RAD|BENCH|HOSP|20261123081500||ACK^O01^ACK|{control}|P|2.3.1\r"
       "MSA|AA|{control}")


def open_store(path: str) -> sqlite3.Connection:
    """The raw-message table, in autocommit mode so each message is its own BEGIN..COMMIT."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")  # the commit is on disk before the ACK, as the broker's
    db.execute("CREATE TABLE IF NOT EXISTS raw (id INTEGER PRIMARY KEY, body BLOB)")
    return db


def control_id(raw: bytes) -> str:
    """MSH-10 of a message (the field separator is MSH's fourth byte)."""
    header = raw.split(b"\r", 1)[0].decode("utf-8", "replace")
    fields = header.split(header[3:4] or "|")
    return fields[9] if len(fields) > 9 else ""


async def serve(port: int, db: sqlite3.Connection) -> None:
    """Answer MLLP on 127.0.0.1:`port` until SIGTERM or SIGINT."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                block = await reader.readuntil(END)
                raw = block[block.find(START) + 1:-len(END)]
                # On the event loop on purpose: one writer, and nothing cheaper than this.
                db.execute("BEGIN")
                db.execute("INSERT INTO raw (body) VALUES (?)", (raw,))
                db.execute("COMMIT")
                writer.write(START + ACK.format(control=control_id(raw)).encode() + END)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, limit=1 << 20)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    """Parse the port and database path, then serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", required=True)
    args = parser.parse_args()
    db = open_store(args.database)
    asyncio.run(serve(args.port, db))
    db.close()


if __name__ == "__main__":
    main()
