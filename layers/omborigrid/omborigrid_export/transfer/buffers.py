"""Where a part's bytes are held between being read and being uploaded.

Memory is the transfer's bound (parts in flight × part size), so each holder avoids copies: a ranged part is
read straight into an anonymous memory map lent by a pool that reuses them (:class:`PartBufferPool`); a
stream is kept as its chunks and joined once per part (:class:`ChunkBuffer`), and its end as the same chunks
(:class:`RollingTail`); boto3 is handed a part as a seekable view (:class:`PartBody`), which leaves for the
wire in one piece (:class:`WholeBody`).
"""

from __future__ import annotations

import contextlib
import io
import mmap
import threading
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from botocore.awsrequest import AWSPreparedRequest
    from botocore.hooks import BaseEventHooks


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

    botocore takes bytes, a bytearray or a file as a body, and moto in-process only bytes or a file (it parses
    a bytearray as form data), so boto3 is given a file. urllib3 sends a file 16 KiB at a time, though: each
    block copied twice and written by its own Python calls, after an ``Expect: 100-continue`` round trip. On
    its way out the file is therefore swapped for the part's bytes in one piece (:func:`send_part_bodies_whole`).
    """

    def __init__(self, data: bytes | memoryview) -> None:
        super().__init__(len(data))
        self._view = memoryview(data)

    def whole(self) -> WholeBody:
        """The same bytes, for urllib3 to send in one write."""
        return WholeBody(self._view)

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._size - self._pos)
        buffer[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n

    def close(self) -> None:
        self._view.release()
        super().close()


class WholeBody:
    """A part's bytes as urllib3 sends them in one ``sendall``: an iterable of one buffer (urllib3 writes each
    item of an iterable body as it is). botocore rewinds a body with ``seek(0)`` before a retry; every
    iteration yields the whole part again, so there is nothing to rewind and the same bytes are sent again.
    """

    def __init__(self, view: memoryview) -> None:
        self._view = view

    def __iter__(self) -> Iterator[memoryview]:
        yield self._view

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:  # noqa: ARG002 - always the start
        return 0


def _send_whole(request: AWSPreparedRequest, **_: Any) -> None:
    if isinstance(request.body, PartBody):
        request.body = request.body.whole()
        # As botocore sends a bytes body: no wait for "100 Continue" before it (Expect is not signed).
        request.headers.pop("Expect", None)


def send_part_bodies_whole(events: BaseEventHooks) -> None:
    """Have the S3 client whose ``meta.events`` these are send each :class:`PartBody` in one write.

    On ``before-send``, after signing (a payload signature over plain HTTP has read the file already), and
    registered last, so a handler that answers the request itself (moto in-process) still gets the file.
    Registering it again on the same client changes nothing.
    """
    events.register_last("before-send", _send_whole, unique_id="omborigrid-export-send-part-whole")


class PartBuffer:
    """One part's bytes, in a memory map lent by a :class:`PartBufferPool` (or one of its own).

    :meth:`view` is the part's bytes (the first ``length`` of the map); :meth:`close` gives the map back.
    ``crc32`` is the CRC32 of those bytes once the reader has computed it (as they arrived), else None.
    """

    def __init__(self, length: int, *, pool: PartBufferPool | None = None, map_: mmap.mmap | None = None) -> None:
        self.map = map_ if map_ is not None else mmap.mmap(-1, length)
        self.length = length
        self.crc32: int | None = None
        self._pool = pool

    def __len__(self) -> int:
        return self.length

    def view(self) -> memoryview:
        """The part's bytes (release the view before :meth:`close`)."""
        with memoryview(self.map) as whole:
            return whole[: self.length]

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.give_back(self.map)
            return
        # A view may still be referenced (e.g. by the traceback of a failed read): then the mapping is
        # unmapped when the last view goes.
        with contextlib.suppress(BufferError):
            self.map.close()


class PartBufferPool:
    """Memory maps of one part size, reused from part to part (thread-safe); close it to unmap them.

    Anonymous maps, not heap buffers: a heap buffer of a part's size is kept by the allocator's per-thread
    arenas after it is freed, which made the peak memory grow well past parts-in-flight × part size; a map is
    returned to the system when it is closed. Reused, not made per part: a fresh map costs a page fault and a
    zeroed page for every 4 KiB written into it and an munmap at the end (about 0.3 CPU-seconds per GiB here,
    measured in BENCHMARKS.md). At most ``keep`` maps are kept for reuse, so memory stays at most what was
    held at once.
    """

    def __init__(self, part_size: int, *, keep: int) -> None:
        self.part_size = part_size
        self._keep = keep
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()
        self._closed = False

    def take(self, length: int) -> PartBuffer:
        """A buffer for ``length`` bytes (at most the part size)."""
        if length > self.part_size:
            raise ValueError(f"a part of {length} bytes does not fit the pool's {self.part_size}-byte buffers")
        with self._lock:
            reused = self._free.pop() if self._free else None
        return PartBuffer(length, pool=self, map_=reused if reused is not None else mmap.mmap(-1, self.part_size))

    def give_back(self, map_: mmap.mmap) -> None:
        with self._lock:
            if not self._closed and len(self._free) < self._keep:
                self._free.append(map_)
                return
        with contextlib.suppress(BufferError):
            map_.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            free, self._free = self._free, []
        for map_ in free:
            with contextlib.suppress(BufferError):
                map_.close()


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
