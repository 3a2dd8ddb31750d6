"""Stream an export's file from its download URL into S3: bounded memory, verified, atomic, resumable.

How it works:

* The first request asks for the first part with ``Range``. A ``206`` whose ``Content-Range`` matches
  means the source supports ranges: parts are then fetched as independent byte ranges, several at once,
  each uploaded as one multipart part. A ``200`` means it does not: the body is read as one stream and
  cut into parts as it arrives.
* Memory is bounded by (parts in flight) × (part size), whatever the file size: a part's bytes are held
  only between being read and being uploaded.
* A connection dropped mid-part resumes from the last byte received with ``Range``; if the server then
  answers ``200`` (it ignored Range) the stream restarts cleanly from byte 0, overwriting the parts.
  A ``403`` means the presigned URL expired: the job is read again for a fresh URL.
* Nothing is visible under the final key until CompleteMultipartUpload, which happens only after the
  size, the file format (by its magic bytes) and a full-object CRC32 (combined from the parts) check out.
  The CRC is sent with the completion, so S3 itself verifies it, and the object's recorded checksum is
  compared once more afterwards. Completion is conditional (``If-None-Match: *``) unless a replacement
  was asked for, so two racing runs cannot both write.
* Close to a deadline (a Lambda's time limit), the transfer stops starting new parts and returns a
  :class:`Checkpoint`; the next call resumes from it, after checking it against S3's ListParts.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import logging
import math
import mmap
import re
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, cast

import requests
import urllib3
from botocore.exceptions import ClientError

from . import checksum
from .errors import (
    DownloadUrlExpired,
    IntegrityError,
    InvalidInput,
    LandingConflict,
    OmboriGridExportError,
    TransferFailed,
)
from .models import ExportJob, JobStatus
from .redact import describe_exception, host_of
from .settings import MIB, TransferSettings
from .urlsafety import Resolver, check_download_url, system_resolver

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 * 1024**4
PARQUET_MAGIC = b"PAR1"
ZIP_LOCAL_HEADER = b"PK\x03\x04"
ZIP_END_OF_CENTRAL_DIR = b"PK\x05\x06"
#: The zip end-of-central-directory record sits within the last 22 + 65,535 (comment) bytes.
TAIL_BYTES = 22 + 65_535
_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_CHUNK = 1 * MIB
_MAX_REDIRECTS = 5
#: Seconds kept in hand when a deadline is given, on top of twice the slowest part.
DEADLINE_MARGIN_SECONDS = 5.0

Clock = Callable[[], float]
ProgressCallback = Callable[[int, int], None]
CheckpointSink = Callable[["Checkpoint"], None]
#: How often a running transfer hands a checkpoint to ``on_checkpoint`` (for crash recovery).
CHECKPOINT_EVERY_SECONDS = 20.0
JobRefresher = Callable[[], ExportJob]


def choose_part_size(size: int, minimum: int) -> int:
    """At least ``minimum``, large enough for ``size`` to fit in 10,000 parts, a whole number of MiB."""
    if size > MAX_OBJECT_SIZE:
        raise IntegrityError(f"The export is {size} bytes, more than S3's 5 TiB object limit.")
    needed = math.ceil(size / MAX_PARTS) if size else minimum
    part = max(minimum, needed)
    return math.ceil(part / MIB) * MIB


@dataclass(frozen=True, slots=True)
class PartRecord:
    number: int
    size: int
    crc32: int
    etag: str


_PART_CRC = struct.Struct(">HI")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where an unfinished transfer stands: enough to resume it in another process.

    Compact on purpose (it travels in the Step Functions payload, limit 256 KiB, and in the ledger): the
    parts are (number, CRC-32) pairs, 8 base64 characters each, 80 KB at S3's 10,000 parts. Sizes and
    ETags are not trusted from here: they are read back from S3's ListParts on resume.
    """

    job_id: str
    bucket: str
    key: str
    upload_id: str
    size: int
    part_size: int
    part_crcs: dict[int, int]
    head: bytes = b""

    @property
    def part_numbers(self) -> list[int]:
        return sorted(self.part_crcs)

    @property
    def bytes_done(self) -> int:
        last = max(1, math.ceil(self.size / self.part_size))
        return sum((self.size - (n - 1) * self.part_size) if n == last else self.part_size for n in self.part_crcs)

    def to_dict(self) -> dict[str, Any]:
        packed = b"".join(_PART_CRC.pack(n, self.part_crcs[n]) for n in sorted(self.part_crcs))
        return {
            "jobId": self.job_id,
            "bucket": self.bucket,
            "key": self.key,
            "uploadId": self.upload_id,
            "size": self.size,
            "partSize": self.part_size,
            "bytesDone": self.bytes_done,
            "partCrcs": base64.b64encode(packed).decode(),
            "head": base64.b64encode(self.head).decode(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Checkpoint:
        if not isinstance(data, dict):
            raise InvalidInput("The transfer checkpoint is not an object.")
        try:
            packed = base64.b64decode(data["partCrcs"], validate=True)
            if len(packed) % _PART_CRC.size:
                raise ValueError("truncated part list")
            crcs = dict(_PART_CRC.iter_unpack(packed))
            checkpoint = cls(
                job_id=str(data["jobId"]),
                bucket=str(data["bucket"]),
                key=str(data["key"]),
                upload_id=str(data["uploadId"]),
                size=int(data["size"]),
                part_size=int(data["partSize"]),
                part_crcs=crcs,
                head=base64.b64decode(data.get("head", ""), validate=True),
            )
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise InvalidInput("The transfer checkpoint is missing fields or has malformed ones.") from None
        if (
            checkpoint.size < 1
            or checkpoint.part_size < 1
            or any(not 1 <= n <= MAX_PARTS for n in checkpoint.part_crcs)
        ):
            raise InvalidInput("The transfer checkpoint has impossible sizes or part numbers.")
        return checkpoint


@dataclass(frozen=True, slots=True)
class LandedObject:
    bucket: str
    key: str
    bytes: int
    checksum_crc32: str
    content_kind: str
    job_id: str
    already_existed: bool
    source_host: str
    ranged: bool = False
    parts: int = 0
    version_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def checksum(self) -> str:
        return f"crc32:{self.checksum_crc32}"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(slots=True)
class TransferOutcome:
    """Either the landed object, or a checkpoint to resume from (the deadline came first)."""

    landed: LandedObject | None = None
    checkpoint: Checkpoint | None = None


class _Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: dict[str, int] = {
            "requests": 0,
            "resumes": 0,
            "restarts": 0,
            "url_refreshes": 0,
            "parts_uploaded": 0,
            "bytes_received": 0,
        }

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.values[name] = self.values.get(name, 0) + amount


class _SourceIgnoredRange(Exception):
    """The server answered a ranged request with 200: the whole file is coming instead of the part."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__("range ignored")
        self.response = response


class _UrlExpired(Exception):
    pass


class _Source:
    """The download URL of one job: safe opening, redirects, refresh on 403, per-thread sessions."""

    def __init__(
        self,
        job: ExportJob,
        refresh_job: JobRefresher,
        settings: TransferSettings,
        *,
        allow_local_urls: bool,
        session_factory: Callable[[], requests.Session],
        resolver: Resolver,
        stats: _Stats,
    ) -> None:
        assert job.download_url is not None
        self.job = job
        self._url = job.download_url
        self._refresh_job = refresh_job
        self._settings = settings
        self._allow_local = allow_local_urls
        self._session_factory = session_factory
        self._resolver = resolver
        self._stats = stats
        self._local = threading.local()
        self._lock = threading.Lock()
        self._generation = 0
        self._sessions: list[requests.Session] = []
        check_download_url(self._url, allow_local=allow_local_urls, resolver=resolver)

    @property
    def host(self) -> str:
        return host_of(self._url)

    @property
    def generation(self) -> int:
        with self._lock:
            return self._generation

    def close(self) -> None:
        for session in self._sessions:
            session.close()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._session_factory()
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def refresh(self, seen_generation: int) -> None:
        """Get a fresh URL unless another thread already did since ``seen_generation``."""
        with self._lock:
            if self._generation != seen_generation:
                return
            if self._generation >= self._settings.max_url_refreshes:
                raise DownloadUrlExpired(
                    f"The download URL on {self.host} kept being refused (HTTP 403) after "
                    f"{self._generation} refreshes; the export may have been archived."
                )
            job = self._refresh_job()
            if job.status is not JobStatus.DONE or job.download_url is None:
                raise TransferFailed(f"Job {job.id} is no longer done (status {job.status.value}); cannot download.")
            if job.file_size != self.job.file_size:
                raise IntegrityError(
                    f"Job {job.id} changed its fileSize from {self.job.file_size} to {job.file_size} mid-transfer."
                )
            check_download_url(job.download_url, allow_local=self._allow_local, resolver=self._resolver)
            self._url = job.download_url
            self._generation += 1
            self._stats.add("url_refreshes")
            logger.info("refreshed the download URL for job %s (host %s)", job.id, self.host)

    def open(self, start: int, end: int | None) -> tuple[requests.Response, int]:
        """GET bytes start..end (inclusive; None = to the end). Returns the response and the URL generation.

        Raises _UrlExpired on 403, _SourceIgnoredRange when a range was asked but 200 came back.
        """
        with self._lock:
            url, generation = self._url, self._generation
        headers = {"Accept-Encoding": "identity"}
        if start > 0 or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end}"
        session = self._session()
        for _ in range(_MAX_REDIRECTS + 1):
            self._stats.add("requests")
            response = session.get(
                url,
                headers=headers,
                stream=True,
                allow_redirects=False,
                timeout=(self._settings.connect_timeout, self._settings.read_timeout),
            )
            if response.is_redirect:
                location = response.headers.get("Location", "")
                response.close()
                url = requests.compat.urljoin(url, location)
                check_download_url(url, allow_local=self._allow_local, resolver=self._resolver)
                continue
            break
        else:
            raise TransferFailed(f"The download on {self.host} redirected more than {_MAX_REDIRECTS} times.")
        if response.status_code == 403:
            response.close()
            raise _UrlExpired()
        if "Range" in headers and response.status_code == 200:
            raise _SourceIgnoredRange(response)
        expected = 206 if "Range" in headers else 200
        if response.status_code != expected:
            status = response.status_code
            response.close()
            raise TransferFailed(f"The download on {self.host} answered HTTP {status} where {expected} was expected.")
        return response, generation


class Transfer:
    """Lands one export's file in S3. Create one per export."""

    def __init__(
        self,
        s3: S3Client,
        settings: TransferSettings | None = None,
        *,
        allow_local_urls: bool = False,
        session_factory: Callable[[], requests.Session] = requests.Session,
        resolver: Resolver = system_resolver,
        progress: ProgressCallback | None = None,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        checkpoint_every: float = CHECKPOINT_EVERY_SECONDS,
    ) -> None:
        self._s3 = s3
        self._checkpoint_every = checkpoint_every
        self._settings = settings or TransferSettings()
        self._allow_local = allow_local_urls
        self._session_factory = session_factory
        self._resolver = resolver
        self._progress = progress
        self._clock = clock
        self._sleep = sleep

    # -- public -----------------------------------------------------------------------------------

    def land(
        self,
        job: ExportJob,
        refresh_job: JobRefresher,
        *,
        bucket: str,
        key: str,
        replace: bool = False,
        resume: Checkpoint | None = None,
        time_left: Callable[[], float] | None = None,
        keep_upload_on_failure: bool = False,
        on_checkpoint: CheckpointSink | None = None,
    ) -> TransferOutcome:
        """Land ``job``'s file at s3://bucket/key.

        ``refresh_job`` re-reads the job (for a fresh URL). ``replace`` overwrites an existing object
        (a forced re-export); otherwise an existing verified object is left alone and reported.
        ``time_left`` returns the seconds left before the caller must return; when it runs low a
        checkpoint is returned instead of the landed object. ``keep_upload_on_failure`` leaves the
        multipart upload in place on a retryable failure so a retry can resume it (the bucket's
        lifecycle rule removes abandoned ones). ``on_checkpoint`` receives a checkpoint every
        ``CHECKPOINT_EVERY_SECONDS`` while parts land, so a process that is killed can be resumed by the next.
        """
        if job.status is not JobStatus.DONE or job.download_url is None or job.file_size is None:
            raise InvalidInput(f"Job {job.id} is not done yet (status {job.status.value}); nothing to download.")
        size = job.file_size
        started_at = datetime.now(UTC)
        if not replace:
            existing = self._existing(bucket, key, size, job)
            if existing is not None:
                return TransferOutcome(landed=existing)
        if size == 0:
            raise IntegrityError(f"Job {job.id} reports an empty file (fileSize 0); nothing valid to land.")
        stats = _Stats()
        source = self._source(job, refresh_job, stats)
        try:
            return self._land(
                job,
                source,
                bucket,
                key,
                size,
                replace,
                resume,
                time_left,
                keep_upload_on_failure,
                stats,
                started_at,
                on_checkpoint,
            )
        finally:
            source.close()

    def _source(self, job: ExportJob, refresh_job: JobRefresher, stats: _Stats) -> _Source:
        return _Source(
            job,
            refresh_job,
            self._settings,
            allow_local_urls=self._allow_local,
            session_factory=self._session_factory,
            resolver=self._resolver,
            stats=stats,
        )

    def existing(self, job: ExportJob, *, bucket: str, key: str) -> LandedObject | None:
        """The verified object already under ``key`` for this job's size, or None.

        Raises :class:`LandingConflict` when a different object sits there.
        """
        if job.file_size is None:
            return None
        return self._existing(bucket, key, job.file_size, job)

    def peek(self, job: ExportJob, refresh_job: JobRefresher, length: int = 4) -> bytes:
        """The first ``length`` bytes of the job's file: what it is, decided by its bytes, not its name."""
        if job.status is not JobStatus.DONE or job.download_url is None:
            raise InvalidInput(f"Job {job.id} is not done yet (status {job.status.value}); nothing to download.")
        source = self._source(job, refresh_job, _Stats())
        try:
            for attempt in range(self._settings.max_attempts):
                try:
                    try:
                        response, _ = source.open(0, length - 1)
                    except _SourceIgnoredRange as ignored:
                        response = ignored.response
                    with response:
                        data = b""
                        for chunk in response.iter_content(length):
                            data += chunk
                            if len(data) >= length:
                                break
                        return data[:length]
                except _UrlExpired:
                    source.refresh(source.generation)
                except (requests.RequestException, OSError) as exc:
                    logger.info("peek at %s failed (%s); retrying", source.host, describe_exception(exc))
                    self._sleep(min(2.0**attempt, 10.0))
            raise TransferFailed(f"Could not read the start of the download from {source.host}.")
        finally:
            source.close()

    # -- internals --------------------------------------------------------------------------------

    def _existing(self, bucket: str, key: str, size: int, job: ExportJob) -> LandedObject | None:
        try:
            head = self._s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise TransferFailed(f"Could not check s3://{bucket}/{key}: {describe_exception(exc)}") from None
        metadata = head.get("Metadata", {})
        crc = head.get("ChecksumCRC32")
        if head["ContentLength"] != size or not crc:
            raise LandingConflict(
                f"s3://{bucket}/{key} already holds a different object ({head['ContentLength']} bytes, "
                f"from job {metadata.get('omborigrid-job-id', 'unknown')}); it is not replaced unless forced."
            )
        logger.info("s3://%s/%s already landed (%d bytes); not rewritten", bucket, key, size)
        return LandedObject(
            bucket=bucket,
            key=key,
            bytes=size,
            checksum_crc32=crc,
            content_kind=metadata.get("omborigrid-content-kind", "unknown"),
            job_id=metadata.get("omborigrid-job-id", job.id),
            already_existed=True,
            source_host=host_of(job.download_url or ""),
            version_id=head.get("VersionId"),
        )

    def _land(
        self,
        job: ExportJob,
        source: _Source,
        bucket: str,
        key: str,
        size: int,
        replace: bool,
        resume: Checkpoint | None,
        time_left: Callable[[], float] | None,
        keep_upload_on_failure: bool,
        stats: _Stats,
        started_at: datetime,
        on_checkpoint: CheckpointSink | None,
    ) -> TransferOutcome:
        upload = None
        if resume is not None:
            try:
                upload = self._resume_upload(resume, job, bucket, key, size)
            except UploadGone:
                logger.warning("the upload of the checkpoint is gone (aborted or expired); starting over")
        if upload is None:
            part_size = choose_part_size(size, self._settings.part_size)
            upload = _Upload.create(self._s3, bucket, key, job, size, part_size)
        try:
            ranged, first = self._probe(source, upload)
            if ranged:
                finished = self._ranged(source, upload, first, time_left, stats, on_checkpoint)
            else:
                self._streamed(source, upload, first, stats)
                finished = True
            if not finished:
                checkpoint = upload.checkpoint()
                logger.info(
                    "job %s: %d of %d bytes landed so far; continuing in the next invocation",
                    job.id,
                    checkpoint.bytes_done,
                    size,
                )
                return TransferOutcome(checkpoint=checkpoint)
            landed = self._complete(upload, job, source, replace, ranged, stats, started_at)
            return TransferOutcome(landed=landed)
        except BaseException as exc:
            retryable = isinstance(exc, OmboriGridExportError) and exc.retryable
            if keep_upload_on_failure and retryable:
                logger.warning("job %s: transfer interrupted; upload kept for a retry to resume", job.id)
            else:
                upload.abort()
            raise

    def _resume_upload(self, resume: Checkpoint, job: ExportJob, bucket: str, key: str, size: int) -> _Upload:
        if (resume.job_id, resume.bucket, resume.key, resume.size) != (job.id, bucket, key, size):
            raise InvalidInput("The transfer checkpoint belongs to another job, key or size; refusing to resume.")
        return _Upload.resume(self._s3, resume)

    def _probe(self, source: _Source, upload: _Upload) -> tuple[bool, requests.Response | None]:
        """Find out whether the source serves ranges, by asking for the first missing part.

        Returns (ranged, response): a 206 for that part (its body becomes the part), or a 200 to stream.
        """
        start, end = upload.first_missing_range()
        if start is None:
            return True, None
        for attempt in range(self._settings.max_attempts):
            try:
                response, _gen = source.open(start, end)
            except _UrlExpired:
                source.refresh(source.generation)
                continue
            except _SourceIgnoredRange as ignored:
                if upload.parts:
                    # Parts from an earlier invocation cannot be trusted to line up with a stream: start over.
                    logger.warning("the source stopped honouring Range; restarting the upload from byte 0")
                    upload.reset()
                return False, ignored.response
            except requests.RequestException as exc:
                logger.warning("probe of %s failed (%s); retrying", source.host, describe_exception(exc))
                self._sleep(min(2.0**attempt, 10.0))
                continue
            try:
                self._check_content_range(response, start, end, upload.size, source.host)
            except BaseException:
                response.close()
                raise
            return True, response
        raise TransferFailed(
            f"Could not start the download from {source.host} after {self._settings.max_attempts} attempts."
        )

    @staticmethod
    def _check_content_range(response: requests.Response, start: int, end: int, size: int, host: str) -> None:
        match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", ""))
        if not match:
            raise TransferFailed(f"The download on {host} answered 206 without a valid Content-Range.")
        got_start, got_end, total = int(match[1]), int(match[2]), match[3]
        if total != "*" and int(total) != size:
            raise IntegrityError(
                f"The download on {host} is {total} bytes but the job's fileSize says {size}; not landing it."
            )
        if got_start != start or got_end != min(end, size - 1):
            raise TransferFailed(
                f"The download on {host} answered bytes {got_start}-{got_end} for a request of {start}-{end}."
            )

    # Ranged mode: each part is an independent byte range, fetched and uploaded concurrently.

    def _ranged(
        self,
        source: _Source,
        upload: _Upload,
        first: requests.Response | None,
        time_left: Callable[[], float] | None,
        stats: _Stats,
        on_checkpoint: CheckpointSink | None = None,
    ) -> bool:
        """Fetch and upload every missing part. False when the deadline stopped it early.

        Fetching and uploading overlap: up to ``concurrency`` parts are read from the source while read parts
        are uploaded by up to as many workers, so a slow source (a per-connection cap) and a slow sink do not
        add up. At most 1.5 × concurrency parts are held in memory, wherever they are. ``first`` is the probe's open 206 response
        for the first missing part; it is used, not refetched.
        """
        todo = deque(upload.missing_parts())
        concurrency = min(self._settings.concurrency, max(1, len(todo)))
        # Parts held at once: the readers plus half as many again waiting for or in an upload. A slow source
        # keeps every reader busy and few uploads; a fast one fills the uploaders instead.
        held = concurrency + max(2, concurrency // 2)
        fetching: set[Future[tuple[int, PartBuffer, float]]] = set()
        uploading: set[Future[PartRecord]] = set()
        slowest = 0.0
        last_saved = self._clock()
        with (
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fetch") as fetch_pool,
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="upload") as upload_pool,
        ):
            try:
                while todo or fetching or uploading:
                    while todo and len(fetching) < concurrency and len(fetching) + len(uploading) < held:
                        # Start a part only if there is time to finish it (twice the slowest so far).
                        if time_left is not None and time_left() < DEADLINE_MARGIN_SECONDS + 2 * slowest:
                            todo.clear()
                            break
                        opened, first = first, None
                        fetching.add(
                            fetch_pool.submit(self._timed_fetch, source, upload, todo.popleft(), stats, opened)
                        )
                    if not fetching and not uploading:
                        break
                    pending: list[Future[Any]] = [*fetching, *uploading]
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fetched in [f for f in fetching if f in done]:
                        fetching.discard(fetched)
                        number, data, seconds = fetched.result()
                        slowest = max(slowest, seconds)
                        start, _end = upload.part_range(number)
                        uploading.add(upload_pool.submit(upload.upload_and_release, number, data, start))
                    for uploaded in [f for f in uploading if f in done]:
                        uploading.discard(uploaded)
                        upload.add(uploaded.result())
                    if on_checkpoint is not None and self._clock() - last_saved >= self._checkpoint_every:
                        on_checkpoint(upload.checkpoint())
                        last_saved = self._clock()
            except BaseException:
                for fetch in fetching:
                    fetch.cancel()
                for part in uploading:
                    part.cancel()
                raise
            finally:
                if first is not None:
                    first.close()
        return not upload.missing_parts()

    def _timed_fetch(
        self, source: _Source, upload: _Upload, number: int, stats: _Stats, opened: requests.Response | None
    ) -> tuple[int, PartBuffer, float]:
        started = self._clock()
        data = self._fetch_part(source, upload, number, stats, opened)
        return number, data, self._clock() - started

    def _fetch_part(
        self, source: _Source, upload: _Upload, number: int, stats: _Stats, opened: requests.Response | None = None
    ) -> PartBuffer:
        """The bytes of one part, resuming with Range after a dropped connection.

        Read straight into one buffer of the part's size: the part is held once, not as chunks plus a copy.
        The buffer is an anonymous memory map, returned to the system as soon as it is closed: heap buffers
        of this size are kept by the allocator's per-thread arenas after they are freed, which made the peak
        memory grow well past parts-in-flight × part size.
        """
        start, end = upload.part_range(number)
        length = end - start + 1
        buffer = PartBuffer(length)
        view = memoryview(buffer.map)
        try:
            self._read_part_into(view, source, upload, number, stats, opened)
        except BaseException:
            view.release()
            buffer.close()
            raise
        view.release()
        return buffer

    def _read_part_into(
        self,
        view: memoryview,
        source: _Source,
        upload: _Upload,
        number: int,
        stats: _Stats,
        opened: requests.Response | None,
    ) -> None:
        start, end = upload.part_range(number)
        length = end - start + 1
        got = 0
        failures = 0
        while got < length:
            generation = source.generation
            try:
                if opened is not None:
                    response, opened = opened, None
                else:
                    response, generation = source.open(start + got, end)
                if got:
                    stats.add("resumes")
                with response:
                    self._check_content_range(response, start + got, end, upload.size, source.host)
                    while got < length:
                        n = response.raw.readinto(view[got : min(got + _CHUNK, length)])
                        if not n:
                            break
                        got += n
                        stats.add("bytes_received", n)
                        self._report(n, upload.size)
                    if got == length and response.raw.read(1):
                        raise IntegrityError(f"The download on {source.host} sent more bytes than the range asked for.")
                if got < length:
                    raise _Truncated()
            except _UrlExpired:
                source.refresh(generation)
            except _SourceIgnoredRange as ignored:
                ignored.response.close()
                raise TransferFailed(
                    f"The download on {source.host} stopped honouring Range mid-transfer; it will be retried."
                ) from None
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, _Truncated) as exc:
                failures += 1
                if failures >= self._settings.max_attempts:
                    raise TransferFailed(
                        f"Part {number} from {source.host} failed {failures} times ({describe_exception(exc)})."
                    ) from None
                logger.info("part %d: %s after %d bytes; resuming", number, describe_exception(exc), got)
                self._sleep(min(0.2 * 2**failures, 5.0))

    # Stream mode: the source ignores Range, so the body is read in order and cut into parts.

    def _open_stream(self, source: _Source, size: int, received: int, stats: _Stats) -> tuple[requests.Response, bool]:
        """Open the stream at ``received``. Returns (response, restarted-from-zero)."""
        while True:
            generation = source.generation
            try:
                if received == 0:
                    response, _ = source.open(0, None)
                    return response, False
                response, _ = source.open(received, None)
            except _SourceIgnoredRange as ignored:
                stats.add("restarts")
                logger.info("the source ignored Range on resume; restarting from byte 0")
                return ignored.response, True
            except _UrlExpired:
                source.refresh(generation)
                continue
            try:
                self._check_content_range(response, received, size - 1, size, source.host)
            except BaseException:
                response.close()
                raise
            stats.add("resumes")
            return response, False

    def _streamed(self, source: _Source, upload: _Upload, first: requests.Response | None, stats: _Stats) -> None:
        response = first
        received = 0
        number = 1
        failures = 0
        buffer = _Chunks()
        limit = max(1, min(self._settings.concurrency, 2))
        with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="upload") as pool:
            in_flight: set[Future[PartRecord]] = set()
            while True:
                try:
                    if response is None:
                        response, restarted = self._open_stream(source, upload.size, received, stats)
                        if restarted:
                            # Let uploads in flight finish, then overwrite every part from byte 0.
                            self._collect(upload, in_flight, limit=0)
                            in_flight = set()
                            upload.reset()
                            self._report(-received, upload.size)
                            received, number, buffer = 0, 1, _Chunks()
                    if received == 0:
                        self._check_length(response, upload.size, source.host)
                    with response:
                        for chunk in response.iter_content(_CHUNK):
                            if received + len(chunk) > upload.size:
                                raise IntegrityError(
                                    f"The download on {source.host} is longer than the job's fileSize of "
                                    f"{upload.size} bytes; not landing it."
                                )
                            buffer.append(chunk)
                            received += len(chunk)
                            stats.add("bytes_received", len(chunk))
                            self._report(len(chunk), upload.size)
                            while len(buffer) >= upload.part_size:
                                in_flight = self._collect(upload, in_flight, limit=limit - 1)
                                data = buffer.take(upload.part_size)
                                start = (number - 1) * upload.part_size
                                in_flight.add(pool.submit(upload.upload_part, number, data, start))
                                number += 1
                    response = None
                    if received < upload.size:
                        raise _Truncated()
                    break
                except (requests.RequestException, OSError, _Truncated) as exc:
                    response = None
                    failures += 1
                    if failures >= self._settings.max_attempts:
                        raise TransferFailed(
                            f"The download from {source.host} kept failing ({describe_exception(exc)}) after "
                            f"{received} of {upload.size} bytes."
                        ) from None
                    # Whole parts already went to S3 and the partial one stays in `buffer`, so the
                    # resume continues exactly at `received`.
                    logger.info(
                        "stream from %s broke after %d bytes (%s); resuming",
                        source.host,
                        received,
                        describe_exception(exc),
                    )
                    self._sleep(min(0.2 * 2**failures, 5.0))
            if buffer:
                start = (number - 1) * upload.part_size
                in_flight.add(pool.submit(upload.upload_part, number, buffer.take(len(buffer)), start))
            self._collect(upload, in_flight, limit=0)

    @staticmethod
    def _collect(upload: _Upload, in_flight: set[Future[PartRecord]], *, limit: int) -> set[Future[PartRecord]]:
        """Wait until at most ``limit`` uploads are in flight, recording the finished ones."""
        while len(in_flight) > limit:
            done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                upload.add(future.result())
        return in_flight

    def _read_range(self, source: _Source, start: int, end: int, size: int) -> bytes:
        for attempt in range(self._settings.max_attempts):
            generation = source.generation
            try:
                response, _ = source.open(start, end)
                with response:
                    self._check_content_range(response, start, end, size, source.host)
                    data = response.content
                if len(data) == end - start + 1:
                    return data
            except _UrlExpired:
                source.refresh(generation)
            except _SourceIgnoredRange as ignored:
                ignored.response.close()
                raise TransferFailed(f"The download on {source.host} stopped honouring Range.") from None
            except (requests.RequestException, OSError) as exc:
                logger.info("reading bytes %d-%d failed (%s); retrying", start, end, describe_exception(exc))
            self._sleep(min(0.2 * 2**attempt, 5.0))
        raise TransferFailed(f"Could not read bytes {start}-{end} from {source.host}.")

    @staticmethod
    def _check_length(response: requests.Response, size: int, host: str) -> None:
        header = response.headers.get("Content-Length")
        if header is not None and header.isdigit() and int(header) != size:
            response.close()
            raise IntegrityError(
                f"The download on {host} is {header} bytes but the job's fileSize says {size}; not landing it."
            )

    def _report(self, amount: int, total: int) -> None:
        if self._progress is not None:
            self._progress(amount, total)

    def _complete(
        self,
        upload: _Upload,
        job: ExportJob,
        source: _Source,
        replace: bool,
        ranged: bool,
        stats: _Stats,
        started_at: datetime,
    ) -> LandedObject:
        total = upload.bytes_done
        if total != upload.size:
            raise IntegrityError(f"Received {total} bytes for job {job.id} but its fileSize is {upload.size}.")
        if not upload.tail_complete():
            # Resumed: the last bytes went to S3 in an earlier invocation. Read them again (<= 64 KiB).
            upload.set_tail(self._read_range(source, upload.tail_start, upload.size - 1, upload.size))
        kind = detect_kind(upload.head, upload.tail)
        if kind is None:
            raise IntegrityError(
                f"The file of job {job.id} ({job.filename}) is neither parquet (PAR1 at both ends) nor a zip "
                "archive; not landing it."
            )
        if kind == "zip" and job.filename.endswith(".parquet"):
            logger.warning("job %s: %s is a zip archive by its bytes, despite its name", job.id, job.filename)
        crc = upload.combined_crc()
        try:
            result = upload.complete(crc, replace=replace)
        except LandingConflict:
            # Another run landed the same key between our check and our completion.
            existing = self._existing(upload.bucket, upload.key, upload.size, job)
            if existing is None:
                raise
            return existing
        head = self._s3.head_object(Bucket=upload.bucket, Key=upload.key, ChecksumMode="ENABLED")
        recorded = head.get("ChecksumCRC32")
        if head["ContentLength"] != upload.size or recorded != checksum.to_base64(crc):
            raise IntegrityError(
                f"S3 recorded {head['ContentLength']} bytes with CRC32 {recorded} for s3://{upload.bucket}/"
                f"{upload.key}, but {upload.size} bytes with CRC32 {checksum.to_base64(crc)} were sent."
            )
        stats.add("parts_uploaded", len(upload.parts))
        landed = LandedObject(
            bucket=upload.bucket,
            key=upload.key,
            bytes=upload.size,
            checksum_crc32=checksum.to_base64(crc),
            content_kind=kind,
            job_id=job.id,
            already_existed=False,
            source_host=source.host,
            ranged=ranged,
            parts=len(upload.parts),
            version_id=result.get("VersionId"),
            started_at=started_at,
            finished_at=datetime.now(UTC),
            stats=dict(stats.values),
        )
        logger.info(
            "landed s3://%s/%s (%d bytes, %s, crc32 %s, %d parts, %s)",
            landed.bucket,
            landed.key,
            landed.bytes,
            kind,
            landed.checksum_crc32,
            landed.parts,
            "ranged" if ranged else "streamed",
        )
        return landed


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


