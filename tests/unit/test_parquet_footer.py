"""The stdlib footer decoder against pyarrow's own reading of files pyarrow wrote, and against hand-made footers.

The corpus is written in the test (every physical type; timestamps in ms/us/ns with and without a zone and as
INT96; decimals as fixed-length bytes and as integers; dates, times, strings, binaries, dictionaries, lists, structs, maps; all six codecs; many
row groups; statistics on, off and partial; 0 rows; data page v2; page indexes; sorting columns; the legacy
1.0 format). Every field both readers expose is compared and counted; the counts are printed
(``pytest -s``) and asserted. Hand-made footers (:class:`Thrift`) cover what pyarrow does not write: legacy
converted types only, unknown fields and types, and each malformation the decoder must name.
"""

from __future__ import annotations

import builtins
import datetime as dt
import decimal
import json
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from omborigrid_export.errors import IntegrityError
from omborigrid_export.parquet_footer import (
    FileMetaData,
    LeafColumn,
    LogicalType,
    PhysicalType,
    Repetition,
    decode_footer,
    footer_length,
    schema_fingerprint,
)
from omborigrid_export.parquet_values import Bounds, column_bounds, decode_value, epoch_nanos, nanos_to_datetime
from omborigrid_export.proof import Column

CAP = 64 * 1024 * 1024
CODECS = ("none", "snappy", "gzip", "zstd", "lz4", "brotli")
CODEC_NAMES = {0: "UNCOMPRESSED", 1: "SNAPPY", 2: "GZIP", 3: "LZO", 4: "BROTLI", 5: "LZ4", 6: "ZSTD", 7: "LZ4"}


# -- decoding a file ------------------------------------------------------------------------------------------
def tail_of(data: bytes) -> bytes:
    return data[-(footer_length(len(data), data[-8:], max_footer_bytes=CAP) + 8) :]


def decode_file(path: Path) -> FileMetaData:
    data = path.read_bytes()
    return decode_footer(tail_of(data), len(data), max_footer_bytes=CAP)


# -- the corpus -------------------------------------------------------------------------------------------------
def every_type_table(rows: int) -> pa.Table:
    """A table with every physical type and the logical types a pyarrow writer produces, nulls included."""
    base = dt.datetime(2024, 4, 12, 7, 55, 23, 372000)

    def cycle(values: list[Any]) -> list[Any]:
        return [values[i % len(values)] for i in range(rows)]

    return pa.table(
        {
            "bool": pa.array(cycle([True, False, None]), pa.bool_()),
            "i8": pa.array(cycle([-128, 0, 127, None]), pa.int8()),
            "i16": pa.array(cycle([-32768, 5, 32767]), pa.int16()),
            "i32": pa.array(cycle([-(2**31), 7, 2**31 - 1]), pa.int32()),
            "i64": pa.array(cycle([-(2**63), 9, 2**63 - 1]), pa.int64()),
            "u8": pa.array(cycle([0, 255]), pa.uint8()),
            "u32": pa.array(cycle([0, 2**32 - 1, None]), pa.uint32()),
            "u64": pa.array(cycle([0, 2**64 - 1]), pa.uint64()),
            "f32": pa.array(cycle([-1.5, 2.25, None]), pa.float32()),
            "f64": pa.array(cycle([-1e300, 3.5, float("nan")]), pa.float64()),
            "f16": pa.array(cycle([1.5, -2.5]), pa.float16()),
            "str": pa.array(cycle(["621e1fc633350f0007637a0c", "ä-ünïcödé", "", None]), pa.string()),
            "large_str": pa.array(cycle(["b", "a"]), pa.large_string()),
            "bin": pa.array(cycle([b"\x00\xff", b"\x7f", b""]), pa.binary()),
            "fixed": pa.array(cycle([b"abcd", b"\xff\xff\xff\xff"]), pa.binary(4)),
            "dict": pa.array(cycle(["x", "y", "z"])).dictionary_encode(),
            "dec32": pa.array(cycle([decimal.Decimal("1.23"), decimal.Decimal("-4.56")]), pa.decimal128(5, 2)),
            "dec128": pa.array(
                cycle([decimal.Decimal("12345678901234567890.12"), decimal.Decimal("-1")]), pa.decimal128(38, 2)
            ),
            "date": pa.array(cycle([dt.date(2024, 4, 12), dt.date(1969, 12, 31), None]), pa.date32()),
            "ts_ms": pa.array(cycle([base, base + dt.timedelta(hours=1)]), pa.timestamp("ms")),
            "ts_us_utc": pa.array(cycle([base, None, base - dt.timedelta(days=400)]), pa.timestamp("us", tz="UTC")),
            "ts_ns": pa.array(cycle([base, base + dt.timedelta(seconds=1)]), pa.timestamp("ns")),
            "ts_ms_zone": pa.array(
                cycle([base, base + dt.timedelta(days=1)]), pa.timestamp("ms", tz="Europe/Stockholm")
            ),
            "t32": pa.array(cycle([dt.time(1, 2, 3), dt.time(23, 59)]), pa.time32("ms")),
            "t64": pa.array(cycle([dt.time(1, 2, 3, 4), dt.time(0)]), pa.time64("us")),
            "list": pa.array(cycle([[1, 2], [], None, [3]]), pa.list_(pa.int64())),
            "nested": pa.array(cycle([[["a"]], [[], ["b", None]]]), pa.list_(pa.list_(pa.string()))),
            "struct": pa.array(cycle([{"x": 1, "y": "a"}, {"x": None, "y": "b"}, None])),
            "map": pa.array(cycle([[("k", 1)], [], None]), pa.map_(pa.string(), pa.int32())),
            "nulls": pa.array([None] * rows, pa.int32()),
        }
    )


