"""Archive deliveries: a zip of parquet files lands member by member, per table.

The delivery is first landed (verified, like any file) under a staging key. Its central directory, at the
end of the zip, is then read with ranged GETs of the staged object, and each parquet member is streamed —
decompressed on the fly when needed — into its own multipart upload under the table layout. Memory stays
bounded by one read block plus one part, whatever the archive or member size. Each member is checked three
ways: the zip's own CRC-32 of the member (``zipfile`` raises on a mismatch), our CRC-32 of the bytes
uploaded (which S3 verifies on completion and records), and the parquet magic at both ends.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from . import checksum
from .errors import IntegrityError, LandingConflict, TransferFailed
from .layout import KeyLayout
from .models import ExportJob
from .redact import describe_exception
from .settings import MIB
from .transfer import PARQUET_MAGIC, LandedObject, SeekableReader, choose_part_size
from .transfer import ChunkBuffer as _Chunks
from .transfer import MultipartUpload as _Upload

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

_TABLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
_DT_SEGMENT_RE = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")
_DATE_IN_NAME_RE = re.compile(r"(\d{4}-\d{2}-\d{2})")
READ_BLOCK = 8 * MIB


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


def member_table_and_day(name: str, job: ExportJob) -> tuple[str, date]:
    """Table and data date of a member, from its path: ``events/dt=2026-11-01/part-0.parquet`` or
    ``events_2026-11-01.parquet``. Without a date in the name, the export's first date."""
    parts = [p for p in name.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts) or name.startswith("/") or "\\" in name:
        raise IntegrityError(f"The archive member {name!r} has an unsafe path.")
    basename = parts[-1]
    table = parts[0] if len(parts) > 1 else re.split(r"[_.\-]", basename, maxsplit=1)[0]
    table = table.lower()
    if not _TABLE_RE.fullmatch(table):
        raise IntegrityError(f"Cannot tell the table of archive member {name!r}.")
    day = job.date_from
    for segment in parts[:-1]:
        match = _DT_SEGMENT_RE.match(segment)
        if match:
            day = date.fromisoformat(match[1])
            break
    else:
        found = _DATE_IN_NAME_RE.search(basename)
        if found:
            day = date.fromisoformat(found[1])
    if not job.date_from <= day <= job.date_to:
        raise IntegrityError(f"Archive member {name!r} is dated {day}, outside the export's dates.")
    return table, day


def plan_members(archive: zipfile.ZipFile, job: ExportJob, layout: KeyLayout) -> list[MemberPlan]:
    plans: list[MemberPlan] = []
    seen: dict[str, str] = {}
    for info in archive.infolist():
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            raise IntegrityError(f"Archive member {info.filename!r} is encrypted; cannot land it.")
        table, day = member_table_and_day(info.filename, job)
        basename = info.filename.rstrip("/").rsplit("/", 1)[-1]
        key = layout.key_for(
            tenant_id=job.tenant_id, date_from=day, date_to=day, job_id=job.id, filename=basename, table=table
        )
        if key in seen:
            raise IntegrityError(
                f"Archive members {seen[key]!r} and {info.filename!r} would land on the same key {key}."
            )
        seen[key] = info.filename
        plans.append(MemberPlan(info, table, day, key))
    if not plans:
        raise IntegrityError(f"The archive of job {job.id} contains no files.")
    return plans


@dataclass(frozen=True, slots=True)
class LandedMember:
    table: str
    day: date
    member: str
    landed: LandedObject


def explode(
    s3: S3Client,
    *,
    bucket: str,
    staged_key: str,
    staged_size: int,
    job: ExportJob,
    layout: KeyLayout,
    part_size: int,
    replace: bool,
) -> tuple[list[LandedMember], list[str]]:
    """Land every parquet member of the staged archive. Returns (landed members, skipped member names)."""
    reader = io.BufferedReader(S3RangeReader(s3, bucket, staged_key, staged_size), buffer_size=64 * 1024)
    try:
        archive = zipfile.ZipFile(reader)
    except zipfile.BadZipFile as exc:
        raise IntegrityError(f"The delivery of job {job.id} looks like a zip but cannot be read: {exc}.") from None
    landed: list[LandedMember] = []
    skipped: list[str] = []
    with archive:
        for plan in plan_members(archive, job, layout):
            with archive.open(plan.info) as stream:
                head = stream.read(4)
            if head != PARQUET_MAGIC:
                logger.warning("archive member %s is not parquet by its bytes; not landed", plan.info.filename)
                skipped.append(plan.info.filename)
                continue
            result = _land_member(s3, archive, plan, bucket=bucket, job=job, part_size=part_size, replace=replace)
            landed.append(LandedMember(plan.table, plan.day, plan.info.filename, result))
    if not landed:
        raise IntegrityError(f"The archive of job {job.id} contains no parquet files.")
    return landed, skipped


