"""The members of a zip delivery, read without trusting the zip.

Python's ``zipfile`` reads the central directory well, and that is all it is used for here. The members' bytes
are inflated by our own loop because a delivery must be judged before it is believed: the declared sizes are
checked against caps first (a zip bomb is refused before a byte is inflated), inflation never goes more than one
byte beyond the declared size, and size and CRC-32 are compared at the end. Every failure is an
:class:`~omborigrid_export.errors.IntegrityError` naming the member, never a ``zipfile`` or ``zlib`` exception.
"""

from __future__ import annotations

import io
import itertools
import re
import struct
import zipfile
import zlib
from collections.abc import Generator
from dataclasses import dataclass
from datetime import date
from typing import IO, TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from .errors import IntegrityError, TransferFailed
from .layout import KeyLayout
from .models import ExportRequest, JobIdentity
from .redact import describe_exception
from .settings import MIB, ArchiveLimits
from .transfer import SeekableReader

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_TABLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
_DT_SEGMENT_RE = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")
_DATE_IN_NAME_RE = re.compile(r"(\d{4}-\d{2}-\d{2})")
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_LOCAL_SIGNATURE = b"PK\x03\x04"
#: What ``zipfile`` raises on a damaged or unsupported archive.
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, zlib.error, EOFError, ValueError)
READ_BLOCK = 8 * MIB
_INFLATE_BLOCK = 1 * MIB


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
    _check_layout(files, identity)
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


def _check_layout(files: list[zipfile.ZipInfo], identity: JobIdentity) -> None:
    """Members' data must not overlap: entries sharing compressed bytes are how a small zip declares many
    large members without any one of them looking out of proportion."""
    ordered = sorted(files, key=lambda info: info.header_offset)
    for info, after in itertools.pairwise(ordered):
        if info.header_offset + _LOCAL_HEADER.size + info.compress_size > after.header_offset:
            raise IntegrityError(
                f"The archive of {identity.label} has overlapping members ({info.filename!r} and "
                f"{after.filename!r}); refused as a possible zip bomb."
            )


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
    local_name = raw.read(name_length).decode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace")
    if local_name != info.orig_filename:
        raise IntegrityError(f"Archive member {name!r} is named {local_name!r} in its local header.")
    raw.seek(extra_length, io.SEEK_CUR)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS) if info.compress_type == zipfile.ZIP_DEFLATED else None
    produced, crc, left = 0, 0, info.compress_size
    try:
        while left and not (inflater is not None and inflater.eof):
            chunk = raw.read(min(_INFLATE_BLOCK, left))
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


def open_archive(reader: IO[bytes], label: str) -> zipfile.ZipFile:
    """The archive's central directory, or IntegrityError saying why it cannot be read."""
    try:
        return zipfile.ZipFile(reader)
    except ZIP_ERRORS as exc:
        raise IntegrityError(f"The archive of {label} cannot be read as a zip: {exc}.") from None
