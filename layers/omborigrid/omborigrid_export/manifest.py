"""The manifest: what one export landed, written beside the data and sent in "Export Completed".

It is the day's commit marker (DESIGN "Landing"): a day is landed when its manifest exists and says so, so it
is written last and read back strictly. A :class:`Manifest` is built from the *requested* identity (DESIGN
"Identity"), never from what a later API answer claimed. Its JSON shape is documented by
``schemas/export-completed.schema.json``; :meth:`Manifest.from_dict` accepts every shape that schema
accepts (manifests written before proofs existed included) and refuses anything else with a typed error,
never a ``KeyError``. It never holds a presigned URL or a token: only the source host.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from .errors import IntegrityError, InvalidInput
from .layout import archive_manifest_key, manifest_key_for
from .models import ExportJob, ExportRequest, JobIdentity, iso_utc
from .proof import CheckResult, Proof
from .transfer.results import LandedObject

if TYPE_CHECKING:
    from .archive import ArchiveContents

SCHEMA_VERSION = 1


class _Invalid(Exception):
    """One field of a manifest document is missing or of the wrong type (turned into IntegrityError)."""


@dataclass(frozen=True, slots=True)
class ManifestFile:
    """One landed object: the single file of a delivery, or one member of an archive."""

    key: str
    bytes: int
    checksum_crc32: str
    content_kind: str
    version_id: str | None = None
    #: Archive members only: the table and data date taken from the member's path, and that path.
    table: str | None = None
    data_date: date | None = None
    member: str | None = None
    #: What the parquet footer showed (``Proof.to_dict()``), or None when no proof was made.
    proof: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, landed: LandedObject, proof: Proof | None, **member: Any) -> ManifestFile:
        return cls(
            key=landed.key,
            bytes=landed.bytes,
            checksum_crc32=landed.checksum_crc32,
            content_kind=landed.content_kind,
            version_id=landed.version_id,
            proof=None if proof is None else proof.to_dict(),
            **member,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key,
            "bytes": self.bytes,
            "checksumCRC32": self.checksum_crc32,
            "contentKind": self.content_kind,
            "versionId": self.version_id,
            "proof": None if self.proof is None else dict(self.proof),
        }
        member = {"table": self.table, "dataDate": _iso_date(self.data_date), "member": self.member}
        return out | {name: value for name, value in member.items() if value is not None}

    @classmethod
    def from_dict(cls, data: Any) -> ManifestFile:
        doc = _mapping(data, "a file entry")
        proof = _optional(doc, "proof", Mapping)
        return cls(
            key=_required(doc, "key", str),
            bytes=_required(doc, "bytes", int),
            checksum_crc32=_required(doc, "checksumCRC32", str),
            content_kind=_required(doc, "contentKind", str),
            version_id=_optional(doc, "versionId", str),
            table=_optional(doc, "table", str),
            data_date=_optional_date(doc, "dataDate"),
            member=_optional(doc, "member", str),
            proof=None if proof is None else dict(proof),
        )


@dataclass(frozen=True, slots=True)
class Timings:
    job_created_at: datetime | None
    job_updated_at: datetime | None
    transfer_started_at: datetime | None
    transfer_finished_at: datetime | None
    transfer_seconds: float | None
    landed_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "jobCreatedAt": iso_utc(self.job_created_at),
            "jobUpdatedAt": iso_utc(self.job_updated_at),
            "transferStartedAt": iso_utc(self.transfer_started_at),
            "transferFinishedAt": iso_utc(self.transfer_finished_at),
            "transferSeconds": self.transfer_seconds,
            "landedAt": iso_utc(self.landed_at),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Timings:
        doc = _mapping(data, "timings")
        seconds = _optional(doc, "transferSeconds", (int, float))
        landed_at = _datetime(doc, "landedAt")
        if landed_at is None:
            raise _Invalid("'timings.landedAt' is missing")
        return cls(
            job_created_at=_datetime(doc, "jobCreatedAt"),
            job_updated_at=_datetime(doc, "jobUpdatedAt"),
            transfer_started_at=_datetime(doc, "transferStartedAt"),
            transfer_finished_at=_datetime(doc, "transferFinishedAt"),
            transfer_seconds=None if seconds is None else float(seconds),
            landed_at=landed_at,
        )


@dataclass(frozen=True, slots=True)
class Manifest:
    """What one export landed. ``to_dict`` is the manifest object's JSON and the "Export Completed" detail."""

    tenant_id: str
    date_from: date
    date_to: date
    job_id: str
    source_filename: str
    source_host: str
    bucket: str
    key: str
    manifest_key: str
    bytes: int
    #: The full-object CRC-32 (base64) of the delivery as it arrived (the archive's, for an archive).
    checksum_crc32: str
    content_kind: str
    files: tuple[ManifestFile, ...]
    timings: Timings
    already_existed: bool = False
    #: Archive deliveries only: the archive's own size and the members that were not parquet.
    delivery_bytes: int | None = None
    skipped_members: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.files:
            raise IntegrityError(f"The manifest of job {self.job_id} lists no files.")
        # The identity's own checks: tenant id, date order and job id (InvalidInput otherwise).
        JobIdentity(self.job_id, ExportRequest(self.tenant_id, self.date_from, self.date_to))

    @property
    def identity(self) -> JobIdentity:
        return JobIdentity(self.job_id, ExportRequest(self.tenant_id, self.date_from, self.date_to))

    def is_for(self, identity: JobIdentity) -> bool:
        """Whether this manifest lands the same tenant and dates as ``identity`` (any job)."""
        return self.identity.request == identity.request

    def names(self, key: str) -> bool:
        return any(f.key == key for f in self.files)

    def as_already_existed(self) -> Manifest:
        return dataclasses.replace(self, already_existed=True)

    def as_written(self) -> Manifest:
        """The manifest as its document in S3 holds it (written once, never "already existed"): what a landing
        announces, so every announcement of one landing, a retried one's included, is the same."""
        return dataclasses.replace(self, already_existed=False)

    def proof_summary(self) -> dict[str, Any] | None:
        """Which checks ran over the landed files: each check's weakest result across the files."""
        proofs = [f.proof for f in self.files if f.proof is not None]
        if not proofs:
            return None
        checks: dict[str, str] = {}
        for proof in proofs:
            for name, result in dict(proof.get("checks") or {}).items():
                if checks.get(name) != CheckResult.NOT_VERIFIED.value:
                    checks[name] = str(result)
        rows = [p.get("rows") for p in proofs]
        return {
            "filesProven": len(proofs),
            "filesTotal": len(self.files),
            "rows": sum(r for r in rows if isinstance(r, int)),
            "checks": dict(sorted(checks.items())),
        }

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schemaVersion": SCHEMA_VERSION,
            "tenantId": self.tenant_id,
            "dataDateFrom": self.date_from.isoformat(),
            "dataDateTo": self.date_to.isoformat(),
            "jobId": self.job_id,
            "sourceFilename": self.source_filename,
            "sourceHost": self.source_host,
            "bucket": self.bucket,
            "checksum": {"algorithm": "CRC32", "type": "FULL_OBJECT", "value": self.checksum_crc32},
            "timings": self.timings.to_dict(),
            "key": self.key,
            "manifestKey": self.manifest_key,
            "bytes": self.bytes,
            "contentKind": self.content_kind,
            "alreadyExisted": self.already_existed,
            "files": [f.to_dict() for f in self.files],
            "proof": self.proof_summary(),
        }
        if self.delivery_bytes is not None:
            out["deliveryBytes"] = self.delivery_bytes
        if self.skipped_members is not None:
            out["skippedMembers"] = list(self.skipped_members)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Parse a manifest document. Raises :class:`IntegrityError` (with the reason) when it is not one."""
        try:
            return cls._parse(_mapping(data, "the manifest"))
        except (_Invalid, InvalidInput) as exc:
            raise IntegrityError(f"The document is not a valid export manifest: {str(exc).rstrip('.')}.") from None

    @classmethod
    def _parse(cls, doc: Mapping[str, Any]) -> Manifest:
        if doc.get("schemaVersion") != SCHEMA_VERSION:
            raise _Invalid(f"schemaVersion is {doc.get('schemaVersion')!r}, not {SCHEMA_VERSION}")
        files = _required(doc, "files", list)
        if not files:
            raise _Invalid("'files' is empty")
        skipped = _optional(doc, "skippedMembers", list)
        checksum = _mapping(doc.get("checksum"), "'checksum'")
        return cls(
            tenant_id=_required(doc, "tenantId", str),
            date_from=_required_date(doc, "dataDateFrom"),
            date_to=_required_date(doc, "dataDateTo"),
            job_id=_required(doc, "jobId", str),
            source_filename=_required(doc, "sourceFilename", str),
            source_host=_required(doc, "sourceHost", str),
            bucket=_required(doc, "bucket", str),
            key=_required(doc, "key", str),
            manifest_key=_required(doc, "manifestKey", str),
            bytes=_required(doc, "bytes", int),
            checksum_crc32=_required(checksum, "value", str),
            content_kind=_required(doc, "contentKind", str),
            files=tuple(ManifestFile.from_dict(f) for f in files),
            timings=Timings.from_dict(doc.get("timings")),
            already_existed=bool(_optional(doc, "alreadyExisted", bool)),
            delivery_bytes=_optional(doc, "deliveryBytes", int),
            skipped_members=None if skipped is None else tuple(_each_str(skipped, "skippedMembers")),
        )


def build_manifest(
    identity: JobIdentity, job: ExportJob, landed: LandedObject, *, proof: Proof | None, landed_at: datetime
) -> Manifest:
    """The manifest of a single-file delivery, written beside the file."""
    return Manifest(
        **_common(identity, job, landed, landed_at),
        key=landed.key,
        manifest_key=manifest_key_for(landed.key),
        bytes=landed.bytes,
        content_kind=landed.content_kind,
        files=(ManifestFile.of(landed, proof),),
        already_existed=landed.already_existed,
    )


def build_archive_manifest(
    identity: JobIdentity, job: ExportJob, delivery: LandedObject, contents: ArchiveContents, *, landed_at: datetime
) -> Manifest:
    """The manifest of an archive delivery: one entry per landed member, with its table and date, beside the
    first member. ``checksum`` is the delivered archive's, each file has its own."""
    entries = contents.entries
    return Manifest(
        **_common(identity, job, delivery, landed_at),
        key=entries[0].landed.key,
        manifest_key=archive_manifest_key(entries[0].landed.key, identity.job_id),
        bytes=sum(e.landed.bytes for e in entries),
        content_kind="zip",
        files=tuple(
            ManifestFile.of(e.landed, e.proof, table=e.table, data_date=e.day, member=e.member) for e in entries
        ),
        already_existed=all(e.landed.already_existed for e in entries),
        delivery_bytes=delivery.bytes,
        skipped_members=contents.skipped,
    )


