"""Progress of long work, as plain data, and a terminal renderer for it.

The library reports :class:`Progress` values through a callback; the CLI
draws a bar on a terminal, the web layer will turn them into SSE events.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

READING = "reading"
APPLYING = "applying"
DONE = "done"


@dataclass(frozen=True)
class Progress:
    phase: str
    bytes_read: int
    total_bytes: int | None
    rows: int


ProgressFn = Callable[[Progress], None]


class TerminalProgress:
    """Draws one updating line on a terminal, or phase lines elsewhere."""

    def __init__(self, label: str, stream: TextIO | None = None, *, live: bool | None = None):
        self.label = label
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._last_phase = ""

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if self.live:
            if p.phase == READING and now - self._last_draw < 0.1:
                return
            self._last_draw = now
            self.stream.write("\r\x1b[K" + self._line(p, now))
            if p.phase == DONE:
                self.stream.write("\n")
            self.stream.flush()
        elif p.phase != self._last_phase:
            # Not a terminal: one line per phase, so logs stay readable.
            self.stream.write(self._line(p, now) + "\n")
            self.stream.flush()
        self._last_phase = p.phase

    def _line(self, p: Progress, now: float) -> str:
        elapsed = now - self.started
        mb = p.bytes_read / 1e6
        if self.live and p.phase == READING and p.total_bytes:
            share = min(1.0, p.bytes_read / p.total_bytes)
            filled = int(share * 30)
            bar = "#" * filled + "-" * (30 - filled)
            return (
                f"{self.label} [{bar}] {share:4.0%} {mb:,.1f}/{p.total_bytes / 1e6:,.1f} MB "
                f"{p.rows:,} rows {elapsed:.1f}s"
            )
        return f"{self.label} {p.phase}: {mb:,.1f} MB, {p.rows:,} rows, {elapsed:.1f}s"