def timestamp_table(rows: int) -> pa.Table:
    start = dt.datetime(2024, 4, 12, tzinfo=dt.UTC)
    moments = [start + dt.timedelta(seconds=37 * i) for i in range(rows)]
    columns: dict[str, pa.Array] = {}
    for unit in ("ms", "us", "ns"):
        columns[f"utc_{unit}"] = pa.array(moments, pa.timestamp(unit, tz="UTC"))
        columns[f"local_{unit}"] = pa.array([m.replace(tzinfo=None) for m in moments], pa.timestamp(unit))
        columns[f"zoned_{unit}"] = pa.array(moments, pa.timestamp(unit, tz="America/New_York"))
    return pa.table(columns)


def events_like(rows: int) -> pa.Table:
    """OmboriGrid's events shape (docs/omborigrid-data.md): camelCase, wide, sparse."""
    start = dt.datetime(2024, 4, 12, tzinfo=dt.UTC)
    return pa.table(
        {
            "id": [f"00000000-0000-4000-8000-{i:012d}" for i in range(rows)],
            "tenantId": ["621e1fc633350f0007637a0c"] * rows,
            "eventType": ["CONTENT_VIEW" if i % 3 else "APP_START" for i in range(rows)],
            "eventTime": pa.array([start + dt.timedelta(seconds=i) for i in range(rows)], pa.timestamp("us", tz="UTC")),
            "int1": pa.array([i if i % 2 else None for i in range(rows)], pa.int64()),
            "str1": pa.array([None] * rows, pa.string()),
        }
    )


Writer = Callable[[Path], None]


def corpus() -> Iterator[tuple[str, Writer]]:
    table = every_type_table(60)
    for codec in CODECS:
        yield f"types-{codec}", lambda p, c=codec: pq.write_table(table, p, compression=c)  # type: ignore[misc]
    yield "types-no-dictionary", lambda p: pq.write_table(table, p, use_dictionary=False)
    yield "types-no-statistics", lambda p: pq.write_table(table, p, write_statistics=False)
    yield "types-some-statistics", lambda p: pq.write_table(table, p, write_statistics=["i32", "str", "ts_ns"])
    yield "types-page-v2", lambda p: pq.write_table(table, p, data_page_version="2.0", compression="zstd")
    yield "types-page-index", lambda p: pq.write_table(table, p, write_page_index=True)
    yield "types-no-arrow-schema", lambda p: pq.write_table(table, p, store_schema=False)
    yield "types-decimal-as-integer", lambda p: pq.write_table(table, p, store_decimal_as_integer=True)
    yield "types-format-1.0", lambda p: pq.write_table(table.drop_columns(["u32", "u64"]), p, version="1.0")
    yield "types-empty", lambda p: pq.write_table(table.slice(0, 0), p)
    yield "types-many-groups", lambda p: pq.write_table(every_type_table(1000), p, row_group_size=9)
    ts = timestamp_table(300)
    yield "timestamps", lambda p: pq.write_table(ts, p, row_group_size=100)
    yield "timestamps-int96", lambda p: pq.write_table(ts, p, use_deprecated_int96_timestamps=True)
    yield (
        "timestamps-coerced-ms",
        lambda p: pq.write_table(ts, p, coerce_timestamps="ms", allow_truncated_timestamps=True),
    )
    events = events_like(2000)
    sorting = pq.SortingColumn.from_ordering(events.schema, [("eventTime", "ascending")])
    yield "events-sorted", lambda p: pq.write_table(events, p, row_group_size=300, sorting_columns=sorting)
    yield "events-metadata", lambda p: pq.write_table(events.replace_schema_metadata({"owner": "ä", "": "x"}), p)
    yield "events-empty", lambda p: pq.write_table(events.slice(0, 0), p)


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    directory = tmp_path_factory.mktemp("corpus")
    paths = []
    for name, write in corpus():
        path = directory / f"{name}.parquet"
        write(path)
        paths.append(path)
    return paths


