"""The export use cases, shared by the Lambda handlers and the CLI.

``create`` asks for a job, ``check`` polls it once within bounds, ``land`` moves its file into S3 and
writes the manifest last (the day's commit marker). ``land`` answers :class:`Landed` or :class:`Continued`,
never a pair of optionals. Everything it writes or removes derives from the requested :class:`JobIdentity`
(DESIGN "Identity"): a later answer of the API can confirm the identity, never redirect the landing.
Collaborators (API client, S3 client, HTTP sessions, clock, content prover) are passed in.
"""

from __future__ import annotations

import dataclasses
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
from .lake_facts import SINGLE_FILE_TABLE
from .layout import KeyLayout, quarantine_folder, quarantine_layout
from .manifest import Manifest, build_archive_manifest, build_manifest
from .manifest_store import commit_manifest, read_manifest, read_manifest_at, write_manifest
from .models import ExportJob, ExportRequest, JobIdentity, JobStatus
from .parquet_proof import ParquetProver
from .polling import PollState
from .proof import Proof
from .redact import describe_exception
from .schema_gate import BreakingSchema, SchemaGate
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


@dataclass(frozen=True, slots=True)
class Quarantined:
    """SchemaChangePolicy=quarantine held the delivery back: it landed under ``location`` (``{prefix}/_quarantine/``,
    its manifest there too) and nothing of it under a final key. The day is not landed."""

    manifest: Manifest
    #: ``s3://bucket/{prefix}/_quarantine/tenant=…/dt=…/job=…/``: the folder an operator inspects.
    location: str


#: A landing finished (``Landed``), was held back by its schema (``Quarantined``) or ran out of the invocation's
#: time first (``Continued``, the transfer's own: land again with ``resume=checkpoint``).
LandingResult = Landed | Quarantined | Continued


@dataclass(frozen=True, slots=True, kw_only=True)
class _Destination:
    """Where a landing goes: its tables (the configured layouts) or the quarantine."""

    single_key: str
    archive_layout: KeyLayout


