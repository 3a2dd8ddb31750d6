"""Knobs and counters of the simulator, kept apart from the server so the CLI and tests share one definition.

Every knob is a field of :class:`SimulatorConfig`; the same names are accepted by ``Simulator.configure``,
``POST /_sim/config`` and (with dashes) the CLI flags, so there is one vocabulary for faults everywhere.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

DELIVERIES = ("parquet", "zip")
TIMESTAMP_FORMATS = ("timestamp", "string")
IDENTITY_CHANGES = ("tenant", "dates", "id")
EMPTY_FILES = ("rows", "bytes")
SLOW_DRIP_ROUTES = ("status", "create", "all")
BAD_LOCATIONS = ("ipv6", "control", "no_scheme", "empty")
BAD_MEMBER_KINDS = ("crc", "footer")
ZIP_BOMBS = ("ratio", "lie")
BAD_ZIPS = ("garbage_directory", "truncated")
SCHEMA_CHANGES = ("type", "add")
# Knobs that replace the delivered bytes; two at once would make a test's meaning ambiguous, so only one may be set.
DAMAGE_KNOBS = ("truncated_parquet", "empty_file", "archive_bad_member", "zip_bomb", "bad_zip")
ARCHIVE_KNOBS = ("archive_bad_member", "zip_bomb", "bad_zip")

# Keys a fail_next spec may carry; anything else is a typo that would silently do nothing, so it is refused.
FAULT_KEYS = frozenset(
    {"status", "count", "retry_after", "methods", "after_create", "body", "content_type", "headers", "delay", "close"}
)

_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection"})


@dataclass
class SimulatorConfig:
    """All behaviour knobs. Defaults model a healthy, quick API serving small files.

    Consumable knobs (``fail_next``, ``drop_count``, ``expire_next_downloads``, ``garbled_status``) are
    decremented as the simulator serves them, so reading the config back shows what is still armed.

    Adversarial API and delivery knobs (what a buggy gateway, a mis-routed job or a broken upload produces):

    * ``identity_change`` (``"tenant"`` | ``"dates"`` | ``"id"``) with ``identity_change_after`` (N, default 1):
      the first N GETs of a job answer truthfully, later ones name another tenant (a fixed 24-hex id derived
      from the real one), dates one day later, or another job id. The file and its URL stay the real job's.
      Fixed when the job is created; every 200 GET of that job counts (status checks, re-reads, URL refreshes).
    * ``truncated_parquet`` (K bytes): the file is its first K bytes plus ``PAR1`` (K is clamped so the
      result is always shorter than the real file); parquet deliveries only.
    * ``foreign_tenant`` (a tenant id): the file is exactly that tenant's delivery for the requested dates.
    * ``foreign_dates`` (days, non-zero): the file is the requested tenant's delivery for the dates shifted
      by that many days.
    * ``empty_file``: ``"rows"`` - valid parquet with 0 rows and the full schema (every zip member too; no
      ``target_bytes`` padding); ``"bytes"`` - a zero-byte file and ``fileSize`` 0.
    * ``garbled_status`` (N, consumable): the next N GET answers for a job are HTTP 200 with the job JSON cut
      in half (a proxy truncated it; ``Content-Length`` matches what is sent).
    * ``slow_drip`` (``"status"`` | ``"create"`` | ``"all"``): API responses on those routes (status line,
      headers and body) are written ``slow_drip_bytes`` at a time, ``slow_drip_interval`` seconds apart.
    * ``bad_location``: every signed download answers ``307`` with a malformed ``Location``: ``"ipv6"``
      (``http://[::1:PORT/...``, unclosed bracket), ``"control"`` (control characters in the host),
      ``"no_scheme"`` (``127.0.0.1:PORT/download/...``), ``"empty"`` (an empty header).
    * Archives (zip deliveries only): ``archive_bad_member`` (N, 1-based; members run events, sessions,
      clients per day; an N past the last member makes the job ``failed``) with ``archive_bad_member_kind``
      ``"crc"`` (stored bytes flipped, the CRC no longer matches) or ``"footer"`` (the parquet footer
      overwritten with 0xFF, CRC consistent); ``zip_bomb`` ``"ratio"`` (an extra deflated member of
      ``zip_bomb_bytes`` zeros, 1 MiB to 1.5 GiB, default 1 GiB, sizes honest) or ``"lie"`` (same, but both headers declare 1024 bytes);
      ``bad_zip`` ``"garbage_directory"`` (the central directory overwritten, end record kept) or
      ``"truncated"`` (the archive ends before its central directory).

    At most one of the knobs that replace the delivered bytes (``truncated_parquet``, ``empty_file``,
    ``archive_bad_member``, ``zip_bomb``, ``bad_zip``) may be set at a time.

    The lake's own signals, for ``signals_tenant`` (None: every tenant). A day without them has exactly the rows
    it would have without the knobs, and a file holding only such days (a zip member, a parquet delivery whose
    range they miss) is byte-identical to the one served without them:

    * ``schema_change_from`` (YYYY-MM-DD) with ``schema_change``: from that day on the events table changes,
      ``"type"`` - ``int1`` becomes a string column (breaking), ``"add"`` - a string column ``str6`` is
      appended (additive). A parquet delivery whose range reaches that day has the changed schema throughout.
      ``schema_change_until`` (YYYY-MM-DD, inclusive) ends it: a source that broke for a while and was put back.
    * ``empty_day`` (dates): those days have 0 rows.
    * ``volume_fraction`` ({date: fraction}, also ``"YYYY-MM-DD:0.05"`` strings): that day has
      ``round(rows_per_day * fraction)`` events.

    The data and delivery knobs are fixed when a job is created, like its timing.
    """

    # --- auth and validation
    token: str = "sim-token"
    expired_tokens: list[str] = field(default_factory=list)
    #: Tenants with tokens of their own ({tenantId: token}), as a Grid token is made inside one tenant: a listed
    #: tenant's jobs are created and read only with its token (another valid token gets 403 on create and 404 on
    #: reading its jobs), and its token acts for no other tenant. ``token`` acts for every tenant not listed.
    tenant_tokens: dict[str, str] = field(default_factory=dict)
    strict_tenant_ids: bool = False
    create_status: int = 200
    # --- job lifecycle (simulated seconds; see time_scale)
    queue_seconds: float = 1.0
    processing_seconds: float | None = 2.0
    final_status: str = "done"
    time_scale: float = 1.0
    url_ttl_seconds: float = 3600.0
    job_expiry_seconds: float = 7 * 86400.0
    # --- data
    delivery: str = "parquet"
    rows_per_day: int = 2000
    target_bytes: int | None = None
    timestamp_format: str = "timestamp"
    filename_override: str | None = None
    file_size_delta: int = 0
    # --- faults
    fail_next: list[dict[str, Any]] = field(default_factory=list)
    drop_after_bytes: int | None = None
    drop_count: int = 1
    expire_next_downloads: int = 0
    ignore_range: bool = False
    bandwidth_bytes_per_sec: int | None = None
    # --- adversarial API and delivery (issue 8)
    identity_change: str | None = None
    identity_change_after: int = 1
    truncated_parquet: int | None = None
    foreign_tenant: str | None = None
    foreign_dates: int | None = None
    empty_file: str | None = None
    garbled_status: int = 0
    slow_drip: str | None = None
    slow_drip_bytes: int = 8
    slow_drip_interval: float = 0.5
    bad_location: str | None = None
    archive_bad_member: int | None = None
    archive_bad_member_kind: str = "crc"
    zip_bomb: str | None = None
    zip_bomb_bytes: int = 1 << 30
    bad_zip: str | None = None
    # --- the lake's own signals (issue 12)
    signals_tenant: str | None = None
    schema_change_from: str | None = None
    schema_change: str = "type"
    schema_change_until: str | None = None
    empty_day: list[str] = field(default_factory=list)
    volume_fraction: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_config(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy, used by ``GET /_sim/config`` and the CLI banner."""
        return dataclasses.asdict(self)


KNOB_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SimulatorConfig))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_fault(spec: object) -> dict[str, Any]:
    """Check one fail_next spec and return a normalised copy (count filled in, methods upper-cased).

    Validation happens when the spec is set, not when it fires, so a bad spec fails the test that wrote it
    instead of surfacing as a confusing response later.
    """
    if not isinstance(spec, dict):
        raise ValueError(f"fail_next entries must be objects, got {spec!r}")
    unknown = set(spec) - FAULT_KEYS
    if unknown:
        raise ValueError(f"unknown fail_next keys {sorted(unknown)}; allowed: {sorted(FAULT_KEYS)}")
    out: dict[str, Any] = dict(spec)
    count = out.setdefault("count", 1)
    if not _is_int(count) or count < 1:
        raise ValueError(f"fail_next count must be an int >= 1, got {count!r}")
    status = out.get("status")
    if status is not None and (not _is_int(status) or not 100 <= status <= 599):
        raise ValueError(f"fail_next status must be an HTTP status code, got {status!r}")
    delay = out.get("delay")
    if delay is not None and (not _is_number(delay) or delay < 0):
        raise ValueError(f"fail_next delay must be a number of seconds >= 0, got {delay!r}")
    retry_after = out.get("retry_after")
    if retry_after is not None and not (_is_number(retry_after) or isinstance(retry_after, str)):
        raise ValueError(f"fail_next retry_after must be seconds or an HTTP-date string, got {retry_after!r}")
    methods = out.get("methods")
    if methods is not None:
        if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
            raise ValueError(f"fail_next methods must be a list of strings, got {methods!r}")
        out["methods"] = [m.upper() for m in methods]
    body = out.get("body")
    if body is not None and not isinstance(body, str):
        raise ValueError("fail_next body must be a string (sent verbatim)")
    headers = out.get("headers")
    if headers is not None:
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ValueError("fail_next headers must map strings to strings")
        if _HOP_BY_HOP & {k.lower() for k in headers}:
            raise ValueError("fail_next headers may not set Content-Length/Transfer-Encoding/Connection")
    for flag in ("after_create", "close"):
        if flag in out and not isinstance(out[flag], bool):
            raise ValueError(f"fail_next {flag} must be a bool")
    if status is None and not out.get("close") and delay is None:
        raise ValueError("a fail_next spec needs at least one of status, delay or close")
    if out.get("after_create") and status is None and not out.get("close"):
        out["status"] = 500
    return out


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def validate_config(cfg: SimulatorConfig) -> None:
    """Reject impossible values early (ValueError) and normalise fail_next in place."""
    _check(isinstance(cfg.token, str) and bool(cfg.token), "token must be a non-empty string")
    _check(
        isinstance(cfg.expired_tokens, list) and all(isinstance(t, str) for t in cfg.expired_tokens),
        "expired_tokens must be a list of strings",
    )
    _check(
        isinstance(cfg.tenant_tokens, dict)
        and all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in cfg.tenant_tokens.items()),
        "tenant_tokens must map tenant ids to non-empty tokens",
    )
    _check(cfg.create_status in (200, 201), "create_status must be 200 or 201")
    _check(_is_number(cfg.queue_seconds) and cfg.queue_seconds >= 0, "queue_seconds must be >= 0")
    _check(
        cfg.processing_seconds is None or (_is_number(cfg.processing_seconds) and cfg.processing_seconds >= 0),
        "processing_seconds must be >= 0 or None (never finishes)",
    )
    _check(isinstance(cfg.final_status, str) and bool(cfg.final_status), "final_status must be a string")
    _check(_is_number(cfg.time_scale) and cfg.time_scale > 0, "time_scale must be > 0")
    _check(_is_number(cfg.url_ttl_seconds) and cfg.url_ttl_seconds > 0, "url_ttl_seconds must be > 0")
    _check(_is_number(cfg.job_expiry_seconds) and cfg.job_expiry_seconds > 0, "job_expiry_seconds must be > 0")
    _check(cfg.delivery in DELIVERIES, f"delivery must be one of {DELIVERIES}")
    _check(_is_int(cfg.rows_per_day) and cfg.rows_per_day >= 1, "rows_per_day must be an int >= 1")
    _check(
        cfg.target_bytes is None or (_is_int(cfg.target_bytes) and cfg.target_bytes >= 0),
        "target_bytes must be an int >= 0 or None",
    )
    _check(cfg.timestamp_format in TIMESTAMP_FORMATS, f"timestamp_format must be one of {TIMESTAMP_FORMATS}")
    _check(
        cfg.filename_override is None
        or (
            isinstance(cfg.filename_override, str)
            and re.fullmatch(r"[^/\\\x00-\x1f]{1,200}", cfg.filename_override) is not None
        ),
        "filename_override must be a plain file name (no slashes, no control characters)",
    )
    _check(_is_int(cfg.file_size_delta), "file_size_delta must be an int")
    _check(isinstance(cfg.fail_next, list), "fail_next must be a list of fault specs")
    cfg.fail_next = [validate_fault(spec) for spec in cfg.fail_next]
    _check(
        cfg.drop_after_bytes is None or (_is_int(cfg.drop_after_bytes) and cfg.drop_after_bytes >= 0),
        "drop_after_bytes must be an int >= 0 or None",
    )
    _check(_is_int(cfg.drop_count) and cfg.drop_count >= 0, "drop_count must be an int >= 0")
    _check(
        _is_int(cfg.expire_next_downloads) and cfg.expire_next_downloads >= 0,
        "expire_next_downloads must be an int >= 0",
    )
    _check(isinstance(cfg.ignore_range, bool), "ignore_range must be a bool")
    _check(isinstance(cfg.strict_tenant_ids, bool), "strict_tenant_ids must be a bool")
    _check(
        cfg.bandwidth_bytes_per_sec is None
        or (_is_int(cfg.bandwidth_bytes_per_sec) and cfg.bandwidth_bytes_per_sec > 0),
        "bandwidth_bytes_per_sec must be an int > 0 or None",
    )
    _validate_adversarial(cfg)
    _validate_signals(cfg)