# -- comparing ---------------------------------------------------------------------------------------------------
class Compared:
    """Counts every field compared, so the figures in the report are the ones this test checked."""

    def __init__(self) -> None:
        self.fields: Counter[str] = Counter()

    def same(self, kind: str, ours: object, theirs: object, where: str) -> None:
        assert ours == theirs, f"{where}: {kind} is {ours!r} here but {theirs!r} in pyarrow"
        self.fields[kind] += 1


def pyarrow_logical(column: Any) -> str | None:
    """pyarrow's logical type of a leaf in this decoder's canonical text (see LogicalType.__str__)."""
    info = json.loads(column.logical_type.to_json())
    kind = info["Type"]
    if kind == "None":
        return None
    units = {"milliseconds": "MILLIS", "microseconds": "MICROS", "nanoseconds": "NANOS"}
    if kind in ("Timestamp", "Time"):
        return f"{kind.upper()}({units[info['timeUnit']]},{'UTC' if info['isAdjustedToUTC'] else 'LOCAL'})"
    if kind == "Int":
        return f"INTEGER({info['bitWidth']},{'SIGNED' if info['isSigned'] else 'UNSIGNED'})"
    if kind == "Decimal":
        return f"DECIMAL({info['precision']},{info['scale']})"
    simple = {"String": "STRING", "Date": "DATE", "Float16": "FLOAT16", "Null": "UNKNOWN", "JSON": "JSON"}
    return simple[kind]


def physical_raw(leaf: LeafColumn, raw: bytes) -> object:
    """A statistic as pyarrow's ``min_raw`` gives it: the physical value, integers signed."""
    layouts = {"BOOLEAN": "<?", "INT32": "<i", "INT64": "<q", "FLOAT": "<f", "DOUBLE": "<d"}
    layout = layouts.get(leaf.physical_type.name)
    return raw if layout is None else struct.unpack(layout, raw)[0]


def pyarrow_value(leaf: LeafColumn, statistics: Any, side: str) -> object:
    try:
        value = getattr(statistics, side)
    except ValueError:  # nanosecond timestamps pyarrow cannot turn into datetime without pandas
        return None
    if leaf.column().logical_type == "FLOAT16":  # pyarrow gives the two bytes
        return struct.unpack("<e", value)[0]
    return value


def compare_file(path: Path, compared: Compared) -> None:
    ours = decode_file(path)
    theirs = pq.read_metadata(path)
    where = path.name
    compared.same("num_rows", ours.num_rows, theirs.num_rows, where)
    compared.same("row_groups", len(ours.row_groups), theirs.num_row_groups, where)
    compared.same("created_by", ours.created_by, theirs.created_by, where)
    compared.same("format_version", ours.version, 1 if theirs.format_version == "1.0" else 2, where)
    compared.same("columns", len(ours.leaves), theirs.num_columns, where)
    kv = {k.encode(): (v or "").encode() for k, v in ours.key_value_metadata}
    compared.same("key_value_metadata", kv, dict(theirs.metadata or {}), where)
    for index, leaf in enumerate(ours.leaves):
        compare_leaf(leaf, theirs.schema.column(index), compared, f"{where} column {index}")
    for group_index, group in enumerate(ours.row_groups):
        their_group = theirs.row_group(group_index)
        at = f"{where} row group {group_index}"
        compared.same("group.num_rows", group.num_rows, their_group.num_rows, at)
        compared.same("group.total_byte_size", group.total_byte_size, their_group.total_byte_size, at)
        for index, (leaf, chunk) in enumerate(zip(ours.leaves, group.columns, strict=True)):
            compare_chunk(leaf, chunk, their_group.column(index), compared, f"{at} column {leaf.dotted_path}")


