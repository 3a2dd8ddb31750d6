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

import io
import itertools
import logging
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import IO, TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from . import checksum
from .errors import IntegrityError, InvalidInput, LandingConflict, OmboriGridExportError, TransferFailed
from .layout import KeyLayout, archive_manifest_key, manifest_key_for
from .manifest import ArchiveEntry, read_manifest_at
from .models import ExportJob, ExportRequest, JobIdentity, validate_job_id
from .proof import ContentProver, Proof
from .redact import describe_exception
from .settings import MIB
from .transfer import (
    DEADLINE_MARGIN_SECONDS,
    PARQUET_MAGIC,
    LandedObject,
    SeekableReader,
    _Chunks,
    _Upload,
    choose_part_size,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

_TABLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
_DT_SEGMENT_RE = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")
_DATE_IN_NAME_RE = re.compile(r"(\d{4}-\d{2}-\d{2})")
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_LOCAL_SIGNATURE = b"PK\x03\x04"
_NOT_FOUND = ("404", "NoSuchKey", "NotFound")
#: What ``zipfile`` raises on a damaged or unsupported archive.
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, zlib.error, EOFError, ValueError)
READ_BLOCK = 8 * MIB
_INFLATE_BLOCK = 1 * MIB

#: Builds the prover for one table of one job (the parquet footer checks of DESIGN "Proof of a landing").
ProverFactory = Callable[[JobIdentity, str], ContentProver]


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """Bounds on what an archive may inflate to: a zip bomb is refused from its central directory."""

    #: Largest inflated/compressed ratio of one member (members under 1 MiB inflated are not judged).
    max_ratio: float = 100.0
    #: Largest total inflated size of the members landed from one archive.
    max_inflated_bytes: int = 50 * 1024**3
    max_members: int = 10_000
    #: Trailing bytes of each member kept in memory for its footer proof.
    footer_bytes: int = 16 * MIB

    def __post_init__(self) -> None:
        if self.max_ratio < 1 or self.max_inflated_bytes < 1 or self.max_members < 1 or self.footer_bytes < 8:
            raise InvalidInput("The archive limits must be positive (ratio at least 1, footer at least 8 bytes).")


class S3RangeReader(SeekableReader):
    """A read-only, seekable file over an S3 object, fetched in blocks with ranged GETs."""

    def __init__(self, s3: S3Client, bucket: str, key: str, size: int, *, block: int = READ_BLOCK) -> None:
        super().__init__(size)
        self._s3, self._bucket, self._key, self._block = s3, bucket, key, block
        self._cache_start = 0
        self._cache = b""
        self.requests = 0

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= self._size or not len(view):
            return 0
        if not self._cache_start <= self._pos < self._cache_start + len(self._cache):
            self._fill(self._pos)
        offset = self._pos - self._cache_start
        n = min(len(view), len(self._cache) - offset)
        view[:n] = self._cache[offset : offset + n]
        self._pos += n
        return n

    def _fill(self, start: int) -> None:
        end = min(start + self._block, self._size) - 1
        self.requests += 1
        try:
            body = self._s3.get_object(Bucket=self._bucket, Key=self._key, Range=f"bytes={start}-{end}")["Body"]
            data = body.read()
        except ClientError as exc:
            raise TransferFailed(f"Reading the staged archive failed: {describe_exception(exc)}") from None
        if len(data) != end - start + 1:
            raise TransferFailed(f"S3 returned {len(data)} bytes for a {end - start + 1}-byte range of the archive.")
        self._cache_start, self._cache = start, data


@dataclass(frozen=True, slots=True)
class MemberPlan:
    info: zipfile.ZipInfo
    table: str
    day: date
    key: str


def member_table_and_day(name: str, request: ExportRequest) -> tuple[str, date]:
    """Table and data date of a member, from its path: ``events/dt=2026-11-01/part-0.parquet`` or
    ``events_2026-11-01.parquet``. Without a date in the name, the export's first date."""
    parts = [p for p in name.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts) or name.startswith("/") or "\\" in name:
        raise IntegrityError(f"The archive member {name!r} has an unsafe path.")
    basename = parts[-1]
    table = (parts[0] if len(parts) > 1 else re.split(r"[_.\-]", basename, maxsplit=1)[0]).lower()
    if not _TABLE_RE.fullmatch(table):
        raise IntegrityError(f"Cannot tell the table of archive member {name!r}.")
    day = request.date_from
    dated = [m[1] for m in map(_DT_SEGMENT_RE.match, parts[:-1]) if m] or _DATE_IN_NAME_RE.findall(basename)[:1]
    if dated:
        try:
            day = date.fromisoformat(dated[0])
        except ValueError:
            raise IntegrityError(f"Archive member {name!r} carries an impossible date {dated[0]}.") from None
    if not request.date_from <= day <= request.date_to:
        raise IntegrityError(f"Archive member {name!r} is dated {day}, outside the export's dates.")
    return table, day


