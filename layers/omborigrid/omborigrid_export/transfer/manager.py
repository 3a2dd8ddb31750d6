"""The front of the transfer: lands one export's file in S3, picking the copy strategy the source allows.

The first request asks for the first missing part with ``Range``. A ``206`` whose ``Content-Range`` matches
means the source serves ranges: :class:`~.ranged.RangedCopy` fetches parts as independent ranges, several at
once. A ``200`` means it does not: :class:`~.streamed.StreamedCopy` cuts the one stream into parts. Either way
the upload completes only after the size, the content kind (by its bytes), the content proof (when a prover
is given; with ranges it runs before any part is uploaded) and the full-object CRC32 check out; close to a
deadline a :class:`~.checkpoint.Checkpoint` is returned instead, and the next call resumes from it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import requests

from .. import checksum
from ..errors import IntegrityError, InvalidInput, LandingConflict, OmboriGridExportError, TransferFailed
from ..models import ExportJob, JobStatus
from ..proof import ContentProver, Proof
from ..redact import host_of
from ..safehttp import pinned_session_factory
from ..settings import TransferSettings
from ..urlsafety import Resolver, system_resolver
from .checkpoint import Checkpoint
from .content import ContentKind
from .context import CheckpointSink, Clock, CopyContext, ProgressCallback, Sleep, TimeLeft
from .limits import CHECKPOINT_EVERY_SECONDS, choose_part_size
from .multipart import MultipartUpload, UploadGone, find_existing, stored_kind, verify_recorded
from .proving import prove_from_stream_tail, prove_with_ranges
from .ranged import RangedCopy
from .reads import probe, read_head, read_range
from .results import Continued, Landed, LandedObject, TransferOutcome
from .retry import CONTINUING, STARTING, Backoff, Retry
from .source import DownloadSource, JobRefresher, TransferStats
from .streamed import StreamedCopy

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import HeadObjectOutputTypeDef

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Landing:
    """One call of :meth:`Transfer.land`: what it lands, where, and how it may end."""

    job: ExportJob
    source: DownloadSource
    bucket: str
    key: str
    replace: bool
    resume: Checkpoint | None
    keep_upload_on_failure: bool
    started_at: datetime
    copy: CopyContext
    prover: ContentProver | None

    @property
    def size(self) -> int:
        return self.source.size


class Transfer:
    """Lands one export's file in S3. Create one per export."""

    def __init__(
        self,
        s3: S3Client,
        settings: TransferSettings | None = None,
        *,
        allow_local_urls: bool = False,
        session_factory: Callable[[], requests.Session] | None = None,
        resolver: Resolver = system_resolver,
        progress: ProgressCallback | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        checkpoint_every: float = CHECKPOINT_EVERY_SECONDS,
    ) -> None:
        self._s3 = s3
        self._checkpoint_every = checkpoint_every
        self._settings = settings or TransferSettings()
        self._allow_local = allow_local_urls
        # Every connection to the download host is resolved, checked and pinned by safehttp, so the address
        # checked is the address connected to; ``resolver`` is the one resolution there is.
        self._session_factory = session_factory or pinned_session_factory(
            allow_local=allow_local_urls, resolver=resolver
        )
        self._progress = progress
        self._clock = clock
        self._sleep = sleep

    def land(
        self,
        job: ExportJob,
        refresh_job: JobRefresher,
        *,
        bucket: str,
        key: str,
        replace: bool = False,
        resume: Checkpoint | None = None,
        time_left: TimeLeft | None = None,
        keep_upload_on_failure: bool = False,
        on_checkpoint: CheckpointSink | None = None,
        prover: ContentProver | None = None,
    ) -> TransferOutcome:
        """Land ``job``'s file at s3://bucket/key.

        ``refresh_job`` re-reads the job (for a fresh URL). ``replace`` overwrites an existing object
        (a forced re-export); otherwise an existing verified object is left alone and reported.
        ``time_left`` returns the seconds left before the caller must return; when it runs low a
        checkpoint is returned instead of the landed object. ``keep_upload_on_failure`` leaves the
        multipart upload in place on a retryable failure so a retry can resume it (the bucket's
        lifecycle rule removes abandoned ones). ``on_checkpoint`` receives a checkpoint every
        ``checkpoint_every`` seconds while parts land, so a process that is killed can be resumed by the next.
        ``prover`` proves the content from the file's tail (pass one for parquet deliveries; an archive's
        members are proven one by one): before any part is uploaded when the source serves ranges, else
        before the completion. Its proof is on the :class:`Landed` outcome.
        """
        size = _downloadable_size(job)
        started_at = datetime.now(UTC)
        if not replace:
            existing = self._existing(bucket, key, size, job)
            if existing is not None:
                return Landed(existing)
        source = self._source(job, refresh_job)
        landing = _Landing(
            job=job,
            source=source,
            bucket=bucket,
            key=key,
            replace=replace,
            resume=resume,
            keep_upload_on_failure=keep_upload_on_failure,
            started_at=started_at,
            prover=prover,
            copy=CopyContext(
                settings=self._settings,
                clock=self._clock,
                sleep=self._sleep,
                progress=self._progress,
                time_left=time_left,
                on_checkpoint=on_checkpoint,
                checkpoint_every=self._checkpoint_every,
            ),
        )
        try:
            return self._land(landing)
        finally:
            source.close()

    def existing(self, job: ExportJob, *, bucket: str, key: str) -> LandedObject | None:
        """The verified object already under ``key`` for this job's size, or None.

        Raises :class:`LandingConflict` when a different object sits there.
        """
        if job.file_size is None:
            return None
        return self._existing(bucket, key, job.file_size, job)

    def peek(self, job: ExportJob, refresh_job: JobRefresher, length: int = 4) -> bytes:
        """The first ``length`` bytes of the job's file: what it is, decided by its bytes, not its name."""
        _downloadable_size(job)
        source = self._source(job, refresh_job)
        try:
            return read_head(source, length, self._retry(STARTING))
        finally:
            source.close()

    def _retry(self, backoff: Backoff) -> Retry:
        return Retry(attempts=self._settings.max_attempts, backoff=backoff, sleep=self._sleep)

    def _source(self, job: ExportJob, refresh_job: JobRefresher) -> DownloadSource:
        return DownloadSource(
            job,
            refresh_job,
            self._settings,
            allow_local_urls=self._allow_local,
            session_factory=self._session_factory,
            stats=TransferStats(),
        )

    def _existing(
        self, bucket: str, key: str, size: int, job: ExportJob, *, crc32: str | None = None
    ) -> LandedObject | None:
        head = find_existing(self._s3, bucket, key, size=size, crc32=crc32)
        if head is None:
            return None
        logger.info("s3://%s/%s already landed (%d bytes); not rewritten", bucket, key, size)
        return self._landed_object(bucket, key, size, job, head)

    def _landed_object(
        self, bucket: str, key: str, size: int, job: ExportJob, head: HeadObjectOutputTypeDef
    ) -> LandedObject:
        """The object already under ``key`` (``head`` is its HEAD), as an earlier landing; its content kind read
        from its stored bytes."""
        metadata = head.get("Metadata", {})
        return LandedObject(
            bucket=bucket,
            key=key,
            bytes=size,
            checksum_crc32=head["ChecksumCRC32"],
            content_kind=stored_kind(self._s3, bucket, key, size=size),
            job_id=metadata.get("omborigrid-job-id", job.id),
            already_existed=True,
            source_host=host_of(job.download_url or ""),
            version_id=head.get("VersionId"),
        )

    def _land(self, landing: _Landing) -> TransferOutcome:
        upload = self._open_upload(landing)
        try:
            if landing.copy.on_checkpoint is not None and upload.bytes_done == 0:
                # Known from its first moment: a retry after this invocation dies (or fails retryably) resumes
                # this upload instead of starting another and leaving this one open.
                landing.copy.on_checkpoint(upload.checkpoint())
            return self._copy(landing, upload)
        except BaseException as exc:
            retryable = isinstance(exc, OmboriGridExportError) and exc.retryable
            if landing.keep_upload_on_failure and retryable:
                logger.warning("job %s: transfer interrupted; upload kept for a retry to resume", landing.job.id)
            else:
                upload.abort()
            raise

    def _copy(self, landing: _Landing, upload: MultipartUpload) -> TransferOutcome:
        proof: Proof | None = None
        try:
            ranged, first = probe(landing.source, upload, self._retry(STARTING))
            if ranged:
                proof = self._prove_before_upload(landing, first)
                finished = RangedCopy(landing.source, upload, landing.copy, first=first).run()
            else:
                proof = self._stream(landing, upload, first)
                finished = True
            if not finished:
                checkpoint = upload.checkpoint()
                logger.info(
                    "job %s: %d of %d bytes landed so far; continuing in the next invocation",
                    landing.job.id,
                    checkpoint.bytes_done,
                    landing.size,
                )
                return Continued(checkpoint)
            return Landed(self._complete(landing, upload, ranged=ranged), proof)
        except UploadGone:
            return Landed(self._landed_by_another_run(landing, upload), proof)

    def _landed_by_another_run(self, landing: _Landing, upload: MultipartUpload) -> LandedObject:
        """The upload vanished while this transfer used it. When another run of the same job completed it (a
        Download retried while its first invocation still runs resumes the same upload), the object under the
        key is that job's, verified by that run before it completed: this landing is done too."""
        job = landing.job
        try:
            head = find_existing(self._s3, landing.bucket, landing.key, size=landing.size)
        except LandingConflict:
            head = None
        if head is None or head.get("Metadata", {}).get("omborigrid-job-id") != job.id:
            raise TransferFailed(
                f"The multipart upload of job {job.id} to s3://{landing.bucket}/{landing.key} was removed while "
                "this transfer used it (aborted by another run of the same export, or expired); a retry starts "
                "the upload again."
            )
        logger.info("job %s: another run of this export completed the upload meanwhile", job.id)
        landed = self._landed_object(landing.bucket, landing.key, landing.size, job, head)
        kind = ContentKind.detect(upload.head, upload.tail) if upload.tail_complete() else None
        return landed if kind is None else dataclasses.replace(landed, content_kind=kind)

    def _prove_before_upload(self, landing: _Landing, first: requests.Response | None) -> Proof | None:
        """Ranged mode: the proof from two ranged reads of the tail, before any part is uploaded."""
        if landing.prover is None:
            return None
        try:
            return prove_with_ranges(
                landing.prover,
                landing.size,
                lambda start, end: read_range(landing.source, start, end, self._retry(CONTINUING)),
            )
        except BaseException:
            if first is not None:
                first.close()
            raise

    def _stream(self, landing: _Landing, upload: MultipartUpload, first: requests.Response | None) -> Proof | None:
        """Stream mode: copy the stream, keeping its tail for the proof, which is checked before completion."""
        keep = landing.prover.max_tail_bytes if landing.prover is not None else 0
        copy = StreamedCopy(landing.source, upload, landing.copy, first=first, keep_tail=keep)
        copy.run()
        if landing.prover is None:
            return None
        return prove_from_stream_tail(landing.prover, landing.size, copy.tail)

    def _open_upload(self, landing: _Landing) -> MultipartUpload:
        """The checkpoint's upload when it is still there, else a new one."""
        resume, job = landing.resume, landing.job
        if resume is not None:
            if (resume.job_id, resume.bucket, resume.key, resume.size) != (
                job.id,
                landing.bucket,
                landing.key,
                landing.size,
            ):
                raise InvalidInput("The transfer checkpoint belongs to another job, key or size; refusing to resume.")
            try:
                return MultipartUpload.resume(self._s3, resume)
            except UploadGone:
                logger.warning("the upload of the checkpoint is gone (aborted or expired); starting over")
        part_size = choose_part_size(landing.size, self._settings.part_size)
        return MultipartUpload.create(
            self._s3, landing.bucket, landing.key, job, size=landing.size, part_size=part_size
        )

    def _complete(self, landing: _Landing, upload: MultipartUpload, *, ranged: bool) -> LandedObject:
        job, source = landing.job, landing.source
        total = upload.bytes_done
        if total != upload.size:
            raise IntegrityError(f"Received {total} bytes for job {job.id} but its fileSize is {upload.size}.")
        if not upload.tail_complete():
            # Resumed: the last bytes went to S3 in an earlier invocation. Read them again (<= 64 KiB).
            upload.set_tail(read_range(source, upload.tail_start, upload.size - 1, self._retry(CONTINUING)))
        kind = ContentKind.detect(upload.head, upload.tail)
        if kind is None:
            raise IntegrityError(
                f"The file of job {job.id} ({job.filename}) is neither parquet (PAR1 at both ends) nor a zip "
                "archive; not landing it."
            )
        if kind is ContentKind.ZIP and job.filename.endswith(".parquet"):
            logger.warning("job %s: %s is a zip archive by its bytes, despite its name", job.id, job.filename)
        crc = upload.combined_crc()
        try:
            result = upload.complete(crc, replace=landing.replace)
        except LandingConflict:
            # Another run landed the same key between our check and our completion: fine if it is these bytes.
            existing = self._existing(upload.bucket, upload.key, upload.size, job, crc32=checksum.to_base64(crc))
            if existing is None:
                raise
            # Only now that the other completion is visible: this upload is either the one it completed (gone
            # already) or this run's own, which nothing will complete.
            upload.abort()
            return dataclasses.replace(existing, content_kind=kind)  # these bytes, whose kind this run saw
        version_id = result.get("VersionId")
        verify_recorded(
            self._s3, upload.bucket, upload.key, size=upload.size, crc32=checksum.to_base64(crc), version_id=version_id
        )
        source.stats.add("parts_uploaded", len(upload.parts))
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
            version_id=version_id,
            started_at=landing.started_at,
            finished_at=datetime.now(UTC),
            stats=dict(source.stats.values),
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


def _downloadable_size(job: ExportJob) -> int:
    """The size of a job's file that may be downloaded: the job is done, has a URL, and its file is not empty
    (a file of 0 bytes is no parquet file nor archive: nothing valid to land, whatever its bytes would be)."""
    if job.status is not JobStatus.DONE or job.download_url is None or job.file_size is None:
        raise InvalidInput(f"Job {job.id} is not done yet (status {job.status.value}); nothing to download.")
    if job.file_size == 0:
        raise IntegrityError(f"Job {job.id} reports an empty file (fileSize 0); nothing valid to land.")
    return job.file_size