def compare_leaf(leaf: LeafColumn, theirs: Any, compared: Compared, where: str) -> None:
    compared.same("path", leaf.dotted_path, theirs.path, where)
    compared.same("physical_type", leaf.physical_type.name, theirs.physical_type, where)
    compared.same("logical_type", leaf.column().logical_type, pyarrow_logical(theirs), where)
    compared.same("max_definition_level", leaf.max_definition_level, theirs.max_definition_level, where)
    compared.same("max_repetition_level", leaf.max_repetition_level, theirs.max_repetition_level, where)
    if leaf.physical_type is PhysicalType.FIXED_LEN_BYTE_ARRAY:
        compared.same("type_length", leaf.type_length, theirs.length, where)


def compare_chunk(leaf: LeafColumn, chunk: Any, theirs: Any, compared: Compared, where: str) -> None:
    compared.same("chunk.path", ".".join(chunk.path), theirs.path_in_schema, where)
    compared.same("chunk.codec", CODEC_NAMES[chunk.codec], theirs.compression, where)
    compared.same("chunk.num_values", chunk.num_values, theirs.num_values, where)
    compared.same("chunk.total_compressed_size", chunk.total_compressed_size, theirs.total_compressed_size, where)
    compared.same("chunk.total_uncompressed_size", chunk.total_uncompressed_size, theirs.total_uncompressed_size, where)
    compared.same("chunk.data_page_offset", chunk.data_page_offset, theirs.data_page_offset, where)
    compared.same("chunk.dictionary_page_offset", chunk.dictionary_page_offset, theirs.dictionary_page_offset, where)
    stats, their_stats = chunk.statistics, theirs.statistics
    compared.same("stats.present", stats is not None, theirs.is_stats_set, where)
    if stats is None:
        return
    compared.same(
        "stats.null_count", stats.null_count, their_stats.null_count if their_stats.has_null_count else None, where
    )
    compared.same("stats.distinct_count", stats.distinct_count, their_stats.distinct_count, where)
    has_min_max = stats.min_value is not None and stats.max_value is not None
    compared.same("stats.has_min_max", has_min_max, their_stats.has_min_max, where)
    if not has_min_max:
        return
    assert stats.min_value is not None
    assert stats.max_value is not None
    compared.same("stats.min_raw", physical_raw(leaf, stats.min_value), their_stats.min_raw, where)
    compared.same("stats.max_raw", physical_raw(leaf, stats.max_value), their_stats.max_raw, where)
    for side, raw in (("min", stats.min_value), ("max", stats.max_value)):
        expected = pyarrow_value(leaf, their_stats, side)
        if expected is not None and expected == expected:  # NaN has no equal
            compared.same(f"stats.{side}_value", decode_value(leaf, raw), expected, where)


def test_the_decoder_agrees_with_pyarrow_on_every_file_of_the_corpus(corpus_files: list[Path]) -> None:
    compared = Compared()
    for path in corpus_files:
        compare_file(path, compared)
    total = sum(compared.fields.values())
    print(f"\ncompared {total} fields in {len(corpus_files)} files: {dict(sorted(compared.fields.items()))}")
    assert len(corpus_files) == 22
    # Every kind of field was compared many times, the decoded statistic values included.
    assert min(compared.fields.values()) >= 20, compared.fields
    assert compared.fields["stats.min_value"] >= 1000
    assert total >= 50_000


def test_decoded_values_are_the_values_written(tmp_path: Path) -> None:
    # Given a file whose statistics pyarrow cannot turn into values itself (nanoseconds) or that need a type
    path = tmp_path / "values.parquet"
    moment = dt.datetime(2024, 4, 12, 7, 55, 23, 372001, tzinfo=dt.UTC)
    table = pa.table(
        {
            "ns": pa.array([moment, moment + dt.timedelta(days=1)], pa.timestamp("ns", tz="UTC")),
            "local": pa.array([moment.replace(tzinfo=None)] * 2, pa.timestamp("us")),
            "u64": pa.array([1, 2**64 - 1], pa.uint64()),
            "dec": pa.array([decimal.Decimal("-0.05"), decimal.Decimal("7.10")], pa.decimal128(4, 2)),
            "date": pa.array([dt.date(1, 1, 1), dt.date(9999, 12, 31)], pa.date32()),
        }
    )
    pq.write_table(table, path)
    metadata = decode_file(path)

    def bounds(name: str) -> tuple[object, object]:
        index = [leaf.dotted_path for leaf in metadata.leaves].index(name)
        found = column_bounds(metadata, index)
        assert isinstance(found, Bounds)
        assert found.exact
        leaf = metadata.leaves[index]
        return decode_value(leaf, found.min_raw), decode_value(leaf, found.max_raw)

    # Then each is read as the value written
    assert bounds("ns") == (moment, moment + dt.timedelta(days=1))
    assert bounds("local") == (moment.replace(tzinfo=None),) * 2
    assert bounds("u64") == (1, 2**64 - 1)
    assert bounds("dec") == (decimal.Decimal("-0.05"), decimal.Decimal("7.10"))
    assert bounds("date") == (dt.date(1, 1, 1), dt.date(9999, 12, 31))


