"""A dependency-free progress bar on stderr for long CLI operations."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Redraws `label [#####.....] done/total` at most every `interval` seconds."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None,
                 interval: float = 0.2, width: int = 30) -> None:
        self.label, self.total, self.width, self.interval = label, max(total, 0), width, interval
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._last = 0.0
        self._drawn = False

    def advance(self, count: int = 1) -> None:
        """Count `count` more units of work; redraw when the interval has passed."""
        self.done += count
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._draw()

    def finish(self) -> None:
        """Draw the final state and end the line."""
        self._draw()
        self.stream.write("\n")
        self.stream.flush()

    def _draw(self) -> None:
        total = self.total or 1
        filled = min(self.width, int(self.width * self.done / total))
        percent = min(100, int(100 * self.done / total))
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {percent:3d}% {self.done}/{self.total}")
        self.stream.flush()
        self._drawn = True
