"""The manifest: what one export landed, written beside the data and sent in "Export Completed".

Its shape is documented by ``schemas/export-completed.schema.json``. It never holds a presigned URL or
a token: only the source host.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from .errors import TransferFailed
from .layout import manifest_key_for
from .models import ExportJob, iso_utc
from .redact import describe_exception
from .transfer.results import LandedObject

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from .archive import LandedMember

SCHEMA_VERSION = 1


def _common(job: ExportJob, delivery: LandedObject, landed_at: datetime) -> dict[str, Any]:
    """The fields every manifest has: which export, from where, and when."""
    return {
        "schemaVersion": SCHEMA_VERSION,
        "tenantId": job.tenant_id,
        "dataDateFrom": job.date_from.isoformat(),
        "dataDateTo": job.date_to.isoformat(),
        "jobId": job.id,
        "sourceFilename": job.filename,
        "sourceHost": delivery.source_host,
        "bucket": delivery.bucket,
        "checksum": {"algorithm": "CRC32", "type": "FULL_OBJECT", "value": delivery.checksum_crc32},
        "timings": {
            "jobCreatedAt": iso_utc(job.created_at),
            "jobUpdatedAt": iso_utc(job.updated_at),
            "transferStartedAt": iso_utc(delivery.started_at),
            "transferFinishedAt": iso_utc(delivery.finished_at),
            "transferSeconds": delivery.duration_seconds,
            "landedAt": iso_utc(landed_at),
        },
    }


def build_manifest(job: ExportJob, landed: LandedObject, *, now: datetime | None = None) -> dict[str, Any]:
    """The manifest of a single-file delivery, written beside the file."""
    return {
        **_common(job, landed, now or datetime.now(UTC)),
        "key": landed.key,
        "manifestKey": manifest_key_for(landed.key),
        "bytes": landed.bytes,
        "contentKind": landed.content_kind,
        "alreadyExisted": landed.already_existed,
        "files": [
            {
                "key": landed.key,
                "bytes": landed.bytes,
                "checksumCRC32": landed.checksum_crc32,
                "contentKind": landed.content_kind,
                "versionId": landed.version_id,
            }
        ],
    }


def build_archive_manifest(
    job: ExportJob,
    delivery: LandedObject,
    members: Sequence[LandedMember],
    skipped: Sequence[str],
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The manifest of an archive delivery: one entry per landed member, with its table and date. It sits
    beside the first member; ``checksum`` is the delivered archive's, each file has its own."""
    first = members[0].landed.key
    head, _, _ = first.rpartition("/")
    return {
        **_common(job, delivery, now or datetime.now(UTC)),
        "key": first,
        "manifestKey": f"{head}/_{job.id}.manifest.json" if head else f"_{job.id}.manifest.json",
        "bytes": sum(m.landed.bytes for m in members),
        "contentKind": "zip",
        "deliveryBytes": delivery.bytes,
        "alreadyExisted": all(m.landed.already_existed for m in members),
        "files": [
            {
                "key": m.landed.key,
                "bytes": m.landed.bytes,
                "checksumCRC32": m.landed.checksum_crc32,
                "contentKind": m.landed.content_kind,
                "table": m.table,
                "dataDate": m.day.isoformat(),
                "member": m.member,
                "versionId": m.landed.version_id,
            }
            for m in members
        ],
        "skippedMembers": list(skipped),
    }


def write_manifest(s3: S3Client, manifest: dict[str, Any]) -> str:
    key = str(manifest["manifestKey"])
    try:
        s3.put_object(
            Bucket=str(manifest["bucket"]),
            Key=key,
            Body=json.dumps(manifest, indent=2, sort_keys=True).encode(),
            ContentType="application/json",
        )
    except ClientError as exc:
        raise TransferFailed(
            f"Writing the manifest s3://{manifest['bucket']}/{key} failed: {describe_exception(exc)}"
        ) from None
    return key


def read_manifest(s3: S3Client, bucket: str, data_key: str) -> dict[str, Any] | None:
    return read_manifest_at(s3, bucket, manifest_key_for(data_key))


def read_manifest_at(s3: S3Client, bucket: str, manifest_key: str) -> dict[str, Any] | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    result: dict[str, Any] = json.loads(body)
    return result