def test_bounds_span_all_row_groups_and_pass_over_empty_and_all_null_ones(tmp_path: Path) -> None:
    path = tmp_path / "groups.parquet"
    table = pa.table({"s": pa.array(["m", "c", None, None, "x", "a"]), "i": pa.array([5, -3, 9, 1, None, 0])})
    pq.write_table(table, path, row_group_size=2)
    metadata = decode_file(path)
    strings, ints = column_bounds(metadata, 0), column_bounds(metadata, 1)
    assert strings == Bounds(b"a", b"x", exact=True)
    assert ints is not None
    assert (
        decode_value(metadata.leaves[1], ints.min_raw),
        decode_value(metadata.leaves[1], ints.max_raw),
    ) == (-3, 9)


def test_bounds_are_unknown_when_a_row_group_has_no_statistics(corpus_files: list[Path]) -> None:
    by_name = {path.stem: path for path in corpus_files}
    without = decode_file(by_name["types-no-statistics"])
    assert all(column_bounds(without, i) is None for i in range(len(without.leaves)))
    some = decode_file(by_name["types-some-statistics"])
    known = {leaf.dotted_path for i, leaf in enumerate(some.leaves) if column_bounds(some, i) is not None}
    assert known == {"i32", "str", "ts_ns"}


def test_an_empty_file_has_no_bounds(corpus_files: list[Path]) -> None:
    metadata = decode_file(next(p for p in corpus_files if p.stem == "events-empty"))
    assert metadata.num_rows == 0
    assert all(column_bounds(metadata, i) is None for i in range(len(metadata.leaves)))


def test_the_schema_fingerprint_is_the_sha256_of_the_documented_canonical_json(corpus_files: list[Path]) -> None:
    import hashlib

    metadata = decode_file(corpus_files[0])
    canonical = json.dumps(
        [
            {"logicalType": c.logical_type, "path": c.path, "physicalType": c.physical_type, "repetition": c.repetition}
            for c in metadata.columns
        ],
        separators=(",", ":"),
    )
    assert metadata.schema_fingerprint == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    # The same schema in another codec, with other rows, has the same fingerprint; another schema has not.
    fingerprints = {p.stem: decode_file(p).schema_fingerprint for p in corpus_files}
    assert fingerprints["types-none"] == fingerprints["types-zstd"] == fingerprints["types-many-groups"]
    assert fingerprints["types-none"] != fingerprints["events-sorted"]
    assert schema_fingerprint((Column("a", "INT64", None, "REQUIRED"),)) != schema_fingerprint(
        (Column("a", "INT64", None, "OPTIONAL"),)
    )


# -- hand-made footers ----------------------------------------------------------------------------------------------
class Thrift:
    """A minimal compact-protocol writer for footers pyarrow would never write (also used by the fuzz tests)."""

    TRUE, FALSE, BYTE, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT = range(1, 13)

    @staticmethod
    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            byte, value = value & 0x7F, value >> 7
            out.append(byte | (0x80 if value else 0))
            if not value:
                return bytes(out)

    @classmethod
    def int(cls, value: int) -> bytes:
        return cls.varint((value << 1) ^ (value >> 63))

    @classmethod
    def binary(cls, value: bytes | str) -> bytes:
        raw = value.encode() if isinstance(value, str) else value
        return cls.varint(len(raw)) + raw

    @classmethod
    def struct(cls, *fields: tuple[builtins.int, builtins.int, bytes]) -> bytes:
        """Fields as (id, wire type, encoded value); booleans as (id, TRUE or FALSE, b"")."""
        out, last = bytearray(), 0
        for field_id, wire, value in fields:
            delta = field_id - last
            out += bytes([delta << 4 | wire]) if 0 < delta <= 15 else bytes([wire]) + cls.int(field_id)
            out += value
            last = field_id
        return bytes(out + b"\x00")

    @classmethod
    def list(cls, wire: builtins.int, items: builtins.list[bytes]) -> bytes:
        header = bytes([len(items) << 4 | wire]) if len(items) < 15 else bytes([0xF0 | wire]) + cls.varint(len(items))
        return header + b"".join(items)


