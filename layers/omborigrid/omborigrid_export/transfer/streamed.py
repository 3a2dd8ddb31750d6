"""Stream mode: the body is read in order and cut into parts as it arrives.

:class:`StreamedParts` does the cutting for any stream (a download that ignores Range, an archive member being
inflated); :class:`StreamedCopy` feeds it from the source, resuming a dropped stream at the byte it reached or,
when the server then ignores Range, restarting from byte 0 and overwriting the parts.
"""

from __future__ import annotations

import logging
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from types import TracebackType

import requests

from ..errors import IntegrityError
from .buffers import ChunkBuffer, RollingTail
from .context import CopyContext
from .limits import CHUNK
from .multipart import MultipartUpload, PartRecord
from .retry import CONTINUING, Retry, Truncated
from .source import DownloadSource, RangeIgnored

logger = logging.getLogger(__name__)


class StreamedParts:
    """Cuts bytes written in order into the parts of ``upload``, at most ``uploads`` parts uploading at once.

    Memory: the part being filled plus the parts uploading. Use as a context manager; call :meth:`finish`
    after the last byte.
    """

    def __init__(self, upload: MultipartUpload, *, uploads: int = 1) -> None:
        self._upload = upload
        self._limit = max(1, uploads)
        self._pool = ThreadPoolExecutor(max_workers=self._limit, thread_name_prefix="upload")
        self._in_flight: set[Future[PartRecord]] = set()
        self._buffer = ChunkBuffer()
        self._number = 1
        #: Bytes written since byte 0.
        self.received = 0

    def __enter__(self) -> StreamedParts:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._pool.shutdown(wait=True)

    def write(self, chunk: bytes) -> None:
        self._buffer.append(chunk)
        self.received += len(chunk)
        part_size = self._upload.part_size
        while len(self._buffer) >= part_size:
            self._submit(self._buffer.take(part_size))

    def restart(self) -> None:
        """Start again from byte 0: let the uploads in flight finish, then forget every part."""
        self._collect(limit=0)
        self._upload.reset()
        self._buffer = ChunkBuffer()
        self._number = 1
        self.received = 0

    def finish(self) -> None:
        """Upload the last (partial) part and wait for every upload."""
        if self._buffer:
            self._submit(self._buffer.take(len(self._buffer)))
        self._collect(limit=0)

    def _submit(self, data: bytes) -> None:
        self._collect(limit=self._limit - 1)
        start = (self._number - 1) * self._upload.part_size
        self._in_flight.add(self._pool.submit(self._upload.upload_part, self._number, data, start))
        self._number += 1

    def _collect(self, *, limit: int) -> None:
        """Wait until at most ``limit`` uploads are in flight, recording the finished ones."""
        while len(self._in_flight) > limit:
            done, self._in_flight = wait(self._in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                self._upload.add(future.result())


class StreamedCopy:
    """Copies the whole file from a source that does not serve ranges."""

    def __init__(
        self,
        source: DownloadSource,
        upload: MultipartUpload,
        context: CopyContext,
        *,
        first: requests.Response | None,
        keep_tail: int = 0,
    ) -> None:
        self._source = source
        self._upload = upload
        self._context = context
        #: The probe's open 200 response: the stream starts with it.
        self._first = first
        #: The last ``keep_tail`` bytes of the stream (for the content proof; the stream cannot be read again).
        self.tail = RollingTail(keep_tail)

    def run(self) -> None:
        uploads = max(1, min(self._context.settings.concurrency, 2))
        retry = Retry(attempts=self._context.settings.max_attempts, backoff=CONTINUING, sleep=self._context.sleep)
        with StreamedParts(self._upload, uploads=uploads) as parts:
            # Whole parts already went to S3 and the partial one stays in the buffer, so a resume continues
            # exactly at the byte received.
            retry.call(
                lambda: self._copy(parts),
                what=lambda: (
                    f"The download from {self._source.host} (after {parts.received} of {self._upload.size} bytes)"
                ),
            )
            parts.finish()

    def _copy(self, parts: StreamedParts) -> None:
        """One attempt: (re)open the stream where it broke and read it to the end."""
        source, size = self._source, self._upload.size
        response, self._first = self._first, None
        if response is None:
            response, restarted = self._open(parts.received)
            if restarted:
                self._context.report(-parts.received, size)
                parts.restart()
                self.tail.clear()
        if parts.received == 0:
            source.check_length(response)
        with response:
            for chunk in response.iter_content(CHUNK):
                if parts.received + len(chunk) > size:
                    raise IntegrityError(
                        f"The download on {source.host} is longer than the job's fileSize of {size} bytes; "
                        "not landing it."
                    )
                parts.write(chunk)
                self.tail.append(chunk)
                source.stats.add("bytes_received", len(chunk))
                self._context.report(len(chunk), size)
        if parts.received < size:
            raise Truncated()

    def _open(self, received: int) -> tuple[requests.Response, bool]:
        """Open the stream at ``received``. Returns (response, restarted-from-zero)."""
        source = self._source
        if received == 0:
            return source.open(0, None), False
        try:
            response = source.open(received, None)
        except RangeIgnored as ignored:
            source.stats.add("restarts")
            logger.info("the source ignored Range on resume; restarting from byte 0")
            return ignored.response, True
        try:
            source.check_content_range(response, received, source.size - 1)
        except BaseException:
            response.close()
            raise
        source.stats.add("resumes")
        return response, False
