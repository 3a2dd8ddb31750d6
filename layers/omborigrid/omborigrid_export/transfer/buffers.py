"""Where a part's bytes are held between being read and being uploaded.

Memory is the transfer's bound (parts in flight × part size), so each holder avoids copies: a ranged part is
read straight into one anonymous memory map (:class:`PartBuffer`); a stream is kept as its chunks and joined
once per part (:class:`ChunkBuffer`), and its end as the same chunks (:class:`RollingTail`); boto3 reads a
part through a seekable view (:class:`PartBody`).
"""

from __future__ import annotations

import contextlib
import io
import mmap
from collections import deque
from typing import Any


class SeekableReader(io.RawIOBase):
    """A read-only, seekable file of a known size; subclasses say how bytes are read at a position."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size
        self._pos = 0

    def __len__(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = min(max(0, base + offset), self._size)
        return self._pos


class PartBody(SeekableReader):
    """A part's buffer as a seekable file for boto3, read in blocks without copying the whole part.

    (A bytearray body is accepted by S3 but not by every S3 emulator; a file object is accepted by all.)
    """

    def __init__(self, data: bytes | memoryview) -> None:
        super().__init__(len(data))
        self._view = memoryview(data)

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._size - self._pos)
        buffer[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n

    def close(self) -> None:
        self._view.release()
        super().close()


class PartBuffer:
    """One part's bytes in an anonymous memory map.

    A memory map is returned to the system as soon as it is closed: heap buffers of a part's size are kept by
    the allocator's per-thread arenas after they are freed, which made the peak memory grow well past
    parts-in-flight × part size.
    """

    def __init__(self, length: int) -> None:
        self.map = mmap.mmap(-1, length)
        self.length = length

    def __len__(self) -> int:
        return self.length

    def close(self) -> None:
        # A view may still be referenced (e.g. by the traceback of a failed read): then the mapping is
        # unmapped when the last view goes.
        with contextlib.suppress(BufferError):
            self.map.close()


class ChunkBuffer:
    """Received bytes kept as a list of chunks and joined once per part: one copy, not three."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)

    def take(self, n: int) -> bytes:
        """Remove and return the first ``n`` bytes."""
        taken: list[bytes] = []
        need = n
        while need:
            chunk = self._chunks[0]
            if len(chunk) <= need:
                taken.append(self._chunks.pop(0))
                need -= len(chunk)
            else:
                taken.append(chunk[:need])
                self._chunks[0] = chunk[need:]
                need = 0
        self._size -= n
        return b"".join(taken)


class RollingTail:
    """The last ``keep`` bytes (at least) of a stream, held as the stream's own chunks: no copy is made, and
    at most one chunk more than ``keep`` is held."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._chunks: deque[bytes] = deque()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, chunk: bytes) -> None:
        if not self.keep:
            return
        self._chunks.append(chunk)
        self._size += len(chunk)
        while self._size - len(self._chunks[0]) >= self.keep:
            self._size -= len(self._chunks.popleft())

    def clear(self) -> None:
        self._chunks.clear()
        self._size = 0

    def last(self, n: int) -> bytes:
        """The last ``n`` bytes (``n`` at most ``len(self)``)."""
        if n > self._size:
            raise ValueError(f"only the last {self._size} bytes are held, not {n}")
        needed: list[bytes] = []
        held = 0
        for chunk in reversed(self._chunks):
            if held >= n:
                break
            needed.append(chunk)
            held += len(chunk)
        return b"".join(reversed(needed))[held - n :]