def _common(identity: JobIdentity, job: ExportJob, delivery: LandedObject, landed_at: datetime) -> dict[str, Any]:
    """Which export (from the requested identity, never a later answer), from where, and when."""
    request = identity.request
    timings = Timings(
        job.created_at, job.updated_at, delivery.started_at, delivery.finished_at, delivery.duration_seconds, landed_at
    )
    return {
        "tenant_id": request.tenant_id,
        "date_from": request.date_from,
        "date_to": request.date_to,
        "job_id": identity.job_id,
        "source_filename": job.filename,
        "source_host": delivery.source_host,
        "bucket": delivery.bucket,
        "checksum_crc32": delivery.checksum_crc32,
        "timings": timings,
    }


# -- strict field readers ---------------------------------------------------------------------------


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _Invalid(f"{what} is not an object")
    return value


def _required(doc: Mapping[str, Any], name: str, kind: Any) -> Any:
    value = _optional(doc, name, kind)
    if value is None:
        raise _Invalid(f"'{name}' is missing")
    return value


def _optional(doc: Mapping[str, Any], name: str, kind: Any) -> Any:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, bool) and kind is not bool:
        raise _Invalid(f"'{name}' is a boolean")
    if not isinstance(value, kind):
        raise _Invalid(f"'{name}' has the wrong type ({type(value).__name__})")
    return value


def _optional_date(doc: Mapping[str, Any], name: str) -> date | None:
    value = _optional(doc, name, str)
    try:
        return None if value is None else date.fromisoformat(value)
    except ValueError:
        raise _Invalid(f"'{name}' is not a date") from None


def _required_date(doc: Mapping[str, Any], name: str) -> date:
    value = _optional_date(doc, name)
    if value is None:
        raise _Invalid(f"'{name}' is missing")
    return value


def _iso_date(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _datetime(doc: Mapping[str, Any], name: str) -> datetime | None:
    value = _optional(doc, name, str)
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise _Invalid(f"'timings.{name}' is not a timestamp") from None


def _each_str(values: Sequence[Any], name: str) -> list[str]:
    if not all(isinstance(v, str) for v in values):
        raise _Invalid(f"'{name}' holds something other than strings")
    return list(values)
