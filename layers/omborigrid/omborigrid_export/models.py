"""The export request and the export job, validated at the edge.

Everything that comes from outside (CLI args, events, API responses) passes through a constructor here,
so the rest of the code can trust its inputs, and a bad input fails with a sentence instead of a
``KeyError`` deep inside.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .errors import ExportFailed, IntegrityError, InvalidApiResponse, InvalidInput

#: Tenant ids become part of S3 keys and execution names, so only a conservative alphabet is accepted.
#: OmboriGrid's own ids are 24-character hex strings, well inside this.
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: Job ids from the API become part of execution names (Step Functions allows [A-Za-z0-9_-]), S3 keys (the
#: ``{jobId}`` placeholder) and ledger keys, so no '.', ':', '/', space or control character gets through.
#: OmboriGrid's ids are 24-character hex strings.
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_FILENAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]{0,254}$")


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"


class Split(enum.StrEnum):
    """How a request for a date range becomes export jobs: one per day, or one for the whole range."""

    DAILY = "daily"
    NONE = "none"


def validate_tenant_id(value: object, *, what: str = "tenant id") -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"The {what} is missing or not a string.")
    if ".." in value or not _TENANT_RE.fullmatch(value):
        raise InvalidInput(
            f"The {what} {_quote(value)} is not acceptable: use letters, digits, '.', '_' or '-' "
            "(no '/', '..', spaces or control characters, at most 128 characters)."
        )
    return value


def parse_date(value: object, *, what: str = "date") -> date:
    """A calendar date written strictly as YYYY-MM-DD."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value.isascii() or not _DATE_RE.fullmatch(value):
        raise InvalidInput(f"The {what} {_quote(value)} is not a date in YYYY-MM-DD form.")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"The {what} {_quote(value)} is not a real calendar date.") from None


def validate_job_id(value: object) -> str:
    if not isinstance(value, str) or not _JOB_ID_RE.fullmatch(value):
        raise InvalidInput(
            f"The job id {_quote(value)} is not acceptable: a job id is 1 to 128 letters, digits, '_' or '-'."
        )
    return value


