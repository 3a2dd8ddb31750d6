"""The export use cases, shared by the Lambda handlers and the CLI.

``create`` asks for a job, ``check`` polls it once within bounds, ``land`` moves its file into S3 and
writes the manifest. Collaborators (API client, S3 client, HTTP sessions, clock) are passed in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import requests
from botocore.exceptions import ClientError

from .archive import explode
from .client import OmboriGridClient
from .errors import ExportFailed, GarbledResponse, IntegrityError
from .manifest import build_archive_manifest, build_manifest, read_manifest, read_manifest_at, write_manifest
from .models import ExportJob, ExportRequest, JobIdentity, JobStatus
from .polling import PollState
from .redact import describe_exception
from .settings import Settings
from .transfer import (
    ZIP_LOCAL_HEADER,
    Checkpoint,
    CheckpointSink,
    LandedObject,
    ProgressCallback,
    Transfer,
    TransferOutcome,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class LandingResult:
    """A finished landing (with its manifest) or a checkpoint to continue from."""

    manifest: dict[str, Any] | None = None
    checkpoint: Checkpoint | None = None


class Exporter:
    def __init__(
        self,
        settings: Settings,
        client: OmboriGridClient,
        s3: S3Client,
        *,
        session_factory: Callable[[], requests.Session] = requests.Session,
        progress: ProgressCallback | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.client = client
        self.s3 = s3
        self._session_factory = session_factory
        self._progress = progress
        self._now = now

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

    def key_for(self, job: ExportJob) -> str:
        return self.settings.layout.key_for(
            tenant_id=job.tenant_id,
            date_from=job.date_from,
            date_to=job.date_to,
            job_id=job.id,
            filename=job.filename,
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
        """Land the job's file (or, for an archive, its members) and write the manifest.

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
            tenant_id=job.tenant_id, job_id=job.id, filename=job.filename
        )
        single_key = self.key_for(job)
        if resume is None and not replace:
            # A rerun of an export that already landed: answer without touching the source at all.
            existing = transfer.existing(job, bucket=bucket, key=single_key)
            if existing is not None:
                manifest = read_manifest(self.s3, bucket, single_key) or build_manifest(job, existing, now=self._now())
                manifest["alreadyExisted"] = True
                return LandingResult(manifest=manifest)
        if resume is not None:
            is_archive = resume.key == staging_key
        else:
            # Decided by the bytes, never by the file name.
            is_archive = transfer.peek(job, refresh) == ZIP_LOCAL_HEADER
        key = staging_key if is_archive else single_key
        outcome: TransferOutcome = transfer.land(
            job,
            refresh,
            bucket=bucket,
            key=key,
            replace=replace and not is_archive,
            resume=resume,
            time_left=time_left,
            keep_upload_on_failure=keep_upload_on_failure,
            on_checkpoint=on_checkpoint,
        )
        if outcome.checkpoint is not None:
            return LandingResult(checkpoint=outcome.checkpoint)
        assert outcome.landed is not None
        if is_archive:
            manifest = self._explode(job, outcome.landed, replace=replace)
        elif outcome.landed.already_existed and (landed_before := read_manifest(self.s3, bucket, key)) is not None:
            landed_before["alreadyExisted"] = True
            return LandingResult(manifest=landed_before)
        else:
            manifest = build_manifest(job, outcome.landed, now=self._now())
        write_manifest(self.s3, manifest)
        if replace and previous_manifest_key:
            self._remove_replaced(bucket, previous_manifest_key, manifest)
        return LandingResult(manifest=manifest)

    def _explode(self, job: ExportJob, staged: LandedObject, *, replace: bool) -> dict[str, Any]:
        if staged.content_kind != "zip":
            raise IntegrityError(f"The delivery of job {job.id} starts like a zip but is not a valid zip archive.")
        members, skipped = explode(
            self.s3,
            bucket=staged.bucket,
            staged_key=staged.key,
            staged_size=staged.bytes,
            job=job,
            layout=self.settings.archive_layout,
            part_size=self.settings.transfer.part_size,
            replace=replace,
        )
        manifest = build_archive_manifest(job, staged, members, skipped, now=self._now())
        try:
            self.s3.delete_object(Bucket=staged.bucket, Key=staged.key)
        except ClientError as exc:
            # Harmless: the bucket's lifecycle rule expires the staging area.
            logger.warning("could not delete the staged archive %s: %s", staged.key, describe_exception(exc))
        return manifest

    def _remove_replaced(self, bucket: str, previous_manifest_key: str, manifest: dict[str, Any]) -> None:
        previous = read_manifest_at(self.s3, bucket, previous_manifest_key)
        if previous is None or previous.get("jobId") == manifest["jobId"]:
            return
        keep = {f["key"] for f in manifest["files"]} | {manifest["manifestKey"]}
        stale = [f["key"] for f in previous.get("files", []) if f.get("key") not in keep]
        if previous_manifest_key not in keep:
            stale.append(previous_manifest_key)
        for key in stale:
            self.s3.delete_object(Bucket=bucket, Key=key)
        if stale:
            logger.info("removed %d files replaced by job %s", len(stale), manifest["jobId"])