def plan_members(
    archive: zipfile.ZipFile, identity: JobIdentity, layout: KeyLayout, limits: ArchiveLimits
) -> list[MemberPlan]:
    """Where each file member lands, refusing unsafe, unsupported, colliding or bomb-like members."""
    files = [info for info in archive.infolist() if not info.is_dir()]
    if len(files) > limits.max_members:
        raise IntegrityError(f"The archive of {identity.label} has {len(files)} members; at most {limits.max_members}.")
    total = sum(info.file_size for info in files)
    if total > limits.max_inflated_bytes:
        raise IntegrityError(
            f"The archive of {identity.label} declares {total} inflated bytes, more than the cap of "
            f"{limits.max_inflated_bytes}; refused as a possible zip bomb."
        )
    plans: list[MemberPlan] = []
    seen: dict[str, str] = {}
    for info in files:
        _check_member(info, limits)
        table, day = member_table_and_day(info.filename, identity.request)
        basename = info.filename.rstrip("/").rsplit("/", 1)[-1]
        key = layout.key_for(
            tenant_id=identity.request.tenant_id,
            date_from=day,
            date_to=day,
            job_id=identity.job_id,
            filename=basename,
            table=table,
        )
        if key in seen:
            raise IntegrityError(
                f"Archive members {seen[key]!r} and {info.filename!r} would land on the same key {key}."
            )
        seen[key] = info.filename
        plans.append(MemberPlan(info, table, day, key))
    if not plans:
        raise IntegrityError(f"The archive of {identity.label} contains no files.")
    return plans


def _check_member(info: zipfile.ZipInfo, limits: ArchiveLimits) -> None:
    name = info.filename
    if info.flag_bits & 0x1:
        raise IntegrityError(f"Archive member {name!r} is encrypted; cannot land it.")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise IntegrityError(
            f"Archive member {name!r} uses compression method {info.compress_type}; only stored and deflate "
            "members can be landed."
        )
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise IntegrityError(f"Archive member {name!r} is stored but its two declared sizes differ.")
    if info.file_size > MIB and info.file_size > limits.max_ratio * max(info.compress_size, 1):
        raise IntegrityError(
            f"Archive member {name!r} declares {info.file_size} bytes from {info.compress_size} compressed, a ratio "
            f"above {limits.max_ratio:g}; refused as a possible zip bomb."
        )


def inflate(raw: IO[bytes], info: zipfile.ZipInfo) -> Generator[bytes]:
    """The member's bytes, inflated and checked against the central directory as they come: never a byte
    beyond the declared size, and the size and CRC-32 must match at the end."""
    name, size = info.filename, info.file_size
    raw.seek(info.header_offset)
    header = raw.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_SIGNATURE:
        raise IntegrityError(f"Archive member {name!r} has no local header where the central directory says.")
    *_, name_length, extra_length = _LOCAL_HEADER.unpack(header)
    raw.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS) if info.compress_type == zipfile.ZIP_DEFLATED else None
    produced, crc, left = 0, 0, info.compress_size
    try:
        while left and not (inflater is not None and inflater.eof):
            chunk = raw.read(min(READ_BLOCK, left))
            if not chunk:
                raise IntegrityError(f"Archive member {name!r} ends before its declared compressed size.")
            left -= len(chunk)
            while chunk:
                if inflater is None:
                    out, chunk = chunk, b""
                else:
                    out = inflater.decompress(chunk, min(_INFLATE_BLOCK, size - produced + 1))
                    chunk = inflater.unconsumed_tail
                produced += len(out)
                if produced > size:
                    raise IntegrityError(
                        f"Archive member {name!r} inflates beyond the {size} bytes its central directory declares; "
                        "stopped at the first extra byte."
                    )
                crc = zlib.crc32(out, crc)
                yield out
                if inflater is not None and inflater.eof:
                    break
    except zlib.error as exc:
        raise IntegrityError(
            f"Archive member {name!r} is corrupt: its compressed data does not inflate ({exc})."
        ) from None
    if produced != size or (inflater is not None and not inflater.eof):
        raise IntegrityError(f"Archive member {name!r} gave {produced} bytes, not the {size} declared.")
    if crc != info.CRC & 0xFFFFFFFF:
        raise IntegrityError(f"Archive member {name!r} does not match the zip's CRC-32.")


