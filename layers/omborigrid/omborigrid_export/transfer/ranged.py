"""Ranged mode: each part is an independent byte range, fetched and uploaded concurrently.

Fetching and uploading overlap: up to ``concurrency`` parts are read from the source while read parts are
uploaded by up to as many workers, so a slow source (a per-connection cap) and a slow sink do not add up.
Memory is bounded by the parts held at once (see :func:`parts_held`), wherever they are. A connection dropped
mid-part resumes from the last byte received. Close to a deadline no new part is started.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import requests

from .. import checksum
from ..errors import IntegrityError, TransferFailed
from .buffers import PartBuffer, PartBufferPool
from .context import CopyContext
from .limits import CHUNK, DEADLINE_MARGIN_SECONDS
from .multipart import MultipartUpload, PartRecord
from .retry import CONTINUING, Retry, Truncated
from .source import DownloadSource, RangeIgnored

logger = logging.getLogger(__name__)

_Fetched = tuple[int, PartBuffer, float]


def parts_held(concurrency: int) -> int:
    """Parts held at once: the readers plus half as many again (at least two) waiting for or in an upload.

    A slow source keeps every reader busy and few uploads; a fast one fills the uploaders instead.
    """
    return concurrency + max(2, concurrency // 2)


class RangedCopy:
    """Fetches and uploads every missing part of ``upload``."""

    def __init__(
        self,
        source: DownloadSource,
        upload: MultipartUpload,
        context: CopyContext,
        *,
        first: requests.Response | None,
    ) -> None:
        self._source = source
        self._upload = upload
        self._context = context
        #: The probe's open 206 response for the first missing part: it is used, not refetched.
        self._first = first
        self._todo = deque(upload.missing_parts())
        self._concurrency = min(context.settings.concurrency, max(1, len(self._todo)))
        self._held = parts_held(self._concurrency)
        self._buffers = PartBufferPool(upload.part_size, keep=self._held)
        self._fetching: set[Future[_Fetched]] = set()
        self._uploading: set[Future[PartRecord]] = set()
        self._slowest = 0.0
        self._last_saved = context.clock()

    def run(self) -> bool:
        """Fetch and upload every missing part. False when the deadline stopped it early."""
        try:
            with (
                ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="fetch") as fetch_pool,
                ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="upload") as upload_pool,
            ):
                self._loop(fetch_pool, upload_pool)
        finally:
            # Both thread pools have finished here, so no part is being read into or uploaded from a buffer.
            self._buffers.close()
        return not self._upload.missing_parts()

    def _loop(self, fetch_pool: ThreadPoolExecutor, upload_pool: ThreadPoolExecutor) -> None:
        try:
            while self._todo or self._fetching or self._uploading:
                self._start_fetches(fetch_pool)
                if not self._fetching and not self._uploading:
                    break
                done, _ = wait(self._pending(), return_when=FIRST_COMPLETED)
                self._harvest(done, upload_pool)
                self._save_checkpoint_when_due()
        except BaseException:
            for future in self._pending():
                future.cancel()
            raise
        finally:
            if self._first is not None:
                self._first.close()

    def _pending(self) -> list[Future[Any]]:
        return [*self._fetching, *self._uploading]

    def _start_fetches(self, pool: ThreadPoolExecutor) -> None:
        while (
            self._todo
            and len(self._fetching) < self._concurrency
            and len(self._fetching) + len(self._uploading) < self._held
        ):
            # Start a part only if there is time to finish it (twice the slowest so far).
            time_left = self._context.time_left
            if time_left is not None and time_left() < DEADLINE_MARGIN_SECONDS + 2 * self._slowest:
                self._todo.clear()
                return
            opened, self._first = self._first, None
            self._fetching.add(pool.submit(self._timed_fetch, self._todo.popleft(), opened))

    def _harvest(self, done: set[Future[Any]], pool: ThreadPoolExecutor) -> None:
        for fetched in [f for f in self._fetching if f in done]:
            self._fetching.discard(fetched)
            number, data, seconds = fetched.result()
            self._slowest = max(self._slowest, seconds)
            start, _end = self._upload.part_range(number)
            self._uploading.add(pool.submit(self._upload.upload_and_release, number, data, start))
        for uploaded in [f for f in self._uploading if f in done]:
            self._uploading.discard(uploaded)
            self._upload.add(uploaded.result())

    def _save_checkpoint_when_due(self) -> None:
        sink = self._context.on_checkpoint
        if sink is not None and self._context.clock() - self._last_saved >= self._context.checkpoint_every:
            sink(self._upload.checkpoint())
            self._last_saved = self._context.clock()

    def _timed_fetch(self, number: int, opened: requests.Response | None) -> _Fetched:
        started = self._context.clock()
        data = self._fetch_part(number, opened)
        return number, data, self._context.clock() - started

    def _fetch_part(self, number: int, opened: requests.Response | None) -> PartBuffer:
        """The bytes of one part, read straight into one buffer of the part's size (held once, not twice)."""
        start, end = self._upload.part_range(number)
        buffer = self._buffers.take(end - start + 1)
        view = buffer.view()
        try:
            buffer.crc32 = _PartReader(self._source, self._upload, self._context, number, view).read(opened)
        except BaseException:
            view.release()
            buffer.close()
            raise
        view.release()
        return buffer


