"""The export use cases, shared by the Lambda handlers and the CLI.

``create`` asks for a job, ``check`` polls it once within bounds, ``land`` moves its file into S3 and
writes the manifest last (the day's commit marker). ``land`` answers :class:`Landed` or :class:`Continued`,
never a pair of optionals. Everything it writes or removes derives from the requested :class:`JobIdentity`
(DESIGN "Identity"): a later answer of the API can confirm the identity, never redirect the landing.
Collaborators (API client, S3 client, HTTP sessions, clock, content prover) are passed in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import requests
from botocore.exceptions import ClientError

from .archive import ArchiveLander, ProverFactory
from .client import OmboriGridClient
from .errors import ExportFailed, GarbledResponse, IntegrityError, OmboriGridExportError
from .manifest import Manifest, build_archive_manifest, build_manifest, read_manifest, read_manifest_at, write_manifest
from .models import ExportJob, ExportRequest, JobIdentity, JobStatus
from .parquet_proof import ParquetProver
from .polling import PollState
from .redact import describe_exception
from .settings import ArchiveLimits, Settings
from .transfer import (
    ZIP_LOCAL_HEADER,
    Checkpoint,
    CheckpointSink,
    Continued,
    LandedObject,
    ProgressCallback,
    Transfer,
    TransferOutcome,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Landed:
    """The export landed (now, or by an earlier run: ``manifest.already_existed``)."""

    manifest: Manifest


#: A landing either finished (``Landed``) or ran out of the invocation's time first (``Continued``, the
#: transfer's own: land again with ``resume=checkpoint``).
LandingResult = Landed | Continued


class Exporter:
    def __init__(
        self,
        settings: Settings,
        client: OmboriGridClient,
        s3: S3Client,
        *,
        session_factory: Callable[[], requests.Session] | None = None,
        progress: ProgressCallback | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        prover_for: ProverFactory | None = None,
        archive_limits: ArchiveLimits | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.s3 = s3
        self._session_factory = session_factory
        self._progress = progress
        self._now = now
        # Every landing is proven from its parquet footer, unless a caller passes another prover.
        self._prover_for: ProverFactory = prover_for or (
            lambda identity, _table: ParquetProver(identity, settings.proof)
        )
        self._archive_limits = archive_limits or settings.archive

    def create(self, request: ExportRequest) -> ExportJob:
        return self.client.create_job(request)

    def check(self, identity: JobIdentity, poll: PollState) -> tuple[ExportJob | None, PollState]:
        """One status check: the job as it is now and the next poll state (or a typed error).

        An answer that cannot be read (:class:`GarbledResponse`, a 200 cut short by a proxy) gives no job: it
        costs one check and the next wait, and only the poll state's limit of them in a row fails the export.
        The CLI and the state machine share this rule here.
        """
        try:
            job = self.client.get_pinned_job(identity)
        except GarbledResponse as exc:
            next_poll = poll.after_garbled(exc)
            logger.warning("%s: unreadable status answer (%s); asking again", identity.label, exc)
            return None, next_poll
        next_poll = poll.after_check(job, self._now())
        logger.info(
            "job %s is %s after %d checks (next wait %ds)",
            job.id,
            job.status.value,
            next_poll.attempt,
            next_poll.wait_seconds,
        )
        return job, next_poll

    def key_for(self, identity: JobIdentity, filename: str) -> str:
        """The final key of a single-file delivery: from the requested identity, never a later answer."""
        request = identity.request
        return self.settings.layout.key_for(
            tenant_id=request.tenant_id,
            date_from=request.date_from,
            date_to=request.date_to,
            job_id=identity.job_id,
            filename=filename,
        )

    def land(
        self,
        identity: JobIdentity,
        *,
        bucket: str,
        replace: bool = False,
        resume: Checkpoint | None = None,
        time_left: Callable[[], float] | None = None,
        keep_upload_on_failure: bool = False,
        previous_manifest_key: str | None = None,
        on_checkpoint: CheckpointSink | None = None,
    ) -> LandingResult:
        """Land the job's file (or, for an archive, its members) and write the manifest last.

        ``previous_manifest_key`` names the manifest of an earlier landing of the same tenant/dates; with
        ``replace`` its files that the new landing did not overwrite are removed afterwards, so a forced
        re-export never leaves two copies of a day behind.
        """
        # Always read the job again: the URL from an earlier check may have expired meanwhile.
        job = self.client.get_pinned_job(identity)
        if job.status is not JobStatus.DONE:
            raise ExportFailed(f"Job {job.id} was expected to be done but is {job.status.value}.")
        transfer = Transfer(
            self.s3,
            self.settings.transfer,
            allow_local_urls=self.settings.allow_local_urls,
            session_factory=self._session_factory,
            progress=self._progress,
        )

        def refresh() -> ExportJob:
            return self.client.get_pinned_job(identity)

        staging_key = self.settings.archive_layout.staging_key(
            tenant_id=identity.request.tenant_id, job_id=identity.job_id, filename=job.filename
        )
        single_key = self.key_for(identity, job.filename)
        if not replace:
            # A rerun of an export that already landed, or a retry of one whose completion went through before
            # its invocation died (its checkpoint names a finished upload): answer without touching the source.
            existing = transfer.existing(job, bucket=bucket, key=single_key)
            if existing is not None:
                return Landed(self._committed(identity, job, existing))
        # Decided by the bytes, never by the file name.
        is_archive = (
            resume.key == staging_key if resume is not None else transfer.peek(job, refresh) == ZIP_LOCAL_HEADER
        )
        outcome: TransferOutcome = transfer.land(
            job,
            refresh,
            bucket=bucket,
            key=staging_key if is_archive else single_key,
            replace=replace and not is_archive,
            resume=resume,
            time_left=time_left,
            keep_upload_on_failure=keep_upload_on_failure,
            on_checkpoint=on_checkpoint,
            # An archive is proven member by member once it is staged; a single file before it is published.
            prover=None if is_archive else self._prover_for(identity, None),
        )
        if isinstance(outcome, Continued):
            return outcome
        if is_archive:
            manifest = self._land_archive(identity, job, outcome.object, replace=replace, time_left=time_left)
        elif outcome.object.already_existed:
            return Landed(self._committed(identity, job, outcome.object))
        else:
            manifest = build_manifest(identity, job, outcome.object, proof=outcome.proof, landed_at=self._now())
            write_manifest(self.s3, manifest)
        if replace and previous_manifest_key:
            self._remove_replaced(bucket, previous_manifest_key, manifest)
        return Landed(manifest)

    def _committed(self, identity: JobIdentity, job: ExportJob, existing: LandedObject) -> Manifest:
        """The manifest of a file that is already under its key: the one beside it when it is valid and
        names this tenant and day; otherwise (leftovers of a run that died before its manifest) a new one,
        written now, since the file itself was verified."""
        try:
            before = read_manifest(self.s3, existing.bucket, existing.key)
        except IntegrityError as exc:
            logger.warning("the manifest beside %s is not valid (%s); writing it again", existing.key, exc)
            before = None
        if before is not None and before.is_for(identity) and before.names(existing.key):
            return before.as_already_existed()
        # Verified when it landed; a run that died before its manifest left no proof of it to record. The document
        # is written for the first time now, so it says so (the answer to this rerun says "already existed").
        manifest = build_manifest(identity, job, existing, proof=None, landed_at=self._now()).as_written()
        write_manifest(self.s3, manifest)
        return manifest.as_already_existed()

    def _land_archive(
        self,
        identity: JobIdentity,
        job: ExportJob,
        staged: LandedObject,
        *,
        replace: bool,
        time_left: Callable[[], float] | None,
    ) -> Manifest:
        if staged.content_kind != "zip":
            raise IntegrityError(f"The delivery of {identity.label} starts like a zip but is not a valid zip archive.")
        lander = ArchiveLander(
            self.s3,
            layout=self.settings.archive_layout,
            part_size=self.settings.transfer.part_size,
            limits=self._archive_limits,
            prover_for=self._prover_for,
            time_left=time_left,
        )
        contents = lander.land(staged, identity, job, replace=replace)
        manifest = build_archive_manifest(identity, job, staged, contents, landed_at=self._now())
        try:
            # Written as a first landing even when a retry found members landed already (its answer says so).
            write_manifest(self.s3, manifest.as_written())
        except OmboriGridExportError:
            # Without its manifest the day is not landed: take the members back rather than leave leftovers.
            lander.remove(contents.entries)
            raise
        try:
            self.s3.delete_object(Bucket=staged.bucket, Key=staged.key)
        except ClientError as exc:
            # Harmless: the bucket's lifecycle rule expires the staging area.
            logger.warning("could not delete the staged archive %s: %s", staged.key, describe_exception(exc))
        return manifest

    def _remove_replaced(self, bucket: str, previous_manifest_key: str, manifest: Manifest) -> None:
        """Remove what a forced re-export replaced, only when the previous manifest is valid and lands the
        same tenant and dates: a manifest naming another tenant or day is never acted on."""
        try:
            previous = read_manifest_at(self.s3, bucket, previous_manifest_key)
        except OmboriGridExportError as exc:
            logger.warning("the previous manifest %s cannot be read (%s); nothing removed", previous_manifest_key, exc)
            return
        if previous is None or previous.job_id == manifest.job_id:
            return
        if not previous.is_for(manifest.identity) or previous.bucket != bucket:
            logger.warning(
                "the previous manifest %s is for %s %s..%s in %s, not the re-exported day; nothing removed",
                previous_manifest_key,
                previous.tenant_id,
                previous.date_from,
                previous.date_to,
                previous.bucket,
            )
            return
        keep = {f.key for f in manifest.files} | {manifest.manifest_key}
        stale = [f.key for f in previous.files if f.key not in keep]
        if previous_manifest_key not in keep:
            stale.append(previous_manifest_key)
        removed = 0
        for key in stale:
            try:
                self.s3.delete_object(Bucket=bucket, Key=key)
                removed += 1
            except ClientError as exc:
                logger.warning("could not remove the replaced file %s: %s", key, describe_exception(exc))
        if removed:
            logger.info("removed %d files replaced by job %s", removed, manifest.job_id)
