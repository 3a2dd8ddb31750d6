"""One S3 multipart upload, and the two checks every landing shares: "is it already there" and "did S3 record
what we sent".

Nothing is visible under the final key until CompleteMultipartUpload. The completion carries the full-object
CRC32 combined from the parts (S3 verifies it) and is conditional (``If-None-Match: *``) unless a replacement
was asked for, so two racing runs cannot both write. Afterwards the object's recorded size and checksum are
compared once more with what was sent.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, cast

from botocore.exceptions import BotoCoreError, ClientError

from .. import checksum
from ..errors import IntegrityError, LandingConflict, OmboriGridExportError, TransferFailed
from ..models import ExportJob
from ..redact import describe_exception
from ..s3errors import CONDITION_LOST_CODES, error_code, is_not_found, map_s3_errors
from .buffers import PartBody, PartBuffer, send_part_bodies_whole
from .checkpoint import Checkpoint
from .content import HEAD_BYTES, TAIL_BYTES, ContentKind
from .limits import part_count, part_range

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import HeadObjectOutputTypeDef

logger = logging.getLogger(__name__)


#: S3's answer for an upload that no longer exists.
_NO_SUCH_UPLOAD = "NoSuchUpload"
#: S3's answer (409) to a conditional write while another write to the key is in progress.
_WRITE_IN_PROGRESS = "ConditionalRequestConflict"
#: S3 refused the bytes or the parts themselves: retrying the same upload cannot help.
_REFUSED_CONTENT_CODES = frozenset({"BadDigest", "InvalidPart", "InvalidRequest"})


@dataclass(frozen=True, slots=True)
class PartRecord:
    number: int
    size: int
    crc32: int
    etag: str


class UploadGone(Exception):
    """The multipart upload no longer exists: aborted, expired by lifecycle, or completed by another run of the
    same export (a Download retried while its first invocation still runs resumes the same upload)."""


def find_existing(
    s3: S3Client, bucket: str, key: str, *, size: int, crc32: str | None = None
) -> HeadObjectOutputTypeDef | None:
    """The HEAD of the verified object already under ``key``, or None when there is none.

    Verified means: ``size`` bytes with a recorded full-object CRC32 (equal to ``crc32`` when given).
    Raises :class:`LandingConflict` when a different object sits there.
    """
    with map_s3_errors(f"the check of s3://{bucket}/{key}"):
        try:
            head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise
    recorded = head.get("ChecksumCRC32")
    if head["ContentLength"] != size or not recorded or (crc32 is not None and recorded != crc32):
        job_id = head.get("Metadata", {}).get("omborigrid-job-id", "unknown")
        raise LandingConflict(
            f"s3://{bucket}/{key} already holds a different object ({head['ContentLength']} bytes, "
            f"from job {job_id}); it is not replaced unless forced."
        )
    return head


def verify_recorded(s3: S3Client, bucket: str, key: str, *, size: int, crc32: str, version_id: str | None) -> None:
    """S3 recorded ``size`` bytes with full-object CRC32 ``crc32`` (base64) for the object just completed.

    When it did not, that object is deleted before :class:`IntegrityError` is raised, so a failed check leaves
    nothing under the key. It is ours to delete: it was created with ``If-None-Match: *``, or, for a
    replacement, is the version the completion returned (deleting it brings the replaced one back where the
    bucket keeps versions).
    """
    where = f"s3://{bucket}/{key}"
    # "null" is the version of an object in a bucket that does not keep versions (some S3s return it).
    version: dict[str, Any] = {"VersionId": version_id} if version_id and version_id != "null" else {}
    with map_s3_errors(f"the check of what S3 recorded for {where}"):
        head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED", **version)
    recorded = head.get("ChecksumCRC32")
    if head["ContentLength"] == size and recorded == crc32:
        return
    mismatch = (
        f"S3 recorded {head['ContentLength']} bytes with CRC32 {recorded} for {where}, but {size} bytes with "
        f"CRC32 {crc32} were sent"
    )
    try:
        with map_s3_errors(f"the removal of {where} after a failed check"):
            s3.delete_object(Bucket=bucket, Key=key, **version)
    except OmboriGridExportError as exc:
        logger.error("could not remove %s after its check failed: %s", where, exc)
        raise IntegrityError(f"{mismatch}. Removing it failed too ({exc}); delete it by hand.") from None
    logger.warning("removed %s: %s", where, mismatch)
    raise IntegrityError(f"{mismatch}; the object was removed.")


def stored_kind(s3: S3Client, bucket: str, key: str, *, size: int) -> ContentKind:
    """The kind of the object already under ``key``, from its stored bytes (its first bytes and its last
    ``TAIL_BYTES``): an upload's kind is only known once its bytes are read, after the upload was created, so it is
    not in the object's metadata. UNKNOWN when the bytes are neither parquet nor a zip."""
    where = f"s3://{bucket}/{key}"
    with map_s3_errors(f"the read of the first and last bytes of {where}"):
        head = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{HEAD_BYTES - 1}")["Body"].read()
        tail = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=-{min(TAIL_BYTES, size)}")["Body"].read()
    return ContentKind.detect(head, tail) or ContentKind.UNKNOWN


