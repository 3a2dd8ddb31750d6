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
from .models import ExportJob
from .redact import describe_exception
from .transfer import LandedObject

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from .archive import LandedMember

SCHEMA_VERSION = 1


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def build_manifest(job: ExportJob, landed: LandedObject, *, now: datetime | None = None) -> dict[str, Any]:
    landed_at = now or datetime.now(UTC)
    return {
        "schemaVersion": SCHEMA_VERSION,
        "tenantId": job.tenant_id,
        "dataDateFrom": job.date_from.isoformat(),
        "dataDateTo": job.date_to.isoformat(),
        "jobId": job.id,
        "sourceFilename": job.filename,
        "sourceHost": landed.source_host,
        "bucket": landed.bucket,
        "key": landed.key,
        "manifestKey": manifest_key_for(landed.key),
        "bytes": landed.bytes,
        "checksum": {"algorithm": "CRC32", "type": "FULL_OBJECT", "value": landed.checksum_crc32},
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
        "timings": {
            "jobCreatedAt": _iso(job.created_at),
            "jobUpdatedAt": _iso(job.updated_at),
            "transferStartedAt": _iso(landed.started_at),
            "transferFinishedAt": _iso(landed.finished_at),
            "transferSeconds": landed.duration_seconds,
            "landedAt": _iso(landed_at),
        },
    }


def build_archive_manifest(
    job: ExportJob,
    delivery: LandedObject,
    members: Sequence[LandedMember],
    skipped: Sequence[str],
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The manifest of an archive delivery: one entry per landed member, with its table and date."""
    landed_at = now or datetime.now(UTC)
    first = members[0].landed.key
    head, _, _ = first.rpartition("/")
    return {
        "schemaVersion": SCHEMA_VERSION,
        "tenantId": job.tenant_id,
        "dataDateFrom": job.date_from.isoformat(),
        "dataDateTo": job.date_to.isoformat(),
        "jobId": job.id,
        "sourceFilename": job.filename,
        "sourceHost": delivery.source_host,
        "bucket": delivery.bucket,
        "key": first,
        "manifestKey": f"{head}/_{job.id}.manifest.json" if head else f"_{job.id}.manifest.json",
        "bytes": sum(m.landed.bytes for m in members),
        "checksum": {"algorithm": "CRC32", "type": "FULL_OBJECT", "value": delivery.checksum_crc32},
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
        "timings": {
            "jobCreatedAt": _iso(job.created_at),
            "jobUpdatedAt": _iso(job.updated_at),
            "transferStartedAt": _iso(delivery.started_at),
            "transferFinishedAt": _iso(delivery.finished_at),
            "transferSeconds": delivery.duration_seconds,
            "landedAt": _iso(landed_at),
        },
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
