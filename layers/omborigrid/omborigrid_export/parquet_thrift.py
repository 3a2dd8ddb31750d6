"""The parquet footer's thrift structures (``parquet.thrift``), read field by field from the compact protocol.

Only what a proof needs is kept (schema, row counts, chunk positions, statistics, key-value metadata, the
writer); every other field, known or not, is skipped, so footers of newer writers decode too. A field sent
with the wrong wire type, a required field missing, a union naming two members or bytes left after the
footer are malformations. Checks that need more than one structure (the schema tree, row sums, chunk
positions) are :mod:`.parquet_footer`'s.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from .errors import IntegrityError
from .thrift_compact import (
    CompactReader,
    WireType,
    list_of,
    optional,
    read_bool,
    read_i8,
    read_i32,
    read_i64,
    read_shared_binary,
    read_skipped,
    read_string,
    read_struct,
    required,
    struct_of,
)

T = TypeVar("T")


class PhysicalType(enum.IntEnum):
    BOOLEAN = 0
    INT32 = 1
    INT64 = 2
    INT96 = 3
    FLOAT = 4
    DOUBLE = 5
    BYTE_ARRAY = 6
    FIXED_LEN_BYTE_ARRAY = 7


class Repetition(enum.IntEnum):
    REQUIRED = 0
    OPTIONAL = 1
    REPEATED = 2
    VECTOR = 3


@dataclass(frozen=True, slots=True)
class LogicalType:
    """A column's logical type (``parquet.thrift`` ``LogicalType``, or the legacy ``ConvertedType``)."""

    name: str
    #: TIME and TIMESTAMP: MILLIS, MICROS or NANOS, and whether the values are adjusted to UTC.
    unit: str | None = None
    utc: bool | None = None
    #: INTEGER.
    bit_width: int | None = None
    signed: bool | None = None
    #: DECIMAL.
    precision: int | None = None
    scale: int | None = None

    def __str__(self) -> str:
        if self.unit is not None:
            return f"{self.name}({self.unit},{'UTC' if self.utc else 'LOCAL'})"
        if self.bit_width is not None:
            return f"{self.name}({self.bit_width},{'SIGNED' if self.signed else 'UNSIGNED'})"
        if self.precision is not None:
            return f"{self.name}({self.precision},{self.scale})"
        return self.name


@dataclass(frozen=True, slots=True)
class Statistics:
    """A column chunk's statistics as stored: min/max are PLAIN-encoded bytes (no length prefix for strings)."""

    null_count: int | None
    distinct_count: int | None
    #: ``min_value``/``max_value``: bounds in the column's sort order.
    min_value: bytes | None
    max_value: bytes | None
    #: The deprecated ``min``/``max``: bounds in signed order, whatever the column's type.
    legacy_min: bytes | None
    legacy_max: bytes | None
    #: Whether ``min_value``/``max_value`` are actual values (None: the writer did not say).
    is_min_value_exact: bool | None
    is_max_value_exact: bool | None


@dataclass(frozen=True, slots=True)
class ColumnChunk:
    path: tuple[str, ...]
    physical_type: int
    codec: int
    num_values: int
    total_compressed_size: int
    total_uncompressed_size: int
    data_page_offset: int
    #: None when absent; legacy writers' 0 for "no dictionary" is read as absent too.
    dictionary_page_offset: int | None
    statistics: Statistics | None


@dataclass(frozen=True, slots=True)
class RowGroup:
    num_rows: int
    total_byte_size: int
    columns: tuple[ColumnChunk, ...]


@dataclass(frozen=True, slots=True)
class RawSchemaElement:
    name: str
    type: int | None
    type_length: int | None
    repetition_type: int | None
    num_children: int | None
    converted_type: int | None
    scale: int | None
    precision: int | None
    logical_type: LogicalType | None


