"""Archive deliveries: a zip of parquet files lands per table, all members or none.

The delivery is first landed (verified, like any file) under a staging key. Its central directory is read
with ranged GETs of the staged object, and the declared sizes are judged before a byte is inflated: a member
whose inflated size is out of proportion to its compressed size, or an archive inflating past a total cap,
is refused as a zip bomb. Each parquet member is then inflated by our own bounded loop (never more than one
byte beyond what the central directory declares; CRC-32 and size checked) into its own *open* multipart
upload, and its footer is proven from the tail kept in memory. A multipart upload is invisible until it is
completed, so nothing is published until every member is verified; only then are the uploads completed, one
by one, and if one completion fails the members this job already completed are deleted before the failure is
reported. The manifest, written last by the caller, is the commit marker.

An object already under a member key that no manifest names is a leftover of a failed attempt, never a
landing: it is replaced (deleted only while its ETag is still the one seen) instead of blocking the day.
Memory stays bounded by one read block, one part and the footer tail, whatever the archive or member size.
"""

from __future__ import annotations

import enum
import io
import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import IO, TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from . import checksum
from .errors import IntegrityError, InvalidInput, LandingConflict, OmboriGridExportError, TransferFailed
from .layout import KeyLayout, archive_manifest_key, manifest_key_for
from .manifest_store import read_manifest_at
from .models import ExportJob, JobIdentity, validate_job_id
from .proof import ContentProver, Proof
from .redact import describe_exception
from .schema_gate import SchemaGate
from .settings import ArchiveLimits
from .transfer import (
    DEADLINE_MARGIN_SECONDS,
    PARQUET_MAGIC,
    LandedObject,
    MultipartUpload,
    RollingTail,
    StreamedParts,
    UploadGone,
    choose_part_size,
)
from .zipmembers import MemberPlan, S3RangeReader, inflate, open_archive, plan_members

#: The smallest parquet file: its magic, a 4-byte footer length and the magic again (a footer of 0 bytes).
MIN_PARQUET_BYTES = 2 * len(PARQUET_MAGIC) + 4

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

_NOT_FOUND = ("404", "NoSuchKey", "NotFound")

#: Builds the prover for one table of one job (the parquet footer checks of DESIGN "Proof of a landing").
#: The content prover of one file of an identity: an archive member's table, or None for a single-file delivery.
ProverFactory = Callable[[JobIdentity, str | None], ContentProver]


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One published archive member, as the manifest records it."""

    landed: LandedObject
    table: str
    day: date
    member: str
    proof: Proof | None


@dataclass(frozen=True, slots=True)
class ArchiveContents:
    """What an archive landed: its published members, in archive order, and the members that were not parquet."""

    entries: tuple[ArchiveEntry, ...]
    skipped: tuple[str, ...] = ()


class Existing(enum.StrEnum):
    """What sits under a member's key when the archive is about to be published."""

    NONE = "none"
    #: The same bytes (size and CRC-32): nothing to write.
    SAME = "same"
    #: Leftovers no manifest names: replaced while their ETag is still the one seen.
    LEFTOVER = "leftover"
    #: Another landing's file, and a forced re-export replaces it.
    OVERWRITE = "overwrite"


@dataclass(slots=True)
class _Staged:
    """A verified member waiting, as an open multipart upload, for the whole archive to be verified."""

    plan: MemberPlan
    upload: MultipartUpload
    crc: int
    proof: Proof | None
    started: datetime
    existing: Existing = Existing.NONE
    existing_etag: str = ""