T = Thrift


def schema_element(
    name: str,
    *,
    type_: int | None = None,
    repetition: int | None = 0,
    children: int | None = None,
    converted: int | None = None,
    extra: tuple[tuple[int, int, bytes], ...] = (),
) -> bytes:
    fields: list[tuple[int, int, bytes]] = []
    if type_ is not None:
        fields.append((1, T.I32, T.int(type_)))
    if repetition is not None:
        fields.append((3, T.I32, T.int(repetition)))
    fields.append((4, T.BINARY, T.binary(name)))
    if children is not None:
        fields.append((5, T.I32, T.int(children)))
    if converted is not None:
        fields.append((6, T.I32, T.int(converted)))
    return T.struct(*sorted([*fields, *extra]))


def column_chunk(
    path: list[str], *, type_: int, offset: int, size: int, values: int, stats: bytes | None = None
) -> bytes:
    meta = [
        (1, T.I32, T.int(type_)),
        (2, T.LIST, T.list(T.I32, [T.int(0)])),
        (3, T.LIST, T.list(T.BINARY, [T.binary(p) for p in path])),
        (4, T.I32, T.int(0)),
        (5, T.I64, T.int(values)),
        (6, T.I64, T.int(size)),
        (7, T.I64, T.int(size)),
        (9, T.I64, T.int(offset)),
    ]
    if stats is not None:
        meta.append((12, T.STRUCT, stats))
    return T.struct((2, T.I64, T.int(0)), (3, T.STRUCT, T.struct(*meta)))


def file_metadata(
    schema: list[bytes],
    groups: list[tuple[int, list[bytes]]],
    *,
    extra: tuple[tuple[int, int, bytes], ...] = (),
    rows: int | None = None,
) -> bytes:
    rows = sum(n for n, _ in groups) if rows is None else rows
    row_groups = [
        T.struct((1, T.LIST, T.list(T.STRUCT, chunks)), (2, T.I64, T.int(100)), (3, T.I64, T.int(n)))
        for n, chunks in groups
    ]
    return T.struct(
        *sorted(
            [
                (1, T.I32, T.int(1)),
                (2, T.LIST, T.list(T.STRUCT, schema)),
                (3, T.I64, T.int(rows)),
                (4, T.LIST, T.list(T.STRUCT, row_groups)),
                (6, T.BINARY, T.binary("hand-made")),
                *extra,
            ]
        )
    )


def as_file(footer: bytes, data_bytes: int = 100) -> tuple[bytes, int]:
    """(tail, size) of a file of ``data_bytes`` bytes of column data ending in ``footer``."""
    tail = footer + struct.pack("<I", len(footer)) + b"PAR1"
    return tail, 4 + data_bytes + len(tail)


def legacy_file() -> bytes:
    """A footer of converted types only, with fields and a wire type this decoder has never heard of."""
    unknown = (
        (30, T.DOUBLE, b"\x00" * 8),
        (31, T.MAP, T.varint(1) + bytes([T.BINARY << 4 | T.LIST]) + T.binary("k") + T.list(T.TRUE, [b"\x01", b"\x02"])),
    )
    schema = [
        schema_element("root", repetition=None, children=3),
        schema_element("tenantId", type_=6, repetition=1, converted=0, extra=unknown),
        schema_element("eventTime", type_=2, repetition=1, converted=9),
        schema_element("price", type_=1, repetition=0, converted=5, extra=((7, T.I32, T.int(2)), (8, T.I32, T.int(9)))),
    ]
    stats = T.struct((1, T.BINARY, T.binary("b")), (2, T.BINARY, T.binary("a")), (3, T.I64, T.int(0)))
    chunks = [
        column_chunk(["tenantId"], type_=6, offset=4, size=30, values=2, stats=stats),
        column_chunk(["eventTime"], type_=2, offset=34, size=30, values=2),
        column_chunk(["price"], type_=1, offset=64, size=30, values=2),
    ]
    return file_metadata(schema, [(2, chunks)], extra=unknown)