def _one_of(value: object, choices: tuple[str, ...], name: str) -> None:
    _check(value is None or value in choices, f"{name} must be one of {choices} or None, got {value!r}")


def _optional_int(value: object, minimum: int, name: str) -> None:
    _check(
        value is None or (isinstance(value, int) and _is_int(value) and value >= minimum),
        f"{name} must be an int >= {minimum} or None",
    )


def _validate_adversarial(cfg: SimulatorConfig) -> None:
    _one_of(cfg.identity_change, IDENTITY_CHANGES, "identity_change")
    _check(_is_int(cfg.identity_change_after) and cfg.identity_change_after >= 0, "identity_change_after must be >= 0")
    _optional_int(cfg.truncated_parquet, 1, "truncated_parquet")
    _check(
        cfg.foreign_tenant is None or (isinstance(cfg.foreign_tenant, str) and bool(cfg.foreign_tenant)),
        "foreign_tenant must be a tenant id or None",
    )
    _check(
        cfg.foreign_dates is None or (_is_int(cfg.foreign_dates) and cfg.foreign_dates != 0),
        "foreign_dates must be a non-zero number of days or None",
    )
    _one_of(cfg.empty_file, EMPTY_FILES, "empty_file")
    _check(_is_int(cfg.garbled_status) and cfg.garbled_status >= 0, "garbled_status must be an int >= 0")
    _one_of(cfg.slow_drip, SLOW_DRIP_ROUTES, "slow_drip")
    _check(_is_int(cfg.slow_drip_bytes) and cfg.slow_drip_bytes >= 1, "slow_drip_bytes must be an int >= 1")
    _check(
        _is_number(cfg.slow_drip_interval) and cfg.slow_drip_interval >= 0, "slow_drip_interval must be >= 0 seconds"
    )
    _one_of(cfg.bad_location, BAD_LOCATIONS, "bad_location")
    _optional_int(cfg.archive_bad_member, 1, "archive_bad_member")
    _check(
        cfg.archive_bad_member_kind in BAD_MEMBER_KINDS, f"archive_bad_member_kind must be one of {BAD_MEMBER_KINDS}"
    )
    _one_of(cfg.zip_bomb, ZIP_BOMBS, "zip_bomb")
    _check(
        _is_int(cfg.zip_bomb_bytes) and 1 << 20 <= cfg.zip_bomb_bytes <= 3 << 29,
        "zip_bomb_bytes must be an int from 1 MiB to 1.5 GiB (larger members would need zip64 headers)",
    )
    _one_of(cfg.bad_zip, BAD_ZIPS, "bad_zip")
    damage = [name for name in DAMAGE_KNOBS if getattr(cfg, name) is not None]
    _check(len(damage) <= 1, f"only one of {DAMAGE_KNOBS} may be set at a time, got {damage}")
    if cfg.delivery != "zip":
        archive = [name for name in ARCHIVE_KNOBS if getattr(cfg, name) is not None]
        _check(not archive, f"{archive} need delivery='zip'")
    else:
        _check(cfg.truncated_parquet is None, "truncated_parquet needs delivery='parquet'")