def _quote(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """One export to ask the API for: a tenant and an inclusive range of data dates."""

    tenant_id: str
    date_from: date
    date_to: date

    def __post_init__(self) -> None:
        validate_tenant_id(self.tenant_id)
        if self.date_from > self.date_to:
            raise InvalidInput(
                f"The date range {self.date_from.isoformat()}..{self.date_to.isoformat()} is reversed: "
                "the from date must not be after the to date."
            )

    @classmethod
    def parse(cls, tenant_id: object, date_from: object, date_to: object) -> ExportRequest:
        return cls(
            validate_tenant_id(tenant_id),
            parse_date(date_from, what="from date"),
            parse_date(date_to, what="to date"),
        )

    def split_daily(self) -> list[ExportRequest]:
        days = (self.date_to - self.date_from).days + 1
        return [ExportRequest(self.tenant_id, d, d) for d in (self.date_from + timedelta(days=i) for i in range(days))]

    def split(self, how: Split) -> list[ExportRequest]:
        return self.split_daily() if how is Split.DAILY else [self]

    @property
    def label(self) -> str:
        if self.date_from == self.date_to:
            return f"{self.tenant_id} {self.date_from.isoformat()}"
        return f"{self.tenant_id} {self.date_from.isoformat()}..{self.date_to.isoformat()}"

    def to_api(self) -> dict[str, str]:
        return {
            "tenantId": self.tenant_id,
            "dataDateFrom": self.date_from.isoformat(),
            "dataDateTo": self.date_to.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class JobIdentity:
    """Who a job is: the id the API returned on create plus the tenant and dates that were asked for.

    The identity is pinned (DESIGN "Identity"): every later answer about the job (each status check, the
    land-time re-read, every URL refresh) must carry the same id, tenant and dates. Keys, ledger entries and
    manifests derive from this requested identity only, never from what a later answer claims.
    """

    job_id: str
    request: ExportRequest

    def __post_init__(self) -> None:
        validate_job_id(self.job_id)

    @property
    def label(self) -> str:
        return f"job {self.job_id} ({self.request.label})"

    def confirm(self, job: ExportJob) -> ExportJob:
        """``job`` if the API's answer is about this identity; :class:`IntegrityError` naming both otherwise."""
        if job.id != self.job_id or job.request != self.request:
            raise IntegrityError(
                f"The API answered for job {_quote(job.id)} of {job.request.label}, but {self.label} was asked "
                "about; nothing from that answer is landed."
            )
        return job


@dataclass(frozen=True, slots=True)
class ExportJob:
    """An export job as the API reports it.

    ``download_url`` is a secret (a presigned URL): it is excluded from ``repr`` and from
    :meth:`to_public_dict`, which is what travels in state machine payloads and events.
    """

    id: str
    status: JobStatus
    tenant_id: str
    date_from: date
    date_to: date
    filename: str
    created_at: datetime | None = None
    updated_at: datetime | None = None
    expires_at: datetime | None = None
    file_size: int | None = None
    download_url: str | None = None

    def __repr__(self) -> str:
        return (
            f"ExportJob(id={self.id!r}, status={self.status.value!r}, tenant_id={self.tenant_id!r}, "
            f"date_from={self.date_from}, date_to={self.date_to}, filename={self.filename!r}, "
            f"file_size={self.file_size!r})"
        )

    @property
    def request(self) -> ExportRequest:
        return ExportRequest(self.tenant_id, self.date_from, self.date_to)

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    @classmethod
    def from_api(cls, body: object) -> ExportJob:
        """Validate one job document from the API. Raises :class:`InvalidApiResponse`."""
        if not isinstance(body, Mapping):
            raise InvalidApiResponse(f"The API returned {type(body).__name__} where a job object was expected.")
        try:
            job_id = _api_str(body, "id")
            validate_job_id(job_id)
            raw_status = _api_str(body, "status")
            try:
                status = JobStatus(raw_status)
            except ValueError:
                # The API documents no failure status; anything unknown ends the export, explained.
                raise ExportFailed(
                    f"The API reported job {job_id} with status {_quote(raw_status)}, which is not one of "
                    "queued, processing or done; treating the export as failed."
                ) from None
            tenant_id = validate_tenant_id(_api_str(body, "tenantId"), what="tenantId in the API response")
            filename = _api_str(body, "filename")
            if ".." in filename or not _FILENAME_RE.fullmatch(filename):
                raise InvalidApiResponse(
                    f"The API gave job {job_id} the filename {_quote(filename)}, which is not a safe file name."
                )
            job = cls(
                id=job_id,
                status=status,
                tenant_id=tenant_id,
                date_from=_api_date(body, "dataDateFrom"),
                date_to=_api_date(body, "dataDateTo"),
                filename=filename,
                created_at=_api_datetime(body, "createdAt"),
                updated_at=_api_datetime(body, "updatedAt"),
                expires_at=_api_datetime(body, "jobExpiryDate"),
                file_size=_api_size(body),
                download_url=_api_optional_str(body, "downloadUrl"),
            )
        except InvalidInput as exc:
            raise InvalidApiResponse(f"The API returned an invalid job: {exc}") from None
        if job.date_from > job.date_to:
            raise InvalidApiResponse(
                f"The API reported job {job.id} with a reversed date range "
                f"{job.date_from.isoformat()}..{job.date_to.isoformat()}."
            )
        if job.status is JobStatus.DONE and (job.download_url is None or job.file_size is None):
            raise InvalidApiResponse(f"The API reported job {job.id} as done but without downloadUrl or fileSize.")
        return job

    def to_public_dict(self) -> dict[str, Any]:
        """JSON-safe, secret-free form (no download URL)."""
        return {
            "jobId": self.id,
            "status": self.status.value,
            "tenantId": self.tenant_id,
            "dataDateFrom": self.date_from.isoformat(),
            "dataDateTo": self.date_to.isoformat(),
            "filename": self.filename,
            "createdAt": iso_utc(self.created_at),
            "updatedAt": iso_utc(self.updated_at),
            "jobExpiryDate": iso_utc(self.expires_at),
            "fileSize": self.file_size,
        }


def iso_utc(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, or None."""
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _api_str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidApiResponse(f"The API response lacks a valid '{key}' (got {_quote(value)}).")
    return value


def _api_optional_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidApiResponse(f"The API response has a non-string '{key}'.")
    return value


def _api_date(body: Mapping[str, Any], key: str) -> date:
    value = _api_str(body, key)
    # The seed documents YYYY-MM-DD; accept a midnight timestamp form too, but nothing vaguer.
    if "T" in value:
        parsed = parse_api_datetime(value, key)
        if parsed.utcoffset() or parsed.time() != datetime.min.time():
            raise InvalidApiResponse(f"The API response has '{key}' {_quote(value)}, which is not a date.")
        return parsed.date()
    return parse_date(value, what=f"'{key}' in the API response")


def _api_datetime(body: Mapping[str, Any], key: str) -> datetime | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidApiResponse(f"The API response has a non-string '{key}'.")
    return parse_api_datetime(value, key)


_FRACTION_RE = re.compile(r"(\.\d{6})\d+")


def parse_api_datetime(value: str, key: str = "timestamp") -> datetime:
    """ISO 8601 with an optional ``Z``; more than six fractional digits are truncated."""
    text = _FRACTION_RE.sub(r"\1", value.strip())
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidApiResponse(f"The API response has a malformed '{key}': {_quote(value)}.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _api_size(body: Mapping[str, Any]) -> int | None:
    value = body.get("fileSize")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidApiResponse(f"The API response has a non-integer 'fileSize': {_quote(value)}.")
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise InvalidApiResponse(f"The API response has a non-integer 'fileSize': {_quote(value)}.")
    try:
        size = int(value)
    except ValueError:
        raise InvalidApiResponse(f"The API response has a non-integer 'fileSize': {_quote(value)}.") from None
    if size < 0:
        raise InvalidApiResponse(f"The API response has a negative 'fileSize': {size}.")
    return size
