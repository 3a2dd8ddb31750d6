"""Where manifests are kept: written once as a day's commit marker, and read back strictly.

:mod:`.manifest` says what a manifest holds; this module puts it in S3 and reads it from there. The write that
commits a day is conditional (``If-None-Match: *``), so two runs of one export store one manifest and both answer
it (:func:`commit_manifest`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from .errors import IntegrityError, LandingConflict, TransferFailed
from .layout import manifest_key_for
from .manifest import Manifest
from .redact import describe_exception
from .s3errors import CONDITION_LOST_CODES, error_code, is_not_found

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def write_manifest(s3: S3Client, manifest: Manifest, *, only_if_absent: bool = False) -> str:
    """Put the manifest under its key (conditional on the key being free with ``only_if_absent``: a lost
    condition is :class:`ManifestTaken`)."""
    key = manifest.manifest_key
    condition: dict[str, Any] = {"IfNoneMatch": "*"} if only_if_absent else {}
    try:
        s3.put_object(
            Bucket=manifest.bucket,
            Key=key,
            Body=json.dumps(manifest.to_dict(), indent=2, sort_keys=True).encode(),
            ContentType="application/json",
            **condition,
        )
    except ClientError as exc:
        if only_if_absent and error_code(exc) in CONDITION_LOST_CODES:
            raise ManifestTaken() from None
        raise TransferFailed(
            f"Writing the manifest s3://{manifest.bucket}/{key} failed: {describe_exception(exc)}"
        ) from None
    return key


class ManifestTaken(Exception):
    """A conditional manifest write found a manifest under the key already (internal to :func:`commit_manifest`)."""


def commit_manifest(s3: S3Client, manifest: Manifest, *, replace: bool) -> Manifest:
    """Write the day's commit marker once, and return the manifest that is stored.

    Two runs of one export can land it at the same moment (a Download retried while its first invocation still
    runs): the first manifest written wins (``If-None-Match: *``), and the other run answers that one, marked
    already existed, so every answer and announcement of the landing is the stored manifest. A forced re-export
    (``replace``) overwrites the manifest of the landing it replaces.
    """
    if replace:
        write_manifest(s3, manifest)
        return manifest
    try:
        write_manifest(s3, manifest, only_if_absent=True)
    except ManifestTaken:
        where = f"s3://{manifest.bucket}/{manifest.manifest_key}"
        stored = read_manifest_at(s3, manifest.bucket, manifest.manifest_key)
        if stored is None:
            raise TransferFailed(
                f"Another run of job {manifest.job_id} is writing the manifest {where} at this moment; a retry "
                "reads it."
            ) from None
        if not stored.is_for(manifest.identity) or {f.key for f in stored.files} != {f.key for f in manifest.files}:
            raise LandingConflict(
                f"{where} already holds the manifest of another landing (job {stored.job_id}, {stored.tenant_id} "
                f"{stored.date_from}..{stored.date_to}); it is not replaced unless forced."
            ) from None
        return stored.as_already_existed()
    return manifest


def read_manifest(s3: S3Client, bucket: str, data_key: str) -> Manifest | None:
    """The manifest beside a single-file landing, or None when there is none."""
    return read_manifest_at(s3, bucket, manifest_key_for(data_key))


def read_manifest_at(s3: S3Client, bucket: str, manifest_key: str) -> Manifest | None:
    """The manifest at ``manifest_key``, or None when there is none.

    Raises :class:`IntegrityError` when the object there is not a valid manifest, and
    :class:`TransferFailed` when S3 cannot be read.
    """
    try:
        body = s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read()
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise TransferFailed(
            f"Reading the manifest s3://{bucket}/{manifest_key} failed: {describe_exception(exc)}"
        ) from None
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise IntegrityError(f"s3://{bucket}/{manifest_key} is not JSON, so it is not a manifest.") from None
    try:
        return Manifest.from_dict(document)
    except IntegrityError as exc:
        raise IntegrityError(f"s3://{bucket}/{manifest_key}: {exc}") from None
