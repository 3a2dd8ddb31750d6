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

from .client import OmboriGridClient
from .errors import ExportFailed
from .manifest import build_manifest, read_manifest, write_manifest
from .models import ExportJob, ExportRequest, JobStatus
from .polling import PollState
from .settings import Settings
from .transfer import Checkpoint, ProgressCallback, Transfer, TransferOutcome

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class LandingResult:
    """A finished landing (with its manifest) or a checkpoint to continue from."""

    manifest: dict[str, Any] | None = None
    checkpoint: Checkpoint | None = None

    @property
    def complete(self) -> bool:
        return self.manifest is not None


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

    def check(self, job_id: str, poll: PollState) -> tuple[ExportJob, PollState]:
        """One status check: the job as it is now and the next poll state (or a typed error)."""
        job = self.client.get_job(job_id)
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
        job_id: str,
        *,
        bucket: str,
        replace: bool = False,
        resume: Checkpoint | None = None,
        time_left: Callable[[], float] | None = None,
        keep_upload_on_failure: bool = False,
    ) -> LandingResult:
        # Always read the job again: the URL from an earlier check may have expired meanwhile.
        job = self.client.get_job(job_id)
        if job.status is not JobStatus.DONE:
            raise ExportFailed(f"Job {job.id} was expected to be done but is {job.status.value}.")
        key = self.key_for(job)
        transfer = Transfer(
            self.s3,
            self.settings.transfer,
            allow_local_urls=self.settings.allow_local_urls,
            session_factory=self._session_factory,
            progress=self._progress,
        )
        outcome: TransferOutcome = transfer.land(
            job,
            lambda: self.client.get_job(job_id),
            bucket=bucket,
            key=key,
            replace=replace,
            resume=resume,
            time_left=time_left,
            keep_upload_on_failure=keep_upload_on_failure,
        )
        if outcome.checkpoint is not None:
            return LandingResult(checkpoint=outcome.checkpoint)
        assert outcome.landed is not None
        if outcome.landed.already_existed:
            existing = read_manifest(self.s3, bucket, key)
            if existing is not None:
                existing["alreadyExisted"] = True
                return LandingResult(manifest=existing)
        manifest = build_manifest(job, outcome.landed, now=self._now())
        write_manifest(self.s3, manifest)
        return LandingResult(manifest=manifest)
