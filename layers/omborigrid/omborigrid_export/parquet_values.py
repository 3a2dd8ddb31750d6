"""Column statistics of a parquet footer as values: what a column's min and max say, and over the whole file.

Statistics hold PLAIN-encoded bytes (little-endian numbers, strings without a length prefix); only the
schema says what they mean. :func:`decode_value` turns them into Python values for the types a proof and
its tests need; :func:`epoch_nanos` reads an event time of any of the shapes it is stored in (TIMESTAMP in
millis/micros/nanos, legacy INT96, DATE, ISO 8601 strings) as integer nanoseconds since the epoch, so a
time outside Python's datetime range is still compared rather than crashing. :func:`column_bounds` folds
the row groups' statistics into the file's range of one column, or says there is no evidence.
"""

from __future__ import annotations

import enum
import re
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from .errors import IntegrityError
from .parquet_footer import FileMetaData, LeafColumn, PhysicalType

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DATE = date(1970, 1, 1)
_JULIAN_EPOCH_DAY = 2_440_588  # the Julian day number of 1970-01-01, INT96's day origin
_NANOS_PER_DAY = 86_400 * 10**9
_UNIT_NANOS = {"MILLIS": 10**6, "MICROS": 10**3, "NANOS": 1}
_FIXED = {
    PhysicalType.BOOLEAN: struct.Struct("<?"),
    PhysicalType.INT32: struct.Struct("<i"),
    PhysicalType.INT64: struct.Struct("<q"),
    PhysicalType.FLOAT: struct.Struct("<f"),
    PhysicalType.DOUBLE: struct.Struct("<d"),
}
_UNSIGNED = {PhysicalType.INT32: struct.Struct("<I"), PhysicalType.INT64: struct.Struct("<Q")}
_INT96 = struct.Struct("<qi")
_FLOAT16 = struct.Struct("<e")
#: ISO 8601 as analytics exports write it: date, time, any fraction, ``Z`` or an offset (or none: UTC).
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9})\d*)?(Z|[+-]\d{2}:?\d{2})?", re.ASCII
)

Value = bool | int | float | str | bytes | Decimal | date | datetime | time | uuid.UUID


def decode_value(leaf: LeafColumn, raw: bytes) -> Value:
    """The Python value of one PLAIN-encoded statistic of ``leaf``."""
    physical, logical = leaf.physical_type, leaf.logical_type
    name = logical.name if logical else None
    if physical in _FIXED:
        layout = _UNSIGNED[physical] if name == "INTEGER" and logical and not logical.signed else _FIXED[physical]
        number: bool | int | float = _unpack(leaf, layout, raw)
        if name in ("DATE", "TIME", "TIMESTAMP", "DECIMAL") and isinstance(number, int):
            return _logical_number(leaf, number)
        return number
    if physical is PhysicalType.INT96:
        return _from_nanos(leaf, epoch_nanos(leaf, raw))
    if physical is PhysicalType.FIXED_LEN_BYTE_ARRAY and leaf.type_length != len(raw):
        raise _wrong_size(leaf, raw, leaf.type_length)
    return _bytes_value(leaf, raw, name)


def _bytes_value(leaf: LeafColumn, raw: bytes, name: str | None) -> Value:
    if name in ("STRING", "ENUM", "JSON"):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise IntegrityError(f"A statistic of parquet column {leaf.dotted_path!r} is not valid UTF-8.") from None
    if name == "DECIMAL":
        return _logical_number(leaf, int.from_bytes(raw, "big", signed=True))
    if name == "UUID" and len(raw) == 16:
        return uuid.UUID(bytes=raw)
    if name == "FLOAT16" and len(raw) == 2:
        return float(_FLOAT16.unpack(raw)[0])
    return raw