class _PartReader:
    """Reads one part into its buffer, resuming with Range after a dropped connection.

    The part's CRC32 is computed step by step as the bytes arrive, while they are still in the CPU's cache:
    computed afterwards over the whole part, it read 8 MiB back from memory (0.2 CPU-s per GiB; BENCHMARKS.md).
    """

    def __init__(
        self, source: DownloadSource, upload: MultipartUpload, context: CopyContext, number: int, view: memoryview
    ) -> None:
        self._source = source
        self._upload = upload
        self._context = context
        self._number = number
        self._view = view
        self._start, self._end = upload.part_range(number)
        self._length = self._end - self._start + 1
        #: Bytes of the part received so far (a resume asks for the rest), and their CRC32.
        self._got = 0
        self._crc = 0
        self._opened: requests.Response | None = None

    def read(self, opened: requests.Response | None) -> int:
        """Read the whole part and return its CRC32; ``opened`` is a response for it already open (the
        probe's), or None."""
        self._opened = opened
        retry = Retry(attempts=self._context.settings.max_attempts, backoff=CONTINUING, sleep=self._context.sleep)
        retry.call(self._attempt, what=lambda: f"Part {self._number} from {self._source.host}")
        return self._crc

    def _attempt(self) -> None:
        response, self._opened = self._opened, None
        if response is None:
            response = self._open_rest()
        self._read_response(response)

    def _open_rest(self) -> requests.Response:
        """Open the bytes of the part not received yet."""
        try:
            response = self._source.open(self._start + self._got, self._end)
        except RangeIgnored as ignored:
            ignored.response.close()
            raise TransferFailed(
                f"The download on {self._source.host} stopped honouring Range mid-transfer; it will be retried."
            ) from None
        if self._got:
            self._source.stats.add("resumes")
        return response

    def _read_response(self, response: requests.Response) -> None:
        with response:
            self._source.check_content_range(response, self._start + self._got, self._end)
            while self._got < self._length:
                with self._view[self._got : min(self._got + CHUNK, self._length)] as step:
                    n = response.raw.readinto(step)
                    self._crc = checksum.crc32_of(step[:n], self._crc)
                if not n:
                    break
                self._got += n
                self._source.stats.add("bytes_received", n)
                self._context.report(n, self._upload.size)
            if self._got == self._length and response.raw.read(1):
                raise IntegrityError(f"The download on {self._source.host} sent more bytes than the range asked for.")
        if self._got < self._length:
            raise Truncated()