@dataclass(frozen=True, slots=True)
class RawFileMetaData:
    version: int
    schema: tuple[RawSchemaElement, ...]
    num_rows: int
    row_groups: tuple[RowGroup, ...]
    key_value_metadata: tuple[tuple[str, str | None], ...]
    created_by: str | None
    type_defined_order: tuple[bool, ...] | None
    #: The footer names an encryption algorithm or a footer signing key (an encrypted file, plaintext footer).
    encrypted: bool


_I8, _I32, _I64, _BIN, _BOOL, _LIST, _STRUCT = (
    WireType.BYTE,
    WireType.I32,
    WireType.I64,
    WireType.BINARY,
    WireType.BOOL_TRUE,
    WireType.LIST,
    WireType.STRUCT,
)


# -- unions: logical type, time unit, column order --------------------------------------------------------------
def _read_union(
    reader: CompactReader, what: str, members: Mapping[int, Callable[[CompactReader], T]], unknown: Callable[[int], T]
) -> T | None:
    """The value of the one member of the union starting here (None for an empty union)."""
    found: T | None = None
    seen = False
    for field_id, wire in reader.fields():
        if seen:
            raise reader.malformed(f"a {what} names more than one member")
        if wire is not WireType.STRUCT:
            raise reader.malformed(f"a {what} member is sent as {wire.name}, not a struct")
        seen = True
        read = members.get(field_id)
        if read is None:
            reader.skip(wire)
            found = unknown(field_id)
        else:
            found = read(reader)
    return found


def _empty(value: T) -> Callable[[CompactReader], T]:
    """A member that is an empty struct (its fields, if a newer writer added some, are skipped)."""

    def read(reader: CompactReader) -> T:
        reader.skip(WireType.STRUCT)
        return value

    return read


def _unknown_time_unit(field_id: int) -> str:
    raise IntegrityError(f"The parquet footer names time unit {field_id}, which this reader does not know.")


_TIME_UNITS: Mapping[int, Callable[[CompactReader], str]] = {
    1: _empty("MILLIS"),
    2: _empty("MICROS"),
    3: _empty("NANOS"),
}


def _read_time_unit(reader: CompactReader, _: WireType) -> str | None:
    return _read_union(reader, "time unit", _TIME_UNITS, _unknown_time_unit)


def _timed(name: str) -> Callable[[CompactReader], LogicalType]:
    spec = {1: ("isAdjustedToUTC", _BOOL, read_bool), 2: ("unit", _STRUCT, _read_time_unit)}

    def read(reader: CompactReader) -> LogicalType:
        values = read_struct(reader, spec, f"{name} logical type")
        unit = required(values, "unit", f"{name} logical type", str)
        return LogicalType(name, unit=unit, utc=required(values, "isAdjustedToUTC", f"{name} logical type", bool))

    return read


def _decimal(reader: CompactReader) -> LogicalType:
    values = read_struct(reader, {1: ("scale", _I32, read_i32), 2: ("precision", _I32, read_i32)}, "DecimalType")
    return LogicalType(
        "DECIMAL",
        precision=required(values, "precision", "DecimalType", int),
        scale=required(values, "scale", "DecimalType", int),
    )


def _integer(reader: CompactReader) -> LogicalType:
    values = read_struct(reader, {1: ("bitWidth", _I8, read_i8), 2: ("isSigned", _BOOL, read_bool)}, "IntType")
    return LogicalType(
        "INTEGER",
        bit_width=required(values, "bitWidth", "IntType", int),
        signed=required(values, "isSigned", "IntType", bool),
    )


_SIMPLE_LOGICAL = {1: "STRING", 2: "MAP", 3: "LIST", 4: "ENUM", 6: "DATE", 11: "UNKNOWN", 12: "JSON", 13: "BSON"}
_SIMPLE_LOGICAL |= {14: "UUID", 15: "FLOAT16", 16: "VARIANT", 17: "GEOMETRY", 18: "GEOGRAPHY", 19: "VECTOR"}
_LOGICAL_TYPES: Mapping[int, Callable[[CompactReader], LogicalType]] = {
    **{field_id: _empty(LogicalType(name)) for field_id, name in _SIMPLE_LOGICAL.items()},
    5: _decimal,
    7: _timed("TIME"),
    8: _timed("TIMESTAMP"),
    10: _integer,
}