class ArchiveLander:
    """Lands the parquet members of one staged archive: verified all, then published all, or none."""

    def __init__(
        self,
        s3: S3Client,
        *,
        layout: KeyLayout,
        part_size: int,
        limits: ArchiveLimits,
        prover_for: ProverFactory | None = None,
        time_left: Callable[[], float] | None = None,
        gate: SchemaGate | None = None,
    ) -> None:
        self._s3, self._layout, self._part_size, self._limits = s3, layout, part_size, limits
        self._prover_for, self._time_left, self._gate = prover_for, time_left, gate

    def land(self, staged: LandedObject, identity: JobIdentity, job: ExportJob, *, replace: bool) -> ArchiveContents:
        """Verify every member into an open upload, then publish them all; on any failure, nothing stays."""
        reader = io.BufferedReader(S3RangeReader(self._s3, staged.bucket, staged.key, staged.bytes), 64 * 1024)
        waiting: list[_Staged] = []
        members: list[_Staged | ArchiveEntry] = []
        skipped: list[str] = []
        try:
            with open_archive(reader, identity.label) as archive:
                plans = plan_members(archive, identity, self._layout, self._limits)
            for plan in plans:
                found: _Staged | ArchiveEntry | None = None
                if not replace:
                    found = self._already_there(plan, staged.bucket, identity)
                if found is None:
                    found = self._stage(reader, plan, staged.bucket, identity, job)
                if found is None:
                    skipped.append(plan.info.filename)
                    continue
                members.append(found)
                if isinstance(found, _Staged):
                    waiting.append(found)
            if not members:
                raise IntegrityError(f"The archive of {identity.label} contains no parquet files.")
            directories = {p.key.rpartition("/")[0] for p in plans}
            for open_member in waiting:
                self._judge_existing(open_member, directories, replace)
            return ArchiveContents(tuple(self._publish(members)), tuple(skipped))
        except UploadGone:
            for open_member in waiting:
                open_member.upload.abort()
            raise TransferFailed(
                f"An upload of a member of the archive of {identity.label} vanished while it was used (aborted by "
                "another run of the same export, or expired); a retry lands the archive again."
            ) from None
        except BaseException:
            for open_member in waiting:
                open_member.upload.abort()
            raise

    def remove(self, entries: Sequence[ArchiveEntry]) -> None:
        """Delete the members this job published (not those that were already there). Best effort."""
        for entry in entries:
            if entry.landed.already_existed:
                continue
            kwargs: dict[str, Any] = {"Bucket": entry.landed.bucket, "Key": entry.landed.key}
            if entry.landed.version_id:
                kwargs["VersionId"] = entry.landed.version_id
            try:
                self._s3.delete_object(**kwargs)
            except ClientError as exc:
                logger.warning(
                    "could not remove %s after a failed landing: %s", entry.landed.key, describe_exception(exc)
                )

    # -- verify ---------------------------------------------------------------------------------------

    def _stage(
        self, reader: IO[bytes], plan: MemberPlan, bucket: str, identity: JobIdentity, job: ExportJob
    ) -> _Staged | None:
        """Inflate one member into an open multipart upload and prove it; None when it is not parquet."""
        self._check_deadline(identity)
        stream = inflate(reader, plan.info)
        first: list[bytes] = []
        for chunk in stream:
            first.append(chunk)
            if sum(map(len, first)) >= len(PARQUET_MAGIC):
                break
        if b"".join(first)[: len(PARQUET_MAGIC)] != PARQUET_MAGIC:
            stream.close()
            logger.warning("archive member %s is not parquet by its bytes; not landed", plan.info.filename)
            return None
        size, started = plan.info.file_size, datetime.now(UTC)
        upload = MultipartUpload.create(
            self._s3, bucket, plan.key, job, size=size, part_size=choose_part_size(size, self._part_size)
        )
        try:
            prover = self._prover(identity, plan)
            # Enough of the end is kept to prove the member (at least its magic bytes without a prover).
            keep = len(PARQUET_MAGIC) if prover is None else prover.max_tail_bytes
            tail = self._upload_parts(upload, itertools.chain(first, stream), identity, keep)
            return _Staged(plan, upload, upload.combined_crc(), self._prove(plan, tail, prover), started)
        except BaseException:
            upload.abort()
            raise

    def _upload_parts(
        self, upload: MultipartUpload, chunks: Iterator[bytes], identity: JobIdentity, keep: int
    ) -> RollingTail:
        """Cut the inflated member into the upload's parts (the transfer's own StreamedParts), keeping its tail."""
        tail = RollingTail(keep)
        with StreamedParts(upload) as parts:
            for chunk in chunks:
                self._check_deadline(identity)
                parts.write(chunk)
                tail.append(chunk)
            parts.finish()
        return tail

    def _prover(self, identity: JobIdentity, plan: MemberPlan) -> ContentProver | None:
        """The member's prover; with a gate (SchemaChangePolicy=quarantine) its proof is also judged before the
        member can be published (a breaking schema raises ``BreakingSchema``, and every open upload is aborted)."""
        if self._prover_for is None:
            return None
        prover = self._prover_for(identity, plan.table)
        if self._gate is None:
            return prover
        return self._gate.guard(prover, tenant_id=identity.request.tenant_id, table=plan.table, day=plan.day)

    @staticmethod
    def _prove(plan: MemberPlan, tail: RollingTail, prover: ContentProver | None) -> Proof | None:
        name, size = plan.info.filename, plan.info.file_size
        if size < MIN_PARQUET_BYTES or tail.last(len(PARQUET_MAGIC)) != PARQUET_MAGIC:
            raise IntegrityError(f"Archive member {name!r} does not end like a parquet file.")
        if prover is None:
            return None
        needed = prover.tail_length(size, tail.last(8))
        if needed > tail.keep:  # the declared bound, not whatever a chunk boundary left in hand
            raise IntegrityError(
                f"The parquet footer of archive member {name!r} needs its last {needed} bytes, more than the "
                f"{tail.keep} kept for verification; it cannot be verified."
            )
        try:
            return prover.prove(tail.last(needed), size)
        except IntegrityError as exc:
            raise IntegrityError(f"Archive member {name!r}: {exc}") from None

    def _already_there(self, plan: MemberPlan, bucket: str, identity: JobIdentity) -> ArchiveEntry | None:
        """The member as an earlier landing published it (same size and the zip's own CRC-32, as S3 recorded
        them), proven from its stored footer; None when it is not there as such (then it is inflated)."""
        size, crc = plan.info.file_size, checksum.to_base64(plan.info.CRC & 0xFFFFFFFF)
        head = self._head(bucket, plan.key)
        if head is None or head["ContentLength"] != size or head.get("ChecksumCRC32") != crc:
            return None
        proof = None
        prover = self._prover(identity, plan)
        if prover is not None:
            needed = prover.tail_length(size, self._read(bucket, plan.key, max(0, size - 8)))
            if needed > prover.max_tail_bytes:
                raise IntegrityError(f"The parquet footer of {plan.key} is too large to be verified ({needed} bytes).")
            proof = prover.prove(self._read(bucket, plan.key, max(0, size - needed)), size)
        landed = LandedObject(
            bucket=bucket,
            key=plan.key,
            bytes=size,
            checksum_crc32=crc,
            content_kind="parquet",
            job_id=str(head.get("Metadata", {}).get("omborigrid-job-id", "")),
            already_existed=True,
            source_host="",
            version_id=head.get("VersionId"),
        )
        logger.info("archive member %s is already landed as s3://%s/%s", plan.info.filename, bucket, plan.key)
        return ArchiveEntry(landed, plan.table, plan.day, plan.info.filename, proof)

    def _read(self, bucket: str, key: str, start: int) -> bytes:
        try:
            return self._s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-")["Body"].read()
        except ClientError as exc:
            raise TransferFailed(f"Reading s3://{bucket}/{key} failed: {describe_exception(exc)}") from None

    # -- publish --------------------------------------------------------------------------------------

    def _judge_existing(self, member: _Staged, directories: set[str], replace: bool) -> None:
        """Decide what to do with an object already under the member's key (``Existing``); LandingConflict
        when it is another landing's file and replacing it was not asked for."""
        key, bucket = member.plan.key, member.upload.bucket
        head = self._head(bucket, key)
        if head is None:
            return
        recorded = head.get("ChecksumCRC32")
        if head["ContentLength"] == member.plan.info.file_size and recorded == checksum.to_base64(member.crc):
            member.existing = Existing.SAME
        elif replace:
            member.existing = Existing.OVERWRITE
        elif self._committed(bucket, key, head, directories):
            raise LandingConflict(
                f"s3://{bucket}/{key} already holds a different object that a manifest names; it is not replaced "
                "unless forced."
            )
        else:
            logger.warning("s3://%s/%s holds leftovers of a failed landing (no manifest names it)", bucket, key)
            member.existing, member.existing_etag = Existing.LEFTOVER, str(head["ETag"])

    def _committed(self, bucket: str, key: str, head: Any, dirs: set[str]) -> bool:
        """Whether a manifest (single-file, or an archive's beside any of this archive's directories) names
        ``key``. An unreadable manifest counts as naming it: nothing is deleted on a doubt."""
        candidates = {manifest_key_for(key)}
        try:
            owner = validate_job_id(head.get("Metadata", {}).get("omborigrid-job-id"))
            candidates |= {archive_manifest_key(f"{d}/member", owner) for d in dirs}
        except InvalidInput:
            pass
        for candidate in sorted(candidates):
            try:
                manifest = read_manifest_at(self._s3, bucket, candidate)
            except OmboriGridExportError:
                return True
            if manifest is not None and manifest.names(key):
                return True
        return False

    def _publish(self, members: list[_Staged | ArchiveEntry]) -> list[ArchiveEntry]:
        published: list[ArchiveEntry] = []
        try:
            for member in members:
                published.append(member if isinstance(member, ArchiveEntry) else self._publish_one(member))
        except BaseException:
            self.remove(published)
            raise
        return published

    def _publish_one(self, member: _Staged) -> ArchiveEntry:
        upload, plan = member.upload, member.plan
        crc = checksum.to_base64(member.crc)
        if member.existing is Existing.SAME:
            upload.abort()
            landed = self._landed(member, already_existed=True, version_id=None)
        else:
            if member.existing is Existing.LEFTOVER:
                self._delete_leftover(upload.bucket, plan.key, member.existing_etag)
            result = upload.complete(member.crc, replace=member.existing is Existing.OVERWRITE)
            landed = self._landed(member, already_existed=False, version_id=result.get("VersionId"))
            head = self._head(upload.bucket, plan.key)
            if head is None or head["ContentLength"] != plan.info.file_size or head.get("ChecksumCRC32") != crc:
                self.remove([ArchiveEntry(landed, plan.table, plan.day, plan.info.filename, member.proof)])
                raise IntegrityError(
                    f"S3 recorded a different size or CRC-32 for {plan.key} than was sent; removed it."
                )
            logger.info("landed archive member %s as s3://%s/%s", plan.info.filename, upload.bucket, plan.key)
        return ArchiveEntry(landed, plan.table, plan.day, plan.info.filename, member.proof)

    def _delete_leftover(self, bucket: str, key: str, etag: str) -> None:
        try:
            self._s3.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                raise LandingConflict(f"s3://{bucket}/{key} changed while this landing was replacing it.") from None
            raise TransferFailed(f"Could not replace s3://{bucket}/{key}: {describe_exception(exc)}") from None

    def _landed(self, member: _Staged, *, already_existed: bool, version_id: str | None) -> LandedObject:
        return LandedObject(
            bucket=member.upload.bucket,
            key=member.plan.key,
            bytes=member.plan.info.file_size,
            checksum_crc32=checksum.to_base64(member.crc),
            content_kind="parquet",
            job_id=member.upload.job_id,
            already_existed=already_existed,
            source_host="",
            parts=len(member.upload.parts),
            version_id=version_id,
            started_at=member.started,
            finished_at=datetime.now(UTC),
        )

    def _head(self, bucket: str, key: str) -> Any:
        try:
            return self._s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _NOT_FOUND:
                return None
            raise TransferFailed(f"Could not check s3://{bucket}/{key}: {describe_exception(exc)}") from None

    def _check_deadline(self, identity: JobIdentity) -> None:
        if self._time_left is not None and self._time_left() < DEADLINE_MARGIN_SECONDS:
            raise TransferFailed(
                f"The archive of {identity.label} could not be unpacked before this invocation's deadline; nothing "
                "was published and it will be tried again."
            )
