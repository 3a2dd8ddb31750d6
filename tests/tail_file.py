"""A file of which only the tail is known: what a content prover is given, as pyarrow reads it in tests."""

from __future__ import annotations

from typing import Any

from omborigrid_export.transfer import SeekableReader


class TailOnlyFile(SeekableReader):
    """``size`` bytes: the leading ``PAR1``, zeros, then ``tail`` (the last ``len(tail)`` bytes)."""

    def __init__(self, tail: bytes, size: int) -> None:
        super().__init__(size)
        self._tail = tail

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        start, end = self._pos, min(self._size, self._pos + len(view))
        out = bytearray(end - start)
        known = self._size - len(self._tail)
        if end > known:
            lo = max(start, known)
            out[lo - start :] = self._tail[lo - known : end - known]
        if start < 4:
            out[: min(4, end) - start] = b"PAR1"[start : min(4, end)]
        view[: len(out)] = out
        self._pos = end
        return len(out)