def _read_logical_type(reader: CompactReader, _: WireType) -> LogicalType | None:
    # A member this reader does not know is kept by its id: the schema still decodes and fingerprints,
    # and its statistics are then read by physical type only.
    return _read_union(reader, "logical type", _LOGICAL_TYPES, lambda field_id: LogicalType(f"LOGICAL_TYPE_{field_id}"))


def _read_column_order(reader: CompactReader, _: WireType) -> bool:
    return bool(_read_union(reader, "column order", {1: _empty(True)}, lambda _: False))


# -- structures -------------------------------------------------------------------------------------------------
_STATISTICS = {
    1: ("max", _BIN, read_shared_binary),
    2: ("min", _BIN, read_shared_binary),
    3: ("null_count", _I64, read_i64),
    4: ("distinct_count", _I64, read_i64),
    5: ("max_value", _BIN, read_shared_binary),
    6: ("min_value", _BIN, read_shared_binary),
    7: ("is_max_value_exact", _BOOL, read_bool),
    8: ("is_min_value_exact", _BOOL, read_bool),
}


def _read_statistics(reader: CompactReader) -> Statistics:
    v = read_struct(reader, _STATISTICS, "Statistics")
    return Statistics(
        null_count=optional(v, "null_count", int),
        distinct_count=optional(v, "distinct_count", int),
        min_value=optional(v, "min_value", bytes),
        max_value=optional(v, "max_value", bytes),
        legacy_min=optional(v, "min", bytes),
        legacy_max=optional(v, "max", bytes),
        is_min_value_exact=optional(v, "is_min_value_exact", bool),
        is_max_value_exact=optional(v, "is_max_value_exact", bool),
    )


_COLUMN_META_DATA = {
    1: ("type", _I32, read_i32),
    3: ("path_in_schema", _LIST, list_of(WireType.BINARY, read_string)),
    4: ("codec", _I32, read_i32),
    5: ("num_values", _I64, read_i64),
    6: ("total_uncompressed_size", _I64, read_i64),
    7: ("total_compressed_size", _I64, read_i64),
    9: ("data_page_offset", _I64, read_i64),
    11: ("dictionary_page_offset", _I64, read_i64),
    12: ("statistics", _STRUCT, struct_of(_read_statistics)),
}


def _read_column_meta_data(reader: CompactReader) -> ColumnChunk:
    v = read_struct(reader, _COLUMN_META_DATA, "ColumnMetaData")
    what = "ColumnMetaData"
    dictionary = optional(v, "dictionary_page_offset", int)
    return ColumnChunk(
        path=reader.shared(required(v, "path_in_schema", what, tuple)),
        physical_type=required(v, "type", what, int),
        codec=required(v, "codec", what, int),
        num_values=required(v, "num_values", what, int),
        total_compressed_size=required(v, "total_compressed_size", what, int),
        total_uncompressed_size=required(v, "total_uncompressed_size", what, int),
        data_page_offset=required(v, "data_page_offset", what, int),
        dictionary_page_offset=dictionary or None,
        statistics=optional(v, "statistics", Statistics),
    )


_COLUMN_CHUNK = {
    1: ("file_path", _BIN, read_string),
    2: ("file_offset", _I64, read_i64),
    3: ("meta_data", _STRUCT, struct_of(_read_column_meta_data)),
    8: ("crypto_metadata", _STRUCT, read_skipped),
    9: ("encrypted_column_metadata", _BIN, read_skipped),
}


def _read_column_chunk(reader: CompactReader) -> ColumnChunk:
    v = read_struct(reader, _COLUMN_CHUNK, "ColumnChunk")
    if "crypto_metadata" in v or "encrypted_column_metadata" in v:
        raise IntegrityError("A parquet column chunk is encrypted: the file's content cannot be verified.")
    if v.get("file_path"):
        raise IntegrityError(
            f"A parquet column chunk keeps its data in another file ({v['file_path']!r}): this file alone "
            "cannot be verified."
        )
    required(v, "file_offset", "ColumnChunk", int)
    return required(v, "meta_data", "ColumnChunk", ColumnChunk)


