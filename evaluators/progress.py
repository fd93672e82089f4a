"""A plain progress bar on a text stream (stderr), redrawn in place on a terminal and one
line per step otherwise."""

from __future__ import annotations

import time
from typing import TextIO

from django.core.management.base import OutputWrapper

_WIDTH = 30


class ProgressBar:
    def __init__(self, stream: TextIO | OutputWrapper, label: str, total: int) -> None:
        self._stream = stream
        self._label = label
        self._total = max(total, 0)
        self._started = time.monotonic()
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last_drawn = -1.0

    def update(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self._total = total
        now = time.monotonic()
        final = done >= self._total
        if self._tty and not final and now - self._last_drawn < 0.1:
            return
        self._last_drawn = now
        share = done / self._total if self._total else 1.0
        filled = int(share * _WIDTH)
        elapsed = now - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        line = (
            f"{self._label} [{'#' * filled}{'.' * (_WIDTH - filled)}] "
            f"{done}/{self._total} {share:.0%} {rate:.1f}/s"
        )
        self._stream.write(("\r" + line) if self._tty else line + "\n")
        if self._tty and final:
            self._stream.write("\n")
        self._stream.flush()