class _Tail:
    """The last ``limit`` bytes seen, for the footer proof."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._data = bytearray()

    def add(self, chunk: bytes) -> None:
        self._data += chunk[-self._limit :]
        if len(self._data) > self._limit:
            del self._data[: len(self._data) - self._limit]

    def last(self, n: int) -> bytes:
        return bytes(self._data[-n:]) if n else b""

    def __len__(self) -> int:
        return len(self._data)


@dataclass(slots=True)
class _Staged:
    """A verified member waiting, as an open multipart upload, for the whole archive to be verified."""

    plan: MemberPlan
    upload: _Upload
    crc: int
    proof: Proof | None
    started: datetime
    #: What to do with an object already under the key: None (none there), "same" (identical), an ETag
    #: (a leftover to replace while it is unchanged) or "overwrite" (a forced re-export).
    existing: str | None = None


@dataclass(frozen=True, slots=True)
class ExplodedArchive:
    entries: list[ArchiveEntry]
    skipped: list[str] = field(default_factory=list)


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
    ) -> None:
        self._s3, self._layout, self._part_size, self._limits = s3, layout, part_size, limits
        self._prover_for, self._time_left = prover_for, time_left

    def land(self, staged: LandedObject, identity: JobIdentity, job: ExportJob, *, replace: bool) -> ExplodedArchive:
        reader = io.BufferedReader(S3RangeReader(self._s3, staged.bucket, staged.key, staged.bytes), 64 * 1024)
        waiting: list[_Staged] = []
        skipped: list[str] = []
        try:
            with zipfile.ZipFile(reader) as archive:
                plans = plan_members(archive, identity, self._layout, self._limits)
                for plan in plans:
                    member = self._stage(reader, plan, staged.bucket, identity, job)
                    if member is None:
                        skipped.append(plan.info.filename)
                    else:
                        waiting.append(member)
            if not waiting:
                raise IntegrityError(f"The archive of {identity.label} contains no parquet files.")
            for member in waiting:
                member.existing = self._existing(member, {p.key.rpartition("/")[0] for p in plans}, replace)
            entries = self._publish(waiting, replace=replace)
        except BaseException as exc:
            for member in waiting:
                member.upload.abort()
            if isinstance(exc, ZIP_ERRORS):
                raise IntegrityError(f"The archive of {identity.label} cannot be read: {exc}.") from None
            raise
        return ExplodedArchive(entries, skipped)

    def remove(self, entries: list[ArchiveEntry]) -> None:
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
        upload = _Upload.create(self._s3, bucket, plan.key, job, size, choose_part_size(size, self._part_size))
        try:
            tail = self._upload_parts(upload, itertools.chain(first, stream), identity)
            return _Staged(plan, upload, upload.combined_crc(), self._prove(plan, tail, identity), started)
        except BaseException:
            upload.abort()
            raise

    def _upload_parts(self, upload: _Upload, chunks: Iterator[bytes], identity: JobIdentity) -> _Tail:
        buffer, tail, number = _Chunks(), _Tail(self._limits.footer_bytes), 1
        for chunk in chunks:
            buffer.append(chunk)
            tail.add(chunk)
            while len(buffer) >= upload.part_size:
                self._check_deadline(identity)
                upload.add(upload.upload_part(number, buffer.take(upload.part_size), (number - 1) * upload.part_size))
                number += 1
        if len(buffer):
            upload.add(upload.upload_part(number, buffer.take(len(buffer)), (number - 1) * upload.part_size))
        return tail

    def _prove(self, plan: MemberPlan, tail: _Tail, identity: JobIdentity) -> Proof | None:
        name, size = plan.info.filename, plan.info.file_size
        if tail.last(len(PARQUET_MAGIC)) != PARQUET_MAGIC:
            raise IntegrityError(f"Archive member {name!r} does not end like a parquet file.")
        if self._prover_for is None:
            return None
        prover = self._prover_for(identity, plan.table)
        needed = prover.tail_length(size, tail.last(8))
        if needed > len(tail):
            raise IntegrityError(
                f"The parquet footer of archive member {name!r} needs its last {needed} bytes, more than the "
                f"{len(tail)} kept for verification; it cannot be verified."
            )
        return prover.prove(tail.last(needed), size)

    # -- publish --------------------------------------------------------------------------------------

    def _existing(self, member: _Staged, dirs: set[str], replace: bool) -> str | None:
        """What sits under the member's key now (see ``_Staged.existing``); LandingConflict when it is
        another landing's file and replacing it was not asked for."""
        key, bucket = member.plan.key, member.upload.bucket
        head = self._head(bucket, key)
        if head is None:
            return None
        if head["ContentLength"] == member.plan.info.file_size and head.get("ChecksumCRC32") == checksum.to_base64(
            member.crc
        ):
            return "same"
        if replace:
            return "overwrite"
        if self._committed(bucket, key, head, dirs):
            raise LandingConflict(
                f"s3://{bucket}/{key} already holds a different object that a manifest names; it is not replaced "
                "unless forced."
            )
        logger.warning("s3://%s/%s holds leftovers of a failed landing (no manifest names it); replacing", bucket, key)
        return str(head["ETag"])

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

    def _publish(self, waiting: list[_Staged], *, replace: bool) -> list[ArchiveEntry]:
        published: list[ArchiveEntry] = []
        try:
            for member in waiting:
                published.append(self._publish_one(member, replace=replace))
        except BaseException:
            self.remove(published)
            raise
        return published

    def _publish_one(self, member: _Staged, *, replace: bool) -> ArchiveEntry:
        upload, plan = member.upload, member.plan
        crc = checksum.to_base64(member.crc)
        if member.existing == "same":
            upload.abort()
            landed = self._landed(member, already_existed=True, version_id=None)
        else:
            if member.existing not in (None, "overwrite"):
                self._delete_leftover(upload.bucket, plan.key, str(member.existing))
            result = upload.complete(member.crc, replace=replace or member.existing == "overwrite")
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