def test_legacy_converted_types_read_as_their_logical_types_and_unknown_fields_are_skipped() -> None:
    tail, size = as_file(legacy_file())
    metadata = decode_footer(tail, size, max_footer_bytes=CAP)
    assert [c.logical_type for c in metadata.columns] == ["STRING", "TIMESTAMP(MILLIS,UTC)", "DECIMAL(9,2)"]
    assert [c.repetition for c in metadata.columns] == ["OPTIONAL", "OPTIONAL", "REQUIRED"]
    assert metadata.created_by == "hand-made"
    # Only legacy min/max, for a string column: "a" and "b" differ, and signed order says nothing about strings.
    assert column_bounds(metadata, 0) is None


def test_a_field_id_sent_in_full_reads_as_one_sent_as_a_delta() -> None:
    footer = legacy_file()
    assert footer[:1] == b"\x15"  # field 1 (delta 1), an I32
    tail, size = as_file(b"\x05" + T.int(1) + footer[1:])
    explicit = decode_footer(tail, size, max_footer_bytes=CAP)
    assert (explicit.version, explicit.columns) == (1, decode_footer(*as_file(footer), max_footer_bytes=CAP).columns)


def replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, old
    return data.replace(old, new)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f + b"\x00", "1 bytes follow the end"),
        (lambda f: f[:-1], "ends in the middle of a value"),
        (lambda f: replace_once(f, T.binary("hand-made"), b"\xff\xff\xff\xff\x0f"), "longer than the"),
        (lambda f: b"\x15" + b"\xff" * 11 + f[2:], "varint is longer"),
        (lambda f: b"\x15\xff\xff\xff\xff\x7f" + f[2:], "does not fit in 32 bits"),
        (lambda f: replace_once(f, T.binary("hand-made"), T.binary(b"\xff\xfe")), "not valid UTF-8"),
        (lambda f: b"\x1e" + f[2:], "wire type 14 is unknown"),
        (lambda f: b"\x16" + f[1:], "version is sent as I64"),
    ],
)
def test_each_malformation_is_an_integrity_error_naming_it(mutate: Callable[[bytes], bytes], message: str) -> None:
    tail, size = as_file(mutate(legacy_file()))
    with pytest.raises(IntegrityError, match=message):
        decode_footer(tail, size, max_footer_bytes=CAP)


def test_a_container_larger_than_the_footer_is_refused_before_anything_is_allocated() -> None:
    huge_list = bytes([0xF0 | T.STRUCT]) + T.varint(2**31)
    footer = T.struct((1, T.I32, T.int(1)))[:-1] + bytes([0x19]) + huge_list
    tail, size = as_file(footer)
    with pytest.raises(IntegrityError, match=r"declares 2147483648 elements"):
        decode_footer(tail, size, max_footer_bytes=CAP)


def test_nesting_deeper_than_the_bound_is_refused() -> None:
    # An unknown field 20 holding a struct whose field 1 is a struct whose field 1 is ...
    deep = bytes([T.STRUCT]) + T.int(20) + bytes([0x1C]) * 10_000
    tail, size = as_file(deep)
    with pytest.raises(IntegrityError, match="nested deeper than 32 levels"):
        decode_footer(tail, size, max_footer_bytes=CAP)


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([(3, "ok")], "claims 3 rows but its 1 row groups hold 2"),
        ([(2, "beyond")], r"claims bytes 4\.\.1004 .* outside the file's data"),
        ([(2, "before-magic")], r"claims bytes 0\.\.30"),
        ([(2, "wrong-path")], "describes 'other'"),
    ],
)
def test_row_groups_must_add_up_and_chunks_lie_inside_the_file(groups: list[tuple[int, str]], message: str) -> None:
    schema = [schema_element("root", repetition=None, children=1), schema_element("a", type_=2, repetition=0)]
    declared_rows, kind = groups[0]
    chunk = {
        "ok": column_chunk(["a"], type_=2, offset=4, size=30, values=2),
        "beyond": column_chunk(["a"], type_=2, offset=4, size=1000, values=2),
        "before-magic": column_chunk(["a"], type_=2, offset=0, size=30, values=2),
        "wrong-path": column_chunk(["other"], type_=2, offset=4, size=30, values=2),
    }[kind]
    footer = file_metadata(schema, [(2, [chunk])], rows=declared_rows)
    tail, size = as_file(footer)
    with pytest.raises(IntegrityError, match=message):
        decode_footer(tail, size, max_footer_bytes=CAP)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ([], "no root group"),
        (
            [schema_element("root", repetition=None, children=2), schema_element("a", type_=2)],
            "ends before all its groups",
        ),
        (
            [schema_element("root", repetition=None, children=0), schema_element("a", type_=2)],
            "more elements than its groups hold",
        ),
        ([schema_element("root", repetition=None, children=1), schema_element("a", type_=9)], "unknown type"),
        (
            [schema_element("root", repetition=None, children=1), schema_element("a", type_=2, repetition=None)],
            "no valid repetition",
        ),
        ([schema_element("root", repetition=None, children=1), schema_element("a", type_=7)], "without a length"),
    ],
)
def test_a_schema_that_is_not_a_tree_of_typed_leaves_is_refused(schema: list[bytes], message: str) -> None:
    tail, size = as_file(file_metadata(schema, []))
    with pytest.raises(IntegrityError, match=message):
        decode_footer(tail, size, max_footer_bytes=CAP)