def _land_member(
    s3: S3Client,
    archive: zipfile.ZipFile,
    plan: MemberPlan,
    *,
    bucket: str,
    job: ExportJob,
    part_size: int,
    replace: bool,
) -> LandedObject:
    size = plan.info.file_size
    expected_crc = checksum.to_base64(plan.info.CRC & 0xFFFFFFFF)
    if not replace:
        existing = _existing_member(s3, bucket, plan.key, size, expected_crc)
        if existing is not None:
            return existing
    started = datetime.now(UTC)
    upload = _Upload.create(s3, bucket, plan.key, job, size, choose_part_size(size, part_size))
    try:
        buffer = _Chunks()
        number, received = 1, 0
        with archive.open(plan.info) as stream:
            while chunk := stream.read(MIB):
                buffer.append(chunk)
                received += len(chunk)
                while len(buffer) >= upload.part_size:
                    upload.add(
                        upload.upload_part(number, buffer.take(upload.part_size), (number - 1) * upload.part_size)
                    )
                    number += 1
        if len(buffer):
            upload.add(upload.upload_part(number, buffer.take(len(buffer)), (number - 1) * upload.part_size))
        if received != size:
            raise IntegrityError(f"Archive member {plan.info.filename!r} gave {received} bytes, not {size}.")
        if upload.tail[-4:] != PARQUET_MAGIC:
            raise IntegrityError(f"Archive member {plan.info.filename!r} does not end like a parquet file.")
        crc = upload.combined_crc()
        if checksum.to_base64(crc) != expected_crc:
            raise IntegrityError(f"Archive member {plan.info.filename!r} does not match the zip's CRC-32.")
        try:
            result = upload.complete(crc, replace=replace)
        except LandingConflict:
            raced = _existing_member(s3, bucket, plan.key, size, expected_crc)
            if raced is None:
                raise
            return raced
    except zipfile.BadZipFile as exc:
        upload.abort()
        raise IntegrityError(f"Archive member {plan.info.filename!r} is corrupt: {exc}.") from None
    except BaseException:
        upload.abort()
        raise
    head = s3.head_object(Bucket=bucket, Key=plan.key, ChecksumMode="ENABLED")
    if head["ContentLength"] != size or head.get("ChecksumCRC32") != expected_crc:
        raise IntegrityError(f"S3 recorded a different size or CRC-32 for {plan.key} than was sent.")
    logger.info("landed archive member %s as s3://%s/%s (%d bytes)", plan.info.filename, bucket, plan.key, size)
    return LandedObject(
        bucket=bucket,
        key=plan.key,
        bytes=size,
        checksum_crc32=expected_crc,
        content_kind="parquet",
        job_id=job.id,
        already_existed=False,
        source_host="",
        parts=len(upload.parts),
        version_id=result.get("VersionId"),
        started_at=started,
        finished_at=datetime.now(UTC),
    )


def _existing_member(s3: S3Client, bucket: str, key: str, size: int, crc: str) -> LandedObject | None:
    try:
        head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise TransferFailed(f"Could not check s3://{bucket}/{key}: {describe_exception(exc)}") from None
    if head["ContentLength"] != size or head.get("ChecksumCRC32") != crc:
        raise LandingConflict(
            f"s3://{bucket}/{key} already holds a different object; it is not replaced unless forced."
        )
    return LandedObject(
        bucket=bucket,
        key=key,
        bytes=size,
        checksum_crc32=crc,
        content_kind="parquet",
        job_id=head.get("Metadata", {}).get("omborigrid-job-id", ""),
        already_existed=True,
        source_host="",
        version_id=head.get("VersionId"),
    )
