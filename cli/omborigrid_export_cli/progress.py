"""A small progress bar for terminals (stderr). Silent when stderr is not a terminal."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import TextIO

MIB = 1024 * 1024


class ProgressBar:
    def __init__(self, *, enabled: bool, stream: TextIO | None = None, width: int = 30) -> None:
        self.enabled = enabled
        self._stream = stream or sys.stderr
        self._width = width
        self._lock = threading.Lock()
        self._label = ""
        self._total = 0
        self._done = 0
        self._started = 0.0
        self._last_draw = 0.0
        self._active = False

    def note(self, message: str) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._clear()
            print(message, file=self._stream, flush=True)

    def start(self, label: str, total: int) -> None:
        with self._lock:
            self._label, self._total, self._done = label, total, 0
            self._started = time.monotonic()
            self._active = True
            self._draw(force=True)

    def advance(self, amount: int, total: int) -> None:
        with self._lock:
            self._total = total or self._total
            self._done = max(0, self._done + amount)
            self._draw()

    def finish(self) -> None:
        with self._lock:
            if self._active:
                self._draw(force=True)
                if self.enabled:
                    print(file=self._stream, flush=True)
            self._active = False

    def close(self) -> None:
        self.finish()

    def _clear(self) -> None:
        if self._active:
            self._stream.write("\r\033[K")

    def _draw(self, *, force: bool = False) -> None:
        if not self.enabled or not self._active:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.2:
            return
        self._last_draw = now
        fraction = self._done / self._total if self._total else 0.0
        filled = int(fraction * self._width)
        rate = self._done / max(now - self._started, 1e-6) / MIB
        figures = (
            f" [{'#' * filled}{'.' * (self._width - filled)}] {fraction:6.1%} "
            f"{self._done / MIB:,.1f}/{self._total / MIB:,.1f} MiB {rate:,.1f} MiB/s"
        )
        # One line, never wrapped: a wrapped line cannot be redrawn in place.
        columns = shutil.get_terminal_size((100, 24)).columns
        room = max(10, columns - len(figures) - 1)
        label = self._label if len(self._label) <= room else self._label[: room - 1] + "…"
        self._stream.write(f"\r\033[K{label}{figures}")
        self._stream.flush()
