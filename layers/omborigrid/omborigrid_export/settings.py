"""Settings, parsed once from the environment into a validated model.

Nothing else reads ``os.environ``: the CLI builds a :class:`Settings` (whose defaults, here, are the CLI's
and stated once) and each Lambda function its own model (:mod:`.function_settings`, whose defaults are
template.yaml's parameters), and pass what is needed down. Names are a contract (see README "Configuration").
"""

from __future__ import annotations

import enum
import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from .errors import ConfigurationError, InvalidInput
from .layout import DEFAULT_ARCHIVE_KEY_TEMPLATE, DEFAULT_KEY_TEMPLATE, KeyLayout
from .parquet_proof import ProofPolicy

DEFAULT_API_URL = "https://api.omborigrid.com"
_ACCOUNT_ID = re.compile(r"^[0-9]{12}$")
MIB = 1024 * 1024
DEFAULT_PART_SIZE = 8 * MIB
DEFAULT_CONCURRENCY = 8
DEFAULT_ATTEMPTS = 5
#: The variable of the schema change policy, the same for the Download function and the CLI.
SCHEMA_CHANGE_POLICY = "SCHEMA_CHANGE_POLICY"


@dataclass(frozen=True, slots=True)
class TransferSettings:
    """How a file is moved from the download URL into S3."""

    #: Minimum part size; the actual size grows with the file so that it fits in 10,000 parts.
    part_size: int = DEFAULT_PART_SIZE
    #: Parts read at once when the source supports Range (one connection each); how many parts that holds in
    #: memory at once is ``transfer.ranged.parts_held(concurrency)``, the one statement of the bound.
    concurrency: int = DEFAULT_CONCURRENCY
    #: Attempts per byte range (or for the whole stream when Range is not supported).
    max_attempts: int = DEFAULT_ATTEMPTS
    #: How many times an expired (403) download URL is refreshed by getting the job again.
    max_url_refreshes: int = 3
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    def __post_init__(self) -> None:
        if not 5 * MIB <= self.part_size <= 5 * 1024 * MIB:
            raise ConfigurationError(
                "The transfer part size (OMBORIGRID_PART_SIZE_MIB) must be between 5 MiB and 5 GiB."
            )
        if not 1 <= self.concurrency <= 64:
            raise ConfigurationError(
                "The transfer concurrency (OMBORIGRID_TRANSFER_CONCURRENCY) must be between 1 and 64."
            )
        if not 1 <= self.max_attempts <= 20:
            raise ConfigurationError("The transfer attempts (OMBORIGRID_TRANSFER_ATTEMPTS) must be between 1 and 20.")


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """Bounds on what an archive may inflate to: a zip bomb is refused from its central directory."""

    #: Largest inflated/compressed ratio of one member (members under 1 MiB inflated are not judged).
    max_ratio: float = 100.0
    #: Largest total inflated size of the members landed from one archive.
    max_inflated_bytes: int = 50 * 1024**3
    max_members: int = 10_000

    def __post_init__(self) -> None:
        if self.max_ratio < 1 or self.max_inflated_bytes < 1 or self.max_members < 1:
            raise ConfigurationError("The archive limits must be positive (a compression ratio of at least 1).")


class SchemaChangePolicy(enum.StrEnum):
    """What a landing does with a breaking schema change (``SchemaChangePolicy``, README "Configuration")."""

    #: Land it under its table and announce it ("Schema Changed"): the default.
    LAND = "land"
    #: Land it under ``{prefix}/_quarantine/`` instead, fail the day and announce it (:mod:`.schema_gate`).
    QUARANTINE = "quarantine"

    @classmethod
    def parse(cls, text: str, name: str = SCHEMA_CHANGE_POLICY) -> SchemaChangePolicy:
        """The policy named by ``text`` ("" is the default, ``land``); a ConfigurationError naming ``name`` if not."""
        value = text.strip().lower() or cls.LAND.value
        try:
            return cls(value)
        except ValueError:
            raise ConfigurationError(
                f"{name} must be land or quarantine, not {text!r}: land (the default) lands and announces a breaking "
                "schema change, quarantine lands it under _quarantine/ and fails the day."
            ) from None