@dataclass(frozen=True, slots=True, kw_only=True)
class _Attempt:
    """One call of :meth:`Exporter.land`: what it lands and how it may end, wherever it goes."""

    identity: JobIdentity
    job: ExportJob
    bucket: str
    resume: Checkpoint | None
    time_left: Callable[[], float] | None
    keep_upload_on_failure: bool
    on_checkpoint: CheckpointSink | None


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
        self._quarantine = quarantine_layout(settings.layout.prefix)

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

    def key_for(self, identity: JobIdentity, filename: str, layout: KeyLayout | None = None) -> str:
        """The final key of a single-file delivery (or its key in ``layout``, the quarantine's): from the requested
        identity, never a later answer."""
        request = identity.request
        return (layout or self.settings.layout).key_for(
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
        gate: SchemaGate | None = None,
    ) -> LandingResult:
        """Land the job's file (or, for an archive, its members) and write the manifest last.

        ``previous_manifest_key`` names the manifest of an earlier landing of the same tenant/dates; with
        ``replace`` its files that the new landing did not overwrite are removed afterwards, so a forced
        re-export never leaves two copies of a day behind. ``gate`` (SchemaChangePolicy=quarantine) judges each
        proven file before it is published; a breaking one sends the whole delivery to quarantine
        (:class:`Quarantined`). A forced re-export is not judged: ``force`` is the operator accepting the change.
        """
        # Always read the job again: the URL from an earlier check may have expired meanwhile.
        job = self.client.get_pinned_job(identity)
        if job.status is not JobStatus.DONE:
            raise ExportFailed(f"Job {job.id} was expected to be done but is {job.status.value}.")
        held = _Destination(
            single_key=self.key_for(identity, job.filename, self._quarantine), archive_layout=self._quarantine
        )
        final = _Destination(
            single_key=self.key_for(identity, job.filename), archive_layout=self.settings.archive_layout
        )
        attempt = _Attempt(
            identity=identity,
            job=job,
            bucket=bucket,
            resume=resume,
            time_left=time_left,
            keep_upload_on_failure=keep_upload_on_failure,
            on_checkpoint=on_checkpoint,
        )
        if resume is not None and resume.key == held.single_key:
            return self._quarantined(attempt, held)
        try:
            landed = self._land_at(attempt, final, replace=replace, gate=None if replace else gate)
        except BreakingSchema as breaking:
            logger.warning("%s: %s; landing it in quarantine", identity.label, breaking)
            return self._quarantined(dataclasses.replace(attempt, resume=None), held)
        if isinstance(landed, Landed) and replace and previous_manifest_key:
            self._remove_replaced(bucket, previous_manifest_key, landed.manifest)
        return landed

    def quarantine_location(self, identity: JobIdentity, bucket: str) -> str:
        """Where a quarantined delivery of ``identity`` lands: ``s3://bucket/{prefix}/_quarantine/…/job=…/``."""
        request = identity.request
        folder = quarantine_folder(
            self.settings.layout.prefix, tenant_id=request.tenant_id, day=request.date_from, job_id=identity.job_id
        )
        return f"s3://{bucket}/{folder}"

    def _quarantined(self, attempt: _Attempt, held: _Destination) -> LandingResult:
        """A single file's delivery again, to the quarantine (its first upload was aborted before any completion)."""
        landed = self._land_at(attempt, held, replace=False, gate=None)
        if isinstance(landed, Landed):
            return Quarantined(landed.manifest, self.quarantine_location(attempt.identity, attempt.bucket))
        return landed

    def _land_staged(
        self, attempt: _Attempt, staged: LandedObject, layout: KeyLayout, *, replace: bool, gate: SchemaGate | None
    ) -> Landed | Quarantined:
        """An archive's members from the staged delivery: to ``layout``, or, when the gate holds one back (every
        member's upload then aborted, nothing published), all of them from the same staged object to the quarantine."""
        identity = attempt.identity
        try:
            lander = self._archive_lander(layout, attempt.time_left, gate)
            return Landed(self._land_archive(identity, attempt.job, staged, lander, replace=replace))
        except BreakingSchema as breaking:
            logger.warning("%s: %s; landing its members in quarantine", identity.label, breaking)
        lander = self._archive_lander(self._quarantine, attempt.time_left, None)
        held = self._land_archive(identity, attempt.job, staged, lander, replace=False)
        return Quarantined(held, self.quarantine_location(identity, attempt.bucket))

    def _land_at(
        self, attempt: _Attempt, destination: _Destination, *, replace: bool, gate: SchemaGate | None
    ) -> LandingResult:
        identity, job, resume = attempt.identity, attempt.job, attempt.resume
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
        single_key = destination.single_key
        if not replace:
            # A rerun of an export that already landed, or a retry of one whose completion went through before
            # its invocation died (its checkpoint names a finished upload): answer without touching the source.
            existing = transfer.existing(job, bucket=attempt.bucket, key=single_key)
            if existing is not None:
                return Landed(self._committed(identity, job, existing))
        # Decided by the bytes, never by the file name.
        is_archive = (
            resume.key == staging_key if resume is not None else transfer.peek(job, refresh) == ZIP_LOCAL_HEADER
        )
        prover = None
        if not is_archive:
            # An archive is proven member by member once it is staged; a single file before it is published.
            prover = self._prover_for(identity, None)
            if gate is not None:
                request = identity.request
                prover = gate.guard(prover, tenant_id=request.tenant_id, table=SINGLE_FILE_TABLE, day=request.date_from)
        outcome: TransferOutcome = transfer.land(
            job,
            refresh,
            bucket=attempt.bucket,
            key=staging_key if is_archive else single_key,
            replace=replace and not is_archive,
            resume=resume,
            time_left=attempt.time_left,
            keep_upload_on_failure=attempt.keep_upload_on_failure,
            on_checkpoint=attempt.on_checkpoint,
            prover=prover,
        )
        if isinstance(outcome, Continued):
            return outcome
        if is_archive:
            return self._land_staged(attempt, outcome.object, destination.archive_layout, replace=replace, gate=gate)
        if outcome.object.already_existed:
            # Landed by another run of this export meanwhile; this run proved the same bytes.
            return Landed(self._committed(identity, job, outcome.object, proof=outcome.proof))
        manifest = build_manifest(identity, job, outcome.object, proof=outcome.proof, landed_at=self._now())
        return Landed(commit_manifest(self.s3, manifest, replace=replace))

    def _committed(
        self, identity: JobIdentity, job: ExportJob, existing: LandedObject, *, proof: Proof | None = None
    ) -> Manifest:
        """The manifest of a file that is already under its key: the one beside it when it is valid and
        names this tenant and day; otherwise a new one, since the file itself was verified — for leftovers of a
        run that died before its manifest, or for another run of this export that has not written its manifest
        yet (``proof``: this run's proof of the same bytes; the first manifest written is the one kept)."""
        try:
            before = read_manifest(self.s3, existing.bucket, existing.key)
            unusable = before is not None
        except IntegrityError as exc:
            logger.warning("the manifest beside %s is not valid (%s); writing it again", existing.key, exc)
            before, unusable = None, True
        if before is not None and before.is_for(identity) and before.names(existing.key):
            return before.as_already_existed()
        # The document is written for the first time now, so it says so (the answer to this rerun says "already
        # existed"); ``proof`` is None for leftovers of a run that died before its manifest.
        manifest = build_manifest(identity, job, existing, proof=proof, landed_at=self._now()).as_written()
        if unusable:
            write_manifest(self.s3, manifest)  # it replaces a manifest that does not describe this file
            return manifest.as_already_existed()
        return commit_manifest(self.s3, manifest, replace=False).as_already_existed()

    def _archive_lander(
        self, layout: KeyLayout, time_left: Callable[[], float] | None, gate: SchemaGate | None
    ) -> ArchiveLander:
        return ArchiveLander(
            self.s3,
            layout=layout,
            part_size=self.settings.transfer.part_size,
            limits=self._archive_limits,
            prover_for=self._prover_for,
            time_left=time_left,
            gate=gate,
        )

    def _land_archive(
        self, identity: JobIdentity, job: ExportJob, staged: LandedObject, lander: ArchiveLander, *, replace: bool
    ) -> Manifest:
        if staged.content_kind != "zip":
            raise IntegrityError(f"The delivery of {identity.label} starts like a zip but is not a valid zip archive.")
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