def _logical_number(leaf: LeafColumn, number: int) -> Value:
    logical = leaf.logical_type
    if logical is None or logical.name == "TIMESTAMP":
        return _from_nanos(leaf, epoch_nanos(leaf, number.to_bytes(8, "little", signed=True)))
    if logical.name == "DATE":
        try:
            return _EPOCH_DATE + timedelta(days=number)
        except OverflowError:
            raise IntegrityError(
                f"A statistic of date column {leaf.dotted_path!r} is not a representable date."
            ) from None
    if logical.name == "TIME" and logical.unit:
        micros = number * _UNIT_NANOS[logical.unit] // 1000
        if not 0 <= micros < 86_400 * 10**6:
            raise IntegrityError(f"A statistic of time column {leaf.dotted_path!r} is not a time of day.")
        return (datetime.min + timedelta(microseconds=micros)).time()
    return Decimal(number).scaleb(-(logical.scale or 0))


def epoch_nanos(leaf: LeafColumn, raw: bytes) -> int | None:
    """An event-time statistic as nanoseconds since 1970-01-01 UTC; None when it is not a time.

    A TIMESTAMP not adjusted to UTC (and an ISO string without an offset) is read as UTC: the wall clock of
    an unknown zone is within a day of UTC, which the proof's tolerance covers.
    """
    logical = leaf.logical_type
    name = logical.name if logical else None
    if leaf.physical_type is PhysicalType.INT96:
        nanos_of_day, julian_day = _unpack_pair(leaf, raw)
        return (julian_day - _JULIAN_EPOCH_DAY) * _NANOS_PER_DAY + nanos_of_day
    if logical and name == "TIMESTAMP" and leaf.physical_type is PhysicalType.INT64 and logical.unit:
        return int(_unpack(leaf, _FIXED[PhysicalType.INT64], raw)) * _UNIT_NANOS[logical.unit]
    if name == "DATE" and leaf.physical_type is PhysicalType.INT32:
        return int(_unpack(leaf, _FIXED[PhysicalType.INT32], raw)) * _NANOS_PER_DAY
    if name == "STRING":
        return _iso_nanos(raw)
    return None


def _iso_nanos(raw: bytes) -> int | None:
    match = _ISO.fullmatch(raw.decode("ascii", errors="replace"))
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC)
    except ValueError:
        return None
    offset = 0
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    seconds = (moment - _EPOCH) // timedelta(seconds=1) - offset
    return seconds * 10**9 + int((fraction or "0").ljust(9, "0"))


