"""The parquet content prover: a landing holds a whole parquet file of the requested tenant and days.

A checksum proves the bytes arrived as served; a buggy gateway or a mis-routed job serves the wrong bytes
with a perfect checksum. So before a file is published its footer is decoded (:mod:`.parquet_footer`) and
its column statistics are held against the job's pinned identity:

* ``footer``: the footer decodes completely and fits the file (a truncated file fails here);
* ``rowGroups``: the row groups add up to the row count and every column chunk lies inside the file;
* ``tenant``: the tenant column's min and max are both the requested tenant;
* ``eventTime``: the event-time column's min and max lie in ``[date_from - tolerance, date_to + 1 day +
  tolerance)`` (UTC); the tolerance absorbs files partitioned by a local day.

A mismatch is an :class:`~omborigrid_export.errors.IntegrityError` naming what the file holds. A file without
the column, or without usable statistics on it (not written, or only bounds of truncated values), is no
evidence either way: that check is recorded as ``not verified``, which :attr:`ProofPolicy.strict` turns into
a failure. A file of 0 rows holds nothing that could be wrong: it is valid, its tenant and event-time checks
are ``not verified``, and strictness does not fail it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from .errors import IntegrityError, InvalidInput
from .models import JobIdentity, iso_utc
from .parquet_footer import TRAILER_LENGTH, FileMetaData, LeafColumn, PhysicalType, decode_footer, footer_length
from .parquet_values import Bounds, column_bounds, epoch_nanos, nanos_to_datetime
from .proof import CheckResult, Proof

#: The footer cap, from bench/footer.py's figures: a proof holds the footer plus about 4x its size decoded
#: (10,000 row groups of the 26-column events schema: a 25.0 MiB footer, 103 MiB RSS growth), and a hostile
#: footer of minimal column chunks about 10x. At 32 MiB that is ~170 MiB for a real file and ~350 MiB at
#: worst, beside the transfer's part buffers in the 1024 MB download function, and ~10-30 s of one core.
#: It admits ~12,800 row groups of the events schema, 250 times a day of 50,000-row groups of 10 million
#: events; a larger footer is a setting, not a code change.
DEFAULT_MAX_FOOTER_BYTES = 32 * 1024 * 1024

CHECK_FOOTER = "footer"
CHECK_ROW_GROUPS = "rowGroups"
CHECK_TENANT = "tenant"
CHECK_EVENT_TIME = "eventTime"

_NANOS_PER_MICRO = 1000
_NANOS_PER_DAY = 86_400 * 10**9
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_SHOWN = 64  # characters of a statistic value quoted in a message


@dataclass(frozen=True, slots=True)
class ProofPolicy:
    """What a proof checks and how strictly (column names from docs/omborigrid-data.md)."""

    tenant_column: str = "tenantId"
    #: The first of these the file has is its event time (events, sessions, clients).
    event_time_columns: tuple[str, ...] = ("eventTime", "sessionCreated", "clientCreated")
    #: How far outside the requested days (UTC) event times may lie, each side.
    tolerance: timedelta = field(default=timedelta(days=1))
    #: Absent evidence (no column, no statistics) fails the proof instead of being recorded.
    strict: bool = False
    max_footer_bytes: int = DEFAULT_MAX_FOOTER_BYTES

    def __post_init__(self) -> None:
        if not self.tenant_column or not self.event_time_columns or not all(self.event_time_columns):
            raise InvalidInput("The proof policy needs a tenant column name and at least one event-time column name.")
        if self.tolerance < timedelta(0):
            raise InvalidInput(f"The proof tolerance must not be negative (got {self.tolerance}).")
        if not 0 < self.max_footer_bytes < 2**32:
            raise InvalidInput(
                f"The parquet footer cap must be between 1 byte and 4 GiB (got {self.max_footer_bytes})."
            )


@dataclass(frozen=True, slots=True)
class _Outcome:
    result: CheckResult
    #: Why a check is not verified (for the strict policy's message).
    reason: str = ""


class ParquetProver:
    """Proves a parquet file's content against a job's identity (:class:`~omborigrid_export.proof.ContentProver`)."""

    def __init__(self, identity: JobIdentity, policy: ProofPolicy | None = None) -> None:
        self._identity = identity
        self._policy = policy or ProofPolicy()

    @property
    def max_tail_bytes(self) -> int:
        """The footer cap and the 8-byte trailer (length and magic) after it."""
        return self._policy.max_footer_bytes + TRAILER_LENGTH

    def tail_length(self, size: int, last8: bytes) -> int:
        return footer_length(size, last8, max_footer_bytes=self._policy.max_footer_bytes) + TRAILER_LENGTH

    def prove(self, tail: bytes, size: int) -> Proof:
        metadata = decode_footer(tail, size, max_footer_bytes=self._policy.max_footer_bytes)
        tenant_ids, tenant = self._tenant(metadata)
        time_range, event_time = self._event_time(metadata)
        checks = {CHECK_FOOTER: _Outcome(CheckResult.PASSED), CHECK_ROW_GROUPS: _Outcome(CheckResult.PASSED)}
        checks |= {CHECK_TENANT: tenant, CHECK_EVENT_TIME: event_time}
        if self._policy.strict and metadata.num_rows > 0:
            self._refuse_unverified(checks)
        return Proof(
            rows=metadata.num_rows,
            row_groups=len(metadata.row_groups),
            schema_fingerprint=metadata.schema_fingerprint,
            columns=metadata.columns,
            created_by=metadata.created_by,
            event_time_min=time_range[0],
            event_time_max=time_range[1],
            tenant_ids=tenant_ids,
            checks={name: outcome.result for name, outcome in checks.items()},
        )

    def _refuse_unverified(self, checks: dict[str, _Outcome]) -> None:
        reasons = [f"{name}: {o.reason}" for name, o in checks.items() if o.result is CheckResult.NOT_VERIFIED]
        if reasons:
            raise IntegrityError(
                f"The file for {self._identity.label} cannot be proven under the strict policy "
                f"({'; '.join(reasons)}); nothing is landed."
            )

    # -- tenant -------------------------------------------------------------------------------------------------
    def _tenant(self, metadata: FileMetaData) -> tuple[tuple[str, ...], _Outcome]:
        column = self._policy.tenant_column
        evidence = _evidence(metadata, (column,))
        if isinstance(evidence, _Outcome):
            return (), evidence
        leaf, bounds = evidence
        if leaf.physical_type not in (PhysicalType.BYTE_ARRAY, PhysicalType.FIXED_LEN_BYTE_ARRAY):
            return (), _not_verified(f"its {column} column is {leaf.physical_type.name}, not a string")
        wanted = self._identity.request.tenant_id
        low, high = _text(bounds.min_raw), _text(bounds.max_raw)
        shown = tuple(dict.fromkeys((low, high)))
        inside = bounds.min_raw <= wanted.encode() <= bounds.max_raw
        if inside and bounds.min_raw == bounds.max_raw and bounds.exact:
            return shown, _Outcome(CheckResult.PASSED)
        if inside and not bounds.exact:
            return shown, _not_verified(f"the {column} statistics are only bounds ({low!r} to {high!r})")
        holds = f"tenant {low!r}" if low == high else f"tenants {low!r} to {high!r}"
        raise IntegrityError(
            f"The file for {self._identity.label} holds data of {holds} (its {column} statistics), "
            f"not only of tenant {wanted}; nothing is landed."
        )

    # -- event time ---------------------------------------------------------------------------------------------
    def _event_time(self, metadata: FileMetaData) -> tuple[tuple[datetime | None, datetime | None], _Outcome]:
        unknown: tuple[datetime | None, datetime | None] = (None, None)
        names = {leaf.path for leaf in metadata.leaves}
        column = next((c for c in self._policy.event_time_columns if (c,) in names), None)
        if column is None:
            return unknown, _not_verified(
                f"the file has none of the columns {', '.join(self._policy.event_time_columns)}"
            )
        evidence = _evidence(metadata, (column,))
        if isinstance(evidence, _Outcome):
            return unknown, evidence
        leaf, bounds = evidence
        low, high = epoch_nanos(leaf, bounds.min_raw), epoch_nanos(leaf, bounds.max_raw)
        if low is None or high is None:
            return unknown, _not_verified(f"its {column} column ({leaf.column().logical_type}) does not hold times")
        start, end = self._window()
        moments = (nanos_to_datetime(low), nanos_to_datetime(high))
        if start <= low and high < end:
            return moments, _Outcome(CheckResult.PASSED)
        if not bounds.exact:
            return moments, _not_verified(f"the {column} statistics are only bounds")
        request = self._identity.request
        raise IntegrityError(
            f"The file for {self._identity.label} holds {column} values from {_moment(low)} to {_moment(high)}, "
            f"outside the requested days {request.date_from.isoformat()}..{request.date_to.isoformat()} "
            f"(UTC, give or take {_duration(self._policy.tolerance)}); nothing is landed."
        )

    def _window(self) -> tuple[int, int]:
        """[start, end) of allowed event times in nanoseconds since the epoch (integers: no calendar overflow)."""
        request = self._identity.request
        tolerance = self._policy.tolerance // timedelta(microseconds=1) * _NANOS_PER_MICRO
        return _day_nanos(request.date_from) - tolerance, _day_nanos(request.date_to) + _NANOS_PER_DAY + tolerance


def _evidence(metadata: FileMetaData, path: tuple[str, ...]) -> tuple[LeafColumn, Bounds] | _Outcome:
    index = next((i for i, leaf in enumerate(metadata.leaves) if leaf.path == path), None)
    name = ".".join(path)
    if index is None:
        return _not_verified(f"the file has no {name} column")
    bounds = column_bounds(metadata, index)
    if bounds is None:
        empty = metadata.num_rows == 0
        return _not_verified("the file has no rows" if empty else f"its {name} column has no usable statistics")
    return metadata.leaves[index], bounds


def _not_verified(reason: str) -> _Outcome:
    return _Outcome(CheckResult.NOT_VERIFIED, reason)


def _day_nanos(day: date) -> int:
    return (day.toordinal() - _EPOCH_ORDINAL) * _NANOS_PER_DAY


def _moment(nanos: int) -> str:
    return iso_utc(nanos_to_datetime(nanos)) or f"{nanos} ns from 1970-01-01 (outside the calendar)"


def _duration(span: timedelta) -> str:
    for unit, name in ((timedelta(days=1), "day"), (timedelta(hours=1), "hour"), (timedelta(minutes=1), "minute")):
        if span and not span % unit:
            count = span // unit
            return f"{count} {name}{'s' if count != 1 else ''}"
    return f"{span.total_seconds():g} seconds"


def _text(raw: bytes) -> str:
    return raw[:_SHOWN].decode("utf-8", errors="replace")
