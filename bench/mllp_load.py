"""EHR-like MLLP senders: a separate process, one thread per connection, each connection waiting
for its ACK before it sends the next message, as an interface engine does.

The senders run outside the measuring process so that framing and ACK checks do not share an
interpreter (and its lock) with the server under test. Every ACK is checked: MSA-1 must be AA
and MSA-2 the control id just sent.
"""
from __future__ import annotations

import multiprocessing
import socket
import threading
import time
from dataclasses import dataclass, field

START, END = b"\x0b", b"\x1c\r"
KEEP_ERRORS = 10  # the first few are printed; the rest only counted


@dataclass
class Job:
    """Messages to send: one (port, [(control id, raw), ...]) per connection; `interval` paces
    each connection to one message per interval seconds (None: as fast as ACKs come back)."""
    connections: list[tuple[int, list[tuple[str, bytes]]]]
    interval: float | None = None


@dataclass
class Outcome:
    """What a job achieved: messages acknowledged AA, wall time, every error, ACK latencies."""
    acknowledged: int = 0
    seconds: float = 0.0
    error_count: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Messages acknowledged AA per second of wall time."""
        return self.acknowledged / self.seconds if self.seconds else 0.0

    def fail(self, text: str) -> None:
        """Count an error, keeping its text if it is among the first few."""
        self.error_count += 1
        if len(self.errors) < KEEP_ERRORS:
            self.errors.append(text)


def ack_problem(control_id: str, ack: bytes) -> str | None:
    """Why `ack` does not accept message `control_id`, or None when it is MSA|AA|<control_id>."""
    for segment in ack.split(b"\r"):
        if segment.startswith(b"MSA|"):
            fields = segment.decode("utf-8", "replace").split("|")
            code = fields[1] if len(fields) > 1 else ""
            echoed = fields[2] if len(fields) > 2 else ""
            if code != "AA":
                return f"{control_id}: {segment.decode('utf-8', 'replace')[:200]}"
            if echoed != control_id:
                return f"{control_id}: ACK for {echoed!r}"
            return None
    return f"{control_id}: no MSA segment in {ack[:120]!r}"


class Connection:
    """One persistent MLLP connection to 127.0.0.1."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        # Without it, Nagle's algorithm holds a small frame back until the last one's ACK.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def exchange(self, raw: bytes) -> bytes:
        """Send one framed message and return the reply frame's content."""
        self.sock.sendall(START + raw + END)
        while (end := self.buffer.find(END)) < 0:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before the ACK")
            self.buffer += chunk
        reply, self.buffer = self.buffer[:end], self.buffer[end + len(END):]
        return reply[reply.find(START) + 1:]

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def _drive(conn: Connection, messages: list[tuple[str, bytes]], interval: float | None,
           started: threading.Barrier, outcome: Outcome, lock: threading.Lock) -> None:
    started.wait()
    begin = time.perf_counter()
    latencies: list[float] = []
    for i, (control_id, raw) in enumerate(messages):
        if interval is not None and (delay := begin + i * interval - time.perf_counter()) > 0:
            time.sleep(delay)
        sent_at = time.perf_counter()
        try:
            ack = conn.exchange(raw)
        except OSError as exc:
            with lock:
                outcome.fail(f"{control_id}: {exc}; {len(messages) - i - 1} more not sent")
                outcome.error_count += len(messages) - i - 1
            break
        latencies.append(time.perf_counter() - sent_at)
        problem = ack_problem(control_id, ack)
        with lock:
            if problem:
                outcome.fail(problem)
            else:
                outcome.acknowledged += 1
    with lock:
        outcome.latencies.extend(latencies)


def run_job(job: Job) -> Outcome:
    """Connect every connection, start them together, and time until the last ACK."""
    outcome, lock = Outcome(), threading.Lock()
    try:
        conns = [Connection(port) for port, _ in job.connections]
    except OSError as exc:
        outcome.fail(f"connect: {exc}")
        return outcome
    clock: list[float] = []
    started = threading.Barrier(len(conns) + 1, action=lambda: clock.append(time.perf_counter()))
    threads = [threading.Thread(target=_drive, args=(conn, messages, job.interval, started,
                                                     outcome, lock))
               for conn, (_, messages) in zip(conns, job.connections)]
    for thread in threads:
        thread.start()
    started.wait()
    for thread in threads:
        thread.join()
    outcome.seconds = time.perf_counter() - clock[0]
    for conn in conns:
        conn.close()
    return outcome


def _serve_jobs(jobs: multiprocessing.Queue, results: multiprocessing.Queue) -> None:
    while (job := jobs.get()) is not None:
        results.put(run_job(job))


class Senders:
    """One sender process for the whole run (spawning one costs about a second)."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.jobs: multiprocessing.Queue = ctx.Queue()
        self.results: multiprocessing.Queue = ctx.Queue()
        self.process = ctx.Process(target=_serve_jobs, args=(self.jobs, self.results),
                                   daemon=True)
        self.process.start()

    def run(self, job: Job, timeout: float = 900) -> Outcome:
        """Run `job` in the sender process and wait for its outcome."""
        self.jobs.put(job)
        return self.results.get(timeout=timeout)

    def close(self) -> None:
        """Stop the sender process."""
        self.jobs.put(None)
        self.process.join(30)