class MultipartUpload:
    """One S3 multipart upload and the parts that are in it (thread-safe)."""

    def __init__(
        self, s3: S3Client, bucket: str, key: str, *, upload_id: str, job_id: str, size: int, part_size: int
    ) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.key = key
        self.upload_id = upload_id
        self.job_id = job_id
        self.size = size
        self.part_size = part_size
        self.parts: dict[int, PartRecord] = {}
        #: The first bytes of the file, as seen by this process or carried by the checkpoint.
        self.head = b""
        self._tail = bytearray()
        self._tail_seen: set[int] = set()
        self._lock = threading.Lock()
        self._closed = False
        send_part_bodies_whole(s3.meta.events)

    @property
    def part_count(self) -> int:
        return part_count(self.size, self.part_size)

    @classmethod
    def create(
        cls, s3: S3Client, bucket: str, key: str, job: ExportJob, *, size: int, part_size: int
    ) -> MultipartUpload:
        with map_s3_errors(f"the start of an upload to s3://{bucket}/{key}"):
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
        return cls(s3, bucket, key, upload_id=response["UploadId"], job_id=job.id, size=size, part_size=part_size)

    @classmethod
    def resume(cls, s3: S3Client, checkpoint: Checkpoint) -> MultipartUpload:
        """The upload named by ``checkpoint``, holding the parts S3 has as the checkpoint recorded them."""
        upload = cls(
            s3,
            checkpoint.bucket,
            checkpoint.key,
            upload_id=checkpoint.upload_id,
            job_id=checkpoint.job_id,
            size=checkpoint.size,
            part_size=checkpoint.part_size,
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
            with map_s3_errors(f"the listing of the parts uploaded to s3://{self.bucket}/{self.key}"):
                try:
                    response = self._s3.list_parts(
                        Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumberMarker=marker
                    )
                except ClientError as exc:
                    if error_code(exc) == _NO_SUCH_UPLOAD:
                        raise UploadGone() from None
                    raise
            for part in response.get("Parts", []):
                parts[part["PartNumber"]] = part
            if not response.get("IsTruncated"):
                return parts
            marker = int(response.get("NextPartNumberMarker", 0))

    def part_range(self, number: int) -> tuple[int, int]:
        return part_range(number, self.part_size, self.size)

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
        """Forget every part (they will be uploaded again from byte 0)."""
        with self._lock:
            self.parts.clear()
            self.head = b""
            self._tail = bytearray()
            self._tail_seen = set()

    def add(self, record: PartRecord) -> None:
        with self._lock:
            self.parts[record.number] = record

    def upload_and_release(self, number: int, data: PartBuffer, start: int) -> PartRecord:
        """Upload a part held in a memory map (with the CRC32 its reader computed, if any), then give it back."""
        try:
            with data.view() as view:
                return self.upload_part(number, view, start, crc=data.crc32)
        finally:
            data.close()

    def upload_part(self, number: int, data: bytes | memoryview, start: int, *, crc: int | None = None) -> PartRecord:
        """Upload bytes ``start``.. of the file as part ``number`` with its CRC32 (S3 verifies it against the
        bytes it receives); ``crc`` is that CRC32 when the reader computed it as the bytes arrived."""
        if not data:
            raise IntegrityError("An empty part cannot be uploaded.")
        self._capture_edges(data, start)
        if crc is None:
            crc = checksum.crc32_of(data)
        with PartBody(data) as body, map_s3_errors(f"the upload of part {number} to s3://{self.bucket}/{self.key}"):
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
                if error_code(exc) == _NO_SUCH_UPLOAD:
                    self._closed = True
                    raise UploadGone() from None
                raise
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
                self.head = bytes(data[:HEAD_BYTES])
            if end > self.tail_start:
                if len(self._tail) != self.size - self.tail_start:
                    self._tail = bytearray(self.size - self.tail_start)
                lo = max(start, self.tail_start)
                self._tail[lo - self.tail_start : end - self.tail_start] = data[lo - start :]
                self._tail_seen.add(start // self.part_size + 1)

    @property
    def tail(self) -> bytes:
        """The last TAIL_BYTES of the file, as far as this process saw them."""
        with self._lock:
            return bytes(self._tail)

    def set_tail(self, data: bytes) -> None:
        with self._lock:
            self._tail = bytearray(data)
            self._tail_seen = self.tail_part_numbers()

    def combined_crc(self) -> int:
        """The full-object CRC32 of the parts held, in order."""
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
        """Make the object visible under its key; conditional on the key being free unless ``replace``."""
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
        with map_s3_errors(f"the completion of the upload to s3://{self.bucket}/{self.key}"):
            try:
                result = dict(self._s3.complete_multipart_upload(**kwargs))
            except ClientError as exc:
                code = error_code(exc)
                if code == _NO_SUCH_UPLOAD:
                    # Completed by another run of this export (or its own earlier attempt whose answer was lost),
                    # or aborted: the caller looks at what is under the key.
                    self._closed = True
                    raise UploadGone() from None
                # Not aborted here: the upload may be shared with another run of this export (a retry resumes the
                # checkpoint of the invocation it replaces), whose completion of it may still be under way.
                if code == _WRITE_IN_PROGRESS:
                    raise TransferFailed(
                        f"Another write to s3://{self.bucket}/{self.key} was in progress while this run completed "
                        "its upload; a retry finds what landed."
                    ) from None
                if code in CONDITION_LOST_CODES:
                    raise LandingConflict(
                        f"s3://{self.bucket}/{self.key} was landed by another run meanwhile."
                    ) from None
                if code in _REFUSED_CONTENT_CODES:
                    self.abort()
                    raise IntegrityError(
                        f"S3 refused to complete s3://{self.bucket}/{self.key}: {describe_exception(exc)}"
                    ) from None
                raise
        # The upload is now the object: there is nothing left to abort.
        self._closed = True
        return result

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
        except (ClientError, BotoCoreError) as exc:
            # Best effort, usually while another error is on its way up: the bucket's lifecycle rule removes
            # abandoned uploads.
            logger.warning(
                "could not abort the upload to s3://%s/%s: %s", self.bucket, self.key, describe_exception(exc)
            )