_ROW_GROUP = {
    1: ("columns", _LIST, list_of(_STRUCT, struct_of(_read_column_chunk))),
    2: ("total_byte_size", _I64, read_i64),
    3: ("num_rows", _I64, read_i64),
}


def _read_row_group(reader: CompactReader) -> RowGroup:
    v = read_struct(reader, _ROW_GROUP, "RowGroup")
    return RowGroup(
        num_rows=required(v, "num_rows", "RowGroup", int),
        total_byte_size=required(v, "total_byte_size", "RowGroup", int),
        columns=required(v, "columns", "RowGroup", tuple),
    )


_SCHEMA_ELEMENT = {
    1: ("type", _I32, read_i32),
    2: ("type_length", _I32, read_i32),
    3: ("repetition_type", _I32, read_i32),
    4: ("name", _BIN, read_string),
    5: ("num_children", _I32, read_i32),
    6: ("converted_type", _I32, read_i32),
    7: ("scale", _I32, read_i32),
    8: ("precision", _I32, read_i32),
    10: ("logical_type", _STRUCT, _read_logical_type),
}


def _read_schema_element(reader: CompactReader) -> RawSchemaElement:
    v = read_struct(reader, _SCHEMA_ELEMENT, "SchemaElement")
    return RawSchemaElement(
        name=required(v, "name", "SchemaElement", str),
        type=optional(v, "type", int),
        type_length=optional(v, "type_length", int),
        repetition_type=optional(v, "repetition_type", int),
        num_children=optional(v, "num_children", int),
        converted_type=optional(v, "converted_type", int),
        scale=optional(v, "scale", int),
        precision=optional(v, "precision", int),
        logical_type=optional(v, "logical_type", LogicalType),
    )


def _read_key_value(reader: CompactReader) -> tuple[str, str | None]:
    v = read_struct(reader, {1: ("key", _BIN, read_string), 2: ("value", _BIN, read_string)}, "KeyValue")
    return required(v, "key", "KeyValue", str), optional(v, "value", str)


_FILE_META_DATA = {
    1: ("version", _I32, read_i32),
    2: ("schema", _LIST, list_of(_STRUCT, struct_of(_read_schema_element))),
    3: ("num_rows", _I64, read_i64),
    4: ("row_groups", _LIST, list_of(_STRUCT, struct_of(_read_row_group))),
    5: ("key_value_metadata", _LIST, list_of(_STRUCT, struct_of(_read_key_value))),
    6: ("created_by", _BIN, read_string),
    7: ("column_orders", _LIST, list_of(_STRUCT, _read_column_order)),
    8: ("encryption_algorithm", _STRUCT, read_skipped),
    9: ("footer_signing_key_metadata", _BIN, read_skipped),
}


def read_file_metadata(footer: bytes) -> RawFileMetaData:
    """The ``FileMetaData`` that ``footer`` holds, which must end exactly at its last byte."""
    reader = CompactReader(footer)
    v = read_struct(reader, _FILE_META_DATA, "FileMetaData")
    if reader.remaining:
        raise reader.malformed(f"{reader.remaining} bytes follow the end of the footer's FileMetaData")
    what = "FileMetaData"
    return RawFileMetaData(
        version=required(v, "version", what, int),
        schema=required(v, "schema", what, tuple),
        num_rows=required(v, "num_rows", what, int),
        row_groups=required(v, "row_groups", what, tuple),
        key_value_metadata=optional(v, "key_value_metadata", tuple) or (),
        created_by=optional(v, "created_by", str),
        type_defined_order=optional(v, "column_orders", tuple),
        encrypted="encryption_algorithm" in v or "footer_signing_key_metadata" in v,
    )
