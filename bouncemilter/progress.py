"""A one-line progress bar on stderr for long batch runs.

It stays silent unless the stream is a terminal, and appears only once a run has lasted
`delay` seconds, so short runs and redirected output (logs, pipes, CI) never see it. It is
erased before anything else is written to stderr.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 24


class Progress:
    def __init__(
        self, total: int, stream: TextIO | None = None, delay: float = 1.0, enabled: bool | None = None
    ) -> None:
        self.total = total  # files (an mbox counts once, whatever it holds)
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = _isatty(self.stream)
        self.enabled = enabled
        self.delay = delay
        self.files = 0
        self.messages = 0
        self._start = time.monotonic()
        self._last = 0.0
        self._shown = False

    def file_done(self) -> None:
        self.files += 1
        self._maybe_draw()

    def message_done(self) -> None:
        self.messages += 1
        if self.messages % 32 == 0:
            self._maybe_draw()

    def _maybe_draw(self) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._start < self.delay or now - self._last < 0.1:
            return
        self._last = now
        self.stream.write("\r" + self.line(now - self._start) + "\x1b[K")
        self.stream.flush()
        self._shown = True

    def line(self, elapsed: float) -> str:
        rate = self.messages / elapsed if elapsed > 0 else 0.0
        done = min(self.files / self.total, 1.0) if self.total else 1.0
        filled = int(done * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        return (
            f"classifying [{bar}] {done:4.0%} {self.files}/{self.total} files, "
            f"{self.messages} messages, {rate:.0f}/s"
        )

    def close(self) -> None:
        """Erase the bar (the results are on stdout; the bar has no lasting value)."""
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
