"""Knobs and counters of the simulator, kept apart from the server so the CLI and tests share one definition.

Every knob is a field of :class:`SimulatorConfig`; the same names are accepted by ``Simulator.configure``,
``POST /_sim/config`` and (with dashes) the CLI flags, so there is one vocabulary for faults everywhere.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

DELIVERIES = ("parquet", "zip")
TIMESTAMP_FORMATS = ("timestamp", "string")

# Keys a fail_next spec may carry; anything else is a typo that would silently do nothing, so it is refused.
FAULT_KEYS = frozenset(
    {"status", "count", "retry_after", "methods", "after_create", "body", "content_type", "headers", "delay", "close"}
)

_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection"})


@dataclass
class SimulatorConfig:
    """All behaviour knobs. Defaults model a healthy, quick API serving small files.

    Consumable knobs (``fail_next``, ``drop_count``, ``expire_next_downloads``) are decremented as the
    simulator serves them, so reading the config back shows what is still armed.
    """

    # --- auth and validation
    token: str = "sim-token"
    expired_tokens: list[str] = field(default_factory=list)
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