def nanos_to_datetime(nanos: int) -> datetime | None:
    """A UTC datetime (microsecond precision, floored), or None outside the years 1..9999."""
    try:
        return _EPOCH + timedelta(microseconds=nanos // 1000)
    except OverflowError:
        return None


def _from_nanos(leaf: LeafColumn, nanos: int | None) -> datetime:
    moment = None if nanos is None else nanos_to_datetime(nanos)
    if moment is None:
        raise IntegrityError(f"A statistic of parquet column {leaf.dotted_path!r} is not a representable time.")
    logical = leaf.logical_type
    return moment if logical is None or logical.utc is not False else moment.replace(tzinfo=None)


def _unpack(leaf: LeafColumn, layout: struct.Struct, raw: bytes) -> bool | int | float:
    if len(raw) != layout.size:
        raise _wrong_size(leaf, raw, layout.size)
    value: bool | int | float = layout.unpack(raw)[0]
    return value


def _unpack_pair(leaf: LeafColumn, raw: bytes) -> tuple[int, int]:
    if len(raw) != _INT96.size:
        raise _wrong_size(leaf, raw, _INT96.size)
    nanos, day = _INT96.unpack(raw)
    return int(nanos), int(day)


def _wrong_size(leaf: LeafColumn, raw: bytes, expected: int | None) -> IntegrityError:
    return IntegrityError(
        f"A statistic of parquet column {leaf.dotted_path!r} ({leaf.physical_type.name}) holds {len(raw)} bytes "
        f"where {expected} belong."
    )


@dataclass(frozen=True, slots=True)
class Bounds:
    """A column's smallest and largest statistic over the file's row groups (raw PLAIN bytes)."""

    min_raw: bytes
    max_raw: bytes
    #: Whether both are values the column holds, not merely bounds (e.g. truncated strings). Writers that
    #: do not say (``is_*_value_exact`` absent) write actual values, which is what parquet-mr and pyarrow do.
    exact: bool


def sort_key(leaf: LeafColumn, raw: bytes) -> int | float | bytes:
    """What orders two statistics of ``leaf`` (parquet.thrift ``ColumnOrder`` TYPE_ORDER)."""
    logical = leaf.logical_type
    physical = leaf.physical_type
    if physical is PhysicalType.INT96:
        return epoch_nanos(leaf, raw) or 0
    if physical in _FIXED:
        unsigned = logical is not None and logical.name == "INTEGER" and not logical.signed
        return _unpack(leaf, _UNSIGNED[physical] if unsigned else _FIXED[physical], raw)
    if logical is not None and logical.name == "DECIMAL":
        return int.from_bytes(raw, "big", signed=True)
    return raw


def _signed_order_is_type_order(leaf: LeafColumn) -> bool:
    """Whether the deprecated min/max (signed order) order this column as its type does."""
    logical = leaf.logical_type
    if leaf.physical_type in (PhysicalType.BYTE_ARRAY, PhysicalType.FIXED_LEN_BYTE_ARRAY, PhysicalType.INT96):
        return False
    return logical is None or logical.name != "INTEGER" or bool(logical.signed)


class _NoBounds(enum.Enum):
    UNKNOWN = "no usable statistics"
    ONLY_NULLS = "only nulls"


def _chunk_bounds(metadata: FileMetaData, index: int, group: int) -> Bounds | _NoBounds:
    """One row group's bounds of column ``index``, or why it has none."""
    leaf = metadata.leaves[index]
    chunk = metadata.row_groups[group].columns[index]
    stats = chunk.statistics
    if stats is None:
        return _NoBounds.UNKNOWN
    orders = metadata.type_defined_order
    if stats.min_value is not None and stats.max_value is not None and (orders is None or orders[index]):
        exact = stats.is_min_value_exact is not False and stats.is_max_value_exact is not False
        return Bounds(stats.min_value, stats.max_value, exact)
    legacy_min, legacy_max = stats.legacy_min, stats.legacy_max
    if legacy_min is not None and legacy_max is not None:
        # Signed order is wrong for strings and unsigned numbers, except that min == max means one value.
        usable = legacy_min == legacy_max or _signed_order_is_type_order(leaf)
        return Bounds(legacy_min, legacy_max, exact=True) if usable else _NoBounds.UNKNOWN
    return _NoBounds.ONLY_NULLS if stats.null_count == chunk.num_values else _NoBounds.UNKNOWN


def column_bounds(metadata: FileMetaData, index: int) -> Bounds | None:
    """The file's bounds of leaf ``index`` from its row groups' statistics; None when they are not evidence.

    Row groups without rows, and chunks holding only nulls, say nothing about values and are passed over;
    any other chunk without usable statistics makes the whole file's range unknown.
    """
    leaf = metadata.leaves[index]
    found: Bounds | None = None
    for group_index, group in enumerate(metadata.row_groups):
        if group.num_rows == 0:
            continue
        bounds = _chunk_bounds(metadata, index, group_index)
        if bounds is _NoBounds.UNKNOWN:
            return None
        if bounds is _NoBounds.ONLY_NULLS:
            continue
        found = bounds if found is None else _union(leaf, found, bounds)
    return found


def _union(leaf: LeafColumn, a: Bounds, b: Bounds) -> Bounds:
    low = b.min_raw if _less(leaf, b.min_raw, a.min_raw) else a.min_raw
    high = b.max_raw if _less(leaf, a.max_raw, b.max_raw) else a.max_raw
    return Bounds(low, high, a.exact and b.exact)


def _less(leaf: LeafColumn, a: bytes, b: bytes) -> bool:
    # One leaf's keys are all of one type (bytes, int or float), so they compare.
    return bool(sort_key(leaf, a) < sort_key(leaf, b))  # type: ignore[operator]