class _PartBody(SeekableReader):
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
    """One part's bytes in an anonymous memory map (see ``Transfer._fetch_part``)."""

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


class _Chunks:
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


class UploadGone(Exception):
    """The multipart upload named by a checkpoint no longer exists (aborted, or expired by lifecycle)."""


class _Truncated(Exception):
    def __str__(self) -> str:
        return "the response ended before the whole file arrived"


def detect_kind(head: bytes, tail: bytes) -> str | None:
    """What the bytes are: ``parquet``, ``zip`` or None. Never decided by the file name."""
    if head[:4] == PARQUET_MAGIC and tail[-4:] == PARQUET_MAGIC:
        return "parquet"
    if head[:4] == ZIP_LOCAL_HEADER and ZIP_END_OF_CENTRAL_DIR in tail:
        return "zip"
    return None


class _Upload:
    """One S3 multipart upload and the parts that are in it."""

    def __init__(
        self, s3: S3Client, bucket: str, key: str, upload_id: str, job_id: str, size: int, part_size: int
    ) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.key = key
        self.upload_id = upload_id
        self.job_id = job_id
        self.size = size
        self.part_size = part_size
        self.parts: dict[int, PartRecord] = {}
        self.head = b""
        self._tail = bytearray()
        self._tail_seen: set[int] = set()
        self._lock = threading.Lock()
        self._aborted = False

    @property
    def part_count(self) -> int:
        return max(1, math.ceil(self.size / self.part_size))

    @classmethod
    def create(cls, s3: S3Client, bucket: str, key: str, job: ExportJob, size: int, part_size: int) -> _Upload:
        try:
            response = s3.create_multipart_upload(
                Bucket=bucket,
                Key=key,
                ContentType="application/octet-stream",
                ChecksumAlgorithm="CRC32",
                ChecksumType="FULL_OBJECT",
                Metadata={
                    "omborigrid-job-id": job.id,
                    "omborigrid-tenant-id": job.tenant_id,
                    "omborigrid-data-date-from": job.date_from.isoformat(),
                    "omborigrid-data-date-to": job.date_to.isoformat(),
                    "omborigrid-source-filename": job.filename,
                },
            )
        except ClientError as exc:
            raise TransferFailed(
                f"Could not start an upload to s3://{bucket}/{key}: {describe_exception(exc)}"
            ) from None
        return cls(s3, bucket, key, response["UploadId"], job.id, size, part_size)

    @classmethod
    def resume(cls, s3: S3Client, checkpoint: Checkpoint) -> _Upload:
        upload = cls(
            s3,
            checkpoint.bucket,
            checkpoint.key,
            checkpoint.upload_id,
            checkpoint.job_id,
            checkpoint.size,
            checkpoint.part_size,
        )
        upload.head = checkpoint.head
        listed = upload._list_parts()
        for number, crc in checkpoint.part_crcs.items():
            seen = listed.get(number)
            start, end = upload.part_range(number)
            # Trust a part only if S3 has it at the size it must have (and the CRC, where S3 reports it).
            if seen is None or seen["Size"] != end - start + 1 or number > upload.part_count:
                logger.warning("part %d of the checkpoint is not in S3 as recorded; fetching it again", number)
                continue
            reported = seen.get("ChecksumCRC32")
            if reported and checksum.from_base64(reported) != crc:
                logger.warning("part %d's CRC in S3 differs from the checkpoint; fetching it again", number)
                continue
            upload.parts[number] = PartRecord(number, int(seen["Size"]), crc, str(seen["ETag"]))
        logger.info("resuming upload for job %s: %d parts already in S3", checkpoint.job_id, len(upload.parts))
        return upload

    def _list_parts(self) -> dict[int, Any]:
        parts: dict[int, Any] = {}
        marker = 0
        while True:
            try:
                response = self._s3.list_parts(
                    Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumberMarker=marker
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code == "NoSuchUpload":
                    raise UploadGone() from None
                raise TransferFailed(f"Could not list the parts of the upload: {describe_exception(exc)}") from None
            for part in response.get("Parts", []):
                parts[part["PartNumber"]] = part
            if not response.get("IsTruncated"):
                return parts
            marker = int(response.get("NextPartNumberMarker", 0))

    def part_range(self, number: int) -> tuple[int, int]:
        start = (number - 1) * self.part_size
        return start, min(start + self.part_size, self.size) - 1

    def missing_parts(self) -> list[int]:
        with self._lock:
            return [n for n in range(1, self.part_count + 1) if n not in self.parts]

    def first_missing_range(self) -> tuple[int | None, int]:
        missing = self.missing_parts()
        if not missing:
            return None, 0
        return self.part_range(missing[0])

    @property
    def bytes_done(self) -> int:
        with self._lock:
            return sum(p.size for p in self.parts.values())

    def reset(self) -> None:
        with self._lock:
            self.parts.clear()
            self.head = b""
            self._tail = bytearray()
            self._tail_seen = set()

    def add(self, record: PartRecord) -> None:
        with self._lock:
            self.parts[record.number] = record

    def upload_and_release(self, number: int, data: PartBuffer, start: int) -> PartRecord:
        try:
            with memoryview(data.map) as view:
                return self.upload_part(number, view, start)
        finally:
            data.close()

    def upload_part(self, number: int, data: bytes | memoryview, start: int) -> PartRecord:
        if not data:
            raise IntegrityError("An empty part cannot be uploaded.")
        self._capture_edges(data, start)
        crc = checksum.crc32_of(data)
        body = _PartBody(data)
        try:
            response = self._s3.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=cast("IO[bytes]", body),
                ChecksumCRC32=checksum.to_base64(crc),
            )
        except ClientError as exc:
            raise TransferFailed(f"Uploading part {number} to S3 failed: {describe_exception(exc)}") from None
        finally:
            body.close()
        return PartRecord(number, len(data), crc, response["ETag"])

    @property
    def tail_start(self) -> int:
        return max(0, self.size - TAIL_BYTES)

    def tail_part_numbers(self) -> set[int]:
        """The parts that hold some of the last TAIL_BYTES."""
        return set(range(self.tail_start // self.part_size + 1, self.part_count + 1))

    def tail_complete(self) -> bool:
        """Whether this process saw every part of the tail (not so after resuming from a checkpoint)."""
        with self._lock:
            return self.tail_part_numbers() <= self._tail_seen

    def _capture_edges(self, data: bytes | memoryview, start: int) -> None:
        end = start + len(data)
        with self._lock:
            if start == 0:
                self.head = bytes(data[:8])
            if end > self.tail_start:
                if len(self._tail) != self.size - self.tail_start:
                    self._tail = bytearray(self.size - self.tail_start)
                lo = max(start, self.tail_start)
                self._tail[lo - self.tail_start : end - self.tail_start] = data[lo - start :]
                self._tail_seen.add(start // self.part_size + 1)

    @property
    def tail(self) -> bytes:
        with self._lock:
            return bytes(self._tail)

    def set_tail(self, data: bytes) -> None:
        with self._lock:
            self._tail = bytearray(data)
            self._tail_seen = self.tail_part_numbers()

    def combined_crc(self) -> int:
        with self._lock:
            ordered = [self.parts[n] for n in sorted(self.parts)]
        return checksum.combine_parts((p.crc32, p.size) for p in ordered)

    def checkpoint(self) -> Checkpoint:
        with self._lock:
            crcs = {n: p.crc32 for n, p in self.parts.items()}
        return Checkpoint(
            self.job_id, self.bucket, self.key, self.upload_id, self.size, self.part_size, crcs, self.head
        )

    def complete(self, crc: int, *, replace: bool) -> dict[str, Any]:
        with self._lock:
            ordered = [self.parts[n] for n in sorted(self.parts)]
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.key,
            "UploadId": self.upload_id,
            "MultipartUpload": {
                "Parts": [
                    {"PartNumber": p.number, "ETag": p.etag, "ChecksumCRC32": checksum.to_base64(p.crc32)}
                    for p in ordered
                ]
            },
            "ChecksumCRC32": checksum.to_base64(crc),
            "ChecksumType": "FULL_OBJECT",
        }
        if not replace:
            kwargs["IfNoneMatch"] = "*"
        try:
            return dict(self._s3.complete_multipart_upload(**kwargs))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                self.abort()
                raise LandingConflict(f"s3://{self.bucket}/{self.key} was landed by another run meanwhile.") from None
            if code in ("BadDigest", "InvalidPart", "InvalidRequest"):
                self.abort()
                raise IntegrityError(
                    f"S3 refused to complete s3://{self.bucket}/{self.key}: {describe_exception(exc)}"
                ) from None
            raise TransferFailed(f"Completing the upload to S3 failed: {describe_exception(exc)}") from None

    def abort(self) -> None:
        if self._aborted:
            return
        self._aborted = True
        with contextlib.suppress(ClientError):
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