def test_a_plaintext_footer_of_an_encrypted_file_cannot_be_verified() -> None:
    schema = [schema_element("root", repetition=None, children=0)]
    footer = file_metadata(schema, [], extra=((8, T.STRUCT, T.struct((1, T.STRUCT, T.struct()))),))
    tail, size = as_file(footer)
    with pytest.raises(IntegrityError, match=r"encrypted .* cannot be verified"):
        decode_footer(tail, size, max_footer_bytes=CAP)


@pytest.mark.parametrize(
    ("size", "last8", "message"),
    [
        (100, struct.pack("<I", 10) + b"PARE", r"encrypted footer .* cannot be verified"),
        (100, struct.pack("<I", 10) + b"PK\x05\x06", "does not end in the parquet magic"),
        (100, struct.pack("<I", 0) + b"PAR1", "length is 0"),
        (100, struct.pack("<I", 89) + b"PAR1", "does not fit in a file of 100 bytes"),
        (2**40, struct.pack("<I", CAP + 1) + b"PAR1", "more than the 67108864 bytes allowed"),
        (11, struct.pack("<I", 1) + b"PAR1", "too short to be a parquet file"),
    ],
)
def test_the_footer_length_must_be_sane(size: int, last8: bytes, message: str) -> None:
    with pytest.raises(IntegrityError, match=message):
        footer_length(size, last8, max_footer_bytes=CAP)


def test_the_largest_footer_that_fits_is_accepted() -> None:
    assert footer_length(100, struct.pack("<I", 88) + b"PAR1", max_footer_bytes=CAP) == 88


def test_int96_timestamps_are_julian_days_and_nanoseconds_of_the_day() -> None:
    # pyarrow writes no INT96 statistics, so the layout is spelled out: 8 bytes of nanoseconds, 4 of Julian day.
    leaf = LeafColumn(("t",), PhysicalType.INT96, Repetition.OPTIONAL, None, None, 1, 0)
    moment = dt.datetime(2024, 4, 12, 7, 55, 23, 372001, tzinfo=dt.UTC)
    nanos_of_day = (moment - moment.replace(hour=0, minute=0, second=0, microsecond=0)) // dt.timedelta(
        microseconds=1
    ) * 1000 + 9
    raw = struct.pack("<qi", nanos_of_day, 2_460_413)  # 2024-04-12 is Julian day 2,460,413
    assert decode_value(leaf, raw) == moment
    assert (
        epoch_nanos(leaf, raw)
        == (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1) * 1000 + 9
    )
    with pytest.raises(IntegrityError, match="holds 8 bytes where 12 belong"):
        decode_value(leaf, raw[:8])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-04-12T07:55:23.3720000Z", dt.datetime(2024, 4, 12, 7, 55, 23, 372000, tzinfo=dt.UTC)),
        ("2024-04-12T09:55:23+02:00", dt.datetime(2024, 4, 12, 7, 55, 23, tzinfo=dt.UTC)),
        ("2024-04-12 07:55:23", dt.datetime(2024, 4, 12, 7, 55, 23, tzinfo=dt.UTC)),
        ("2024-02-30T00:00:00Z", None),
        ("yesterday", None),
    ],
)
def test_iso_strings_are_read_as_event_times(text: str, expected: dt.datetime | None) -> None:
    leaf = LeafColumn(("t",), PhysicalType.BYTE_ARRAY, Repetition.OPTIONAL, LogicalType("STRING"), None, 1, 0)
    nanos = epoch_nanos(leaf, text.encode())
    assert (None if nanos is None else nanos_to_datetime(nanos)) == expected