@dataclass(frozen=True, slots=True)
class Settings:
    api_url: str = DEFAULT_API_URL
    #: The token itself (CLI, local runs). In Lambda the token comes from Secrets Manager instead.
    token: str | None = field(default=None, repr=False)
    #: Name or ARN of the Secrets Manager secret holding the token (Lambda).
    token_secret: str | None = None
    allow_local_urls: bool = False
    api_connect_timeout: float = 5.0
    api_read_timeout: float = 30.0
    transfer: TransferSettings = field(default_factory=TransferSettings)
    layout: KeyLayout = field(default_factory=KeyLayout)
    archive_layout: KeyLayout = field(default_factory=lambda: KeyLayout(template=DEFAULT_ARCHIVE_KEY_TEMPLATE))
    #: Written by the CLI (from --dest), read by nothing: the bucket is passed to each landing.
    bucket: str | None = None
    #: What a landing's content proof checks (the parquet footer; DESIGN "Proof of a landing").
    proof: ProofPolicy = field(default_factory=ProofPolicy)
    #: Bounds on what an archive delivery may inflate to.
    archive: ArchiveLimits = field(default_factory=ArchiveLimits)
    #: The AWS account that must own the bucket (EXPORT_BUCKET_OWNER): every S3 call names it as
    #: ExpectedBucketOwner, so a bucket of another account is never written (omborigrid_export.bucket_owner).
    expected_bucket_owner: str | None = None
    #: What a landing does with a breaking schema change (SCHEMA_CHANGE_POLICY).
    schema_change_policy: SchemaChangePolicy = SchemaChangePolicy.LAND

    def __post_init__(self) -> None:
        if self.expected_bucket_owner is not None and not _ACCOUNT_ID.fullmatch(self.expected_bucket_owner):
            raise ConfigurationError(
                f"EXPORT_BUCKET_OWNER must be a 12-digit AWS account id, not {self.expected_bucket_owner!r}."
            )
        check_api_url(self.api_url, allow_local_urls=self.allow_local_urls, name="OMBORIGRID_API_URL")
        if "{table}" not in self.archive_layout.template:
            raise ConfigurationError(
                "EXPORT_ARCHIVE_KEY_TEMPLATE must contain {table}: archive members land per table."
            )
        check_tenant_segment(self.layout, "EXPORT_KEY_TEMPLATE")
        check_tenant_segment(self.archive_layout, "EXPORT_ARCHIVE_KEY_TEMPLATE")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The CLI's settings: every variable optional, the defaults above when unset or empty."""
        env = os.environ if environ is None else environ
        transfer = TransferSettings(
            part_size=_int(env, "OMBORIGRID_PART_SIZE_MIB", DEFAULT_PART_SIZE // MIB) * MIB,
            concurrency=_int(env, "OMBORIGRID_TRANSFER_CONCURRENCY", DEFAULT_CONCURRENCY),
            max_attempts=_int(env, "OMBORIGRID_TRANSFER_ATTEMPTS", DEFAULT_ATTEMPTS),
        )
        layout = KeyLayout(
            prefix=env.get("EXPORT_PREFIX", ""),
            template=env.get("EXPORT_KEY_TEMPLATE") or DEFAULT_KEY_TEMPLATE,
        )
        archive_layout = KeyLayout(
            prefix=env.get("EXPORT_PREFIX", ""),
            template=env.get("EXPORT_ARCHIVE_KEY_TEMPLATE") or DEFAULT_ARCHIVE_KEY_TEMPLATE,
        )
        return cls(
            api_url=(env.get("OMBORIGRID_API_URL") or DEFAULT_API_URL).rstrip("/"),
            token=env.get("OMBORIGRID_TOKEN") or None,
            token_secret=env.get("OMBORIGRID_TOKEN_SECRET") or None,
            allow_local_urls=is_on(env.get("OMBORIGRID_ALLOW_LOCAL_URLS", "")),
            expected_bucket_owner=env.get("EXPORT_BUCKET_OWNER") or None,
            transfer=transfer,
            layout=layout,
            archive_layout=archive_layout,
            proof=proof_policy_from(env),
            archive=archive_limits_from(env),
            schema_change_policy=SchemaChangePolicy.parse(env.get(SCHEMA_CHANGE_POLICY, "")),
        )


def check_api_url(url: str, *, allow_local_urls: bool, name: str) -> str:
    """An API base URL is https with a host and no query, fragment or credentials (plain http only with
    OMBORIGRID_ALLOW_LOCAL_URLS=1, for a simulator). ``name`` says where the URL came from, for the message."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(f"{name} {url!r} is not an http(s) URL.")
    if parts.scheme == "http" and not allow_local_urls:
        raise ConfigurationError(
            f"{name} uses plain http; set OMBORIGRID_ALLOW_LOCAL_URLS=1 only for a local simulator."
        )
    if parts.query or parts.fragment or parts.username:
        raise ConfigurationError(f"{name} must not carry a query, fragment or credentials.")
    return url


def is_on(flag: str) -> bool:
    """Whether a switch variable is on (``1``, ``true`` or ``yes``; anything else is off)."""
    return flag in ("1", "true", "yes")


def check_tenant_segment(layout: KeyLayout, name: str) -> None:
    """``{tenantId}`` must share its path segment with no other placeholder: ``tenant={tenantId}`` is fine, but
    ``{tenantId}{dataDateFrom}`` or ``{tenantId}_{filename}`` would let two tenants render the same key."""
    for segment in layout.template.split("/"):
        fields = [f for _, f, _, _ in string.Formatter().parse(segment) if f is not None]
        if "tenantId" in fields and len(fields) > 1:
            raise ConfigurationError(
                f"{name} {layout.template!r} puts {{tenantId}} in the segment {segment!r} together with another "
                "placeholder, so two tenants could land under the same key; give {tenantId} a path segment of "
                "its own (such as tenant={tenantId})."
            )


#: The variables of the content proof and of the archive bounds: the Download function's (the template sets
#: each) and the CLI's (each optional there, the defaults of ProofPolicy and ArchiveLimits when unset).
PROOF_VARIABLES = (
    "OMBORIGRID_PROOF_STRICT",
    "OMBORIGRID_PROOF_TOLERANCE_HOURS",
    "OMBORIGRID_PROOF_TENANT_COLUMN",
    "OMBORIGRID_PROOF_EVENT_TIME_COLUMNS",
)
ARCHIVE_VARIABLES = ("OMBORIGRID_ARCHIVE_MAX_RATIO", "OMBORIGRID_ARCHIVE_MAX_INFLATED_GIB")


def proof_policy_from(env: Mapping[str, str]) -> ProofPolicy:
    """What a landing's proof checks, from PROOF_VARIABLES ("" or absent: the default)."""
    default = ProofPolicy()
    columns = tuple(c.strip() for c in env.get("OMBORIGRID_PROOF_EVENT_TIME_COLUMNS", "").split(",") if c.strip())
    hours = _int(env, "OMBORIGRID_PROOF_TOLERANCE_HOURS", int(default.tolerance.total_seconds() // 3600))
    try:
        return ProofPolicy(
            tenant_column=env.get("OMBORIGRID_PROOF_TENANT_COLUMN", "").strip() or default.tenant_column,
            event_time_columns=columns or default.event_time_columns,
            tolerance=timedelta(hours=hours),
            strict=is_on(env.get("OMBORIGRID_PROOF_STRICT", "")),
        )
    except InvalidInput as exc:
        raise ConfigurationError(f"The content proof settings are not acceptable: {exc}") from None


def archive_limits_from(env: Mapping[str, str]) -> ArchiveLimits:
    """Bounds on an archive's inflation, from ARCHIVE_VARIABLES ("" or absent: the default)."""
    default = ArchiveLimits()
    return ArchiveLimits(
        max_ratio=float(_int(env, "OMBORIGRID_ARCHIVE_MAX_RATIO", int(default.max_ratio))),
        max_inflated_bytes=_int(env, "OMBORIGRID_ARCHIVE_MAX_INFLATED_GIB", default.max_inflated_bytes // 1024**3)
        * 1024**3,
    )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, not {raw!r}.") from None