def _date(value: object, name: str) -> str:
    _check(
        isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) is not None,
        f"{name} must be a YYYY-MM-DD date, got {value!r}",
    )
    try:
        dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{name} must be a YYYY-MM-DD date, got {value!r}") from None
    return str(value)


def _fraction_pairs(items: list[object]) -> dict[object, object]:
    pairs: dict[object, object] = {}
    for item in items:
        _check(
            isinstance(item, str) and ":" in item, f"volume_fraction entries look like 2024-04-25:0.05, got {item!r}"
        )
        day, _, fraction = str(item).partition(":")
        try:
            pairs[day] = float(fraction)
        except ValueError:
            raise ValueError(f"volume_fraction {item!r}: {fraction!r} is not a number") from None
    return pairs


def _fractions(value: object) -> dict[str, float]:
    """volume_fraction as a dict, from a dict, one ``"YYYY-MM-DD:0.05"`` string or a list of them."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        value = _fraction_pairs(value)
    if not isinstance(value, dict):
        raise ValueError("volume_fraction must map dates to fractions")
    out: dict[str, float] = {}
    for day, fraction in value.items():
        _check(
            isinstance(fraction, int | float) and _is_number(fraction) and 0 <= fraction <= 100,
            f"volume_fraction for {day} must be a number from 0 to 100",
        )
        out[_date(day, "volume_fraction")] = float(fraction)
    return out


def _validate_signals(cfg: SimulatorConfig) -> None:
    _check(
        cfg.signals_tenant is None or (isinstance(cfg.signals_tenant, str) and bool(cfg.signals_tenant)),
        "signals_tenant must be a tenant id or None",
    )
    if cfg.schema_change_from is not None:
        _date(cfg.schema_change_from, "schema_change_from")
    if cfg.schema_change_until is not None:
        _date(cfg.schema_change_until, "schema_change_until")
        _check(
            cfg.schema_change_from is not None and cfg.schema_change_from <= cfg.schema_change_until,
            "schema_change_until needs a schema_change_from on or before it",
        )
    _check(cfg.schema_change in SCHEMA_CHANGES, f"schema_change must be one of {SCHEMA_CHANGES}")
    days = [cfg.empty_day] if isinstance(cfg.empty_day, str) else cfg.empty_day
    _check(isinstance(days, list), "empty_day must be a date or a list of dates")
    cfg.empty_day = sorted({_date(day, "empty_day") for day in days})
    cfg.volume_fraction = _fractions(cfg.volume_fraction)


@dataclass
class SimulatorStats:
    """A snapshot of the counters (admin endpoints excluded, so polling stats does not change them)."""

    requests: int = 0
    by_route: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    jobs_created: int = 0
    jobs_created_by_key: dict[str, int] = field(default_factory=dict)
    download_ranges: list[str | None] = field(default_factory=list)
    download_bytes_sent: int = 0
    connections_dropped: int = 0
    max_live_jobs: int = 0
    live_jobs: int = 0
    faults_served: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy for ``GET /_sim/stats``."""
        return dataclasses.asdict(self)
