"""The parquet footer (``FileMetaData``), decoded completely and checked against the file it ends.

A parquet file is ``PAR1`` + column chunks + footer + footer length (4 bytes, little-endian) + ``PAR1``. The
footer is the only part of the file that says what the file holds, so a file is accepted only when its
footer decodes to the last byte (:mod:`.thrift_compact`), its row groups add up to its row count, and every
column chunk it describes lies inside the file, between the leading magic and the footer. A truncated file
(a few KB of a real one with ``PAR1`` glued on) fails one of these; so does any hostile footer, always as an
:class:`~omborigrid_export.errors.IntegrityError` with a sentence naming what is wrong.

Decoding follows ``parquet.thrift`` (apache/parquet-format): unknown fields are skipped, so footers written by
newer writers still decode; legacy ``ConvertedType`` annotations are read as the logical types they stand
for (LogicalTypes.md), so old writers' files describe the same schema as new ones'.

The **schema fingerprint** is ``sha256:`` + the hex SHA-256 of the canonical JSON of the leaf columns: a JSON
array, in the file's column order, of objects ``{"logicalType", "path", "physicalType", "repetition"}``
(:meth:`omborigrid_export.proof.Column.to_dict`: path dotted, physical type and repetition by their
``parquet.thrift`` names, logical type as :meth:`LogicalType.__str__` text such as ``TIMESTAMP(MICROS,UTC)``
or null), serialised with sorted keys, ``(",", ":")`` separators and ASCII escapes. Field ids, key-value
metadata and statistics are not part of it: two files of the same schema have the same fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .errors import IntegrityError
from .parquet_thrift import (
    ColumnChunk,
    LogicalType,
    PhysicalType,
    RawFileMetaData,
    RawSchemaElement,
    Repetition,
    RowGroup,
    Statistics,
    read_file_metadata,
)
from .proof import Column

MAGIC = b"PAR1"
ENCRYPTED_MAGIC = b"PARE"
#: Bytes after the footer: its length (uint32, little-endian) and the magic.
TRAILER_LENGTH = 8

__all__ = [
    "ENCRYPTED_MAGIC",
    "MAGIC",
    "TRAILER_LENGTH",
    "ColumnChunk",
    "FileMetaData",
    "LeafColumn",
    "LogicalType",
    "PhysicalType",
    "Repetition",
    "RowGroup",
    "Statistics",
    "decode_footer",
    "footer_length",
    "schema_fingerprint",
]


@dataclass(frozen=True, slots=True)
class LeafColumn:
    """One leaf of the schema tree: a column with values, in the file's column order."""

    path: tuple[str, ...]
    physical_type: PhysicalType
    repetition: Repetition
    logical_type: LogicalType | None
    #: FIXED_LEN_BYTE_ARRAY: the byte length of each value.
    type_length: int | None
    max_definition_level: int
    max_repetition_level: int

    @property
    def dotted_path(self) -> str:
        return ".".join(self.path)

    def column(self) -> Column:
        logical = None if self.logical_type is None else str(self.logical_type)
        return Column(self.dotted_path, self.physical_type.name, logical, self.repetition.name)


@dataclass(frozen=True, slots=True)
class FileMetaData:
    """A decoded and checked footer."""

    version: int
    num_rows: int
    leaves: tuple[LeafColumn, ...]
    row_groups: tuple[RowGroup, ...]
    key_value_metadata: tuple[tuple[str, str | None], ...]
    created_by: str | None
    #: Per leaf: whether its min/max statistics follow the type-defined order (False when the file names an
    #: order this decoder does not know, in which case those statistics must be ignored); None when the
    #: file lists no orders.
    type_defined_order: tuple[bool, ...] | None
    #: The footer's length in bytes (without the trailing length and magic).
    footer_length: int

    @property
    def columns(self) -> tuple[Column, ...]:
        return tuple(leaf.column() for leaf in self.leaves)

    @property
    def schema_fingerprint(self) -> str:
        return schema_fingerprint(self.columns)


def schema_fingerprint(columns: tuple[Column, ...]) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``columns`` (the form is in the module docstring)."""
    canonical = json.dumps([c.to_dict() for c in columns], sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()


def footer_length(size: int, last8: bytes, *, max_footer_bytes: int) -> int:
    """The footer's length from a file's size and last 8 bytes; IntegrityError when it cannot be a footer."""
    if len(last8) != TRAILER_LENGTH or size < len(MAGIC) + TRAILER_LENGTH:
        raise IntegrityError(f"The file is {size} bytes long: too short to be a parquet file.")
    magic = last8[4:]
    if magic == ENCRYPTED_MAGIC:
        raise IntegrityError(
            "The parquet file has an encrypted footer (it ends in PARE): its content cannot be verified."
        )
    if magic != MAGIC:
        raise IntegrityError(f"The file does not end in the parquet magic PAR1 (it ends in {magic!r}).")
    length = int.from_bytes(last8[:4], "little")
    if length == 0:
        raise IntegrityError("The parquet footer length is 0: the file has no footer.")
    if length > max_footer_bytes:
        raise IntegrityError(
            f"The parquet footer claims {length} bytes, more than the {max_footer_bytes} bytes allowed."
        )
    if len(MAGIC) + length + TRAILER_LENGTH > size:
        raise IntegrityError(
            f"The parquet footer claims {length} bytes, which does not fit in a file of {size} bytes "
            "with its leading PAR1: the file is truncated or not parquet."
        )
    return length


def decode_footer(tail: bytes, size: int, *, max_footer_bytes: int) -> FileMetaData:
    """Decode and check the footer held in ``tail``, the last ``footer_length + 8`` bytes of a ``size``-byte file."""
    length = footer_length(size, tail[-TRAILER_LENGTH:], max_footer_bytes=max_footer_bytes)
    if len(tail) != length + TRAILER_LENGTH:
        raise IntegrityError(
            f"The parquet footer is {length} bytes but {len(tail)} trailing bytes were given "
            f"({length + TRAILER_LENGTH} are needed)."
        )
    raw = read_file_metadata(tail[:length])
    _refuse_encryption(raw)
    leaves = _leaves(raw.schema)
    metadata = FileMetaData(
        version=raw.version,
        num_rows=raw.num_rows,
        leaves=leaves,
        row_groups=raw.row_groups,
        key_value_metadata=raw.key_value_metadata,
        created_by=raw.created_by,
        type_defined_order=raw.type_defined_order,
        footer_length=length,
    )
    _check_counts(metadata)
    _check_chunks(metadata, data_end=size - length - TRAILER_LENGTH)
    return metadata


def _refuse_encryption(raw: RawFileMetaData) -> None:
    if raw.encrypted:
        raise IntegrityError(
            "The parquet file is encrypted (its footer names an encryption algorithm): its content cannot be verified."
        )


# -- schema ---------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Group:
    remaining: int
    path: tuple[str, ...]
    definition: int
    repetition: int


def _leaves(elements: tuple[RawSchemaElement, ...]) -> tuple[LeafColumn, ...]:
    """The schema tree (a depth-first list of elements with child counts) flattened to its leaves."""
    if not elements or elements[0].num_children is None or elements[0].type is not None:
        raise IntegrityError("The parquet schema has no root group.")
    groups = [_Group(_child_count(elements[0]), (), 0, 0)]
    leaves: list[LeafColumn] = []
    for element in elements[1:]:
        while groups and groups[-1].remaining == 0:
            groups.pop()
        if not groups:
            raise IntegrityError("The parquet schema lists more elements than its groups hold.")
        parent = groups[-1]
        parent.remaining -= 1
        repetition = _repetition(element)
        path = (*parent.path, element.name)
        definition = parent.definition + (repetition is not Repetition.REQUIRED)
        repeat = parent.repetition + (repetition is Repetition.REPEATED)
        if element.type is None:
            groups.append(_Group(_child_count(element), path, definition, repeat))
        else:
            leaves.append(_leaf(element, path, repetition, definition, repeat))
    if any(group.remaining for group in groups):
        raise IntegrityError("The parquet schema ends before all its groups' children are listed.")
    return tuple(leaves)


def _child_count(element: RawSchemaElement) -> int:
    if element.num_children is None or element.num_children < 0:
        raise IntegrityError(f"The parquet schema group {element.name!r} has no valid number of children.")
    return element.num_children


def _repetition(element: RawSchemaElement) -> Repetition:
    try:
        return Repetition(element.repetition_type if element.repetition_type is not None else -1)
    except ValueError:
        raise IntegrityError(
            f"The parquet schema element {element.name!r} has no valid repetition ({element.repetition_type})."
        ) from None


def _leaf(
    element: RawSchemaElement, path: tuple[str, ...], repetition: Repetition, definition: int, repeat: int
) -> LeafColumn:
    try:
        physical = PhysicalType(element.type if element.type is not None else -1)
    except ValueError:
        raise IntegrityError(f"The parquet column {'.'.join(path)!r} has an unknown type ({element.type}).") from None
    if element.num_children:
        raise IntegrityError(f"The parquet column {'.'.join(path)!r} has both a type and children.")
    if physical is PhysicalType.FIXED_LEN_BYTE_ARRAY and (element.type_length is None or element.type_length < 0):
        raise IntegrityError(f"The parquet column {'.'.join(path)!r} is FIXED_LEN_BYTE_ARRAY without a length.")
    return LeafColumn(
        path=path,
        physical_type=physical,
        repetition=repetition,
        logical_type=element.logical_type or _from_converted_type(element),
        type_length=element.type_length if physical is PhysicalType.FIXED_LEN_BYTE_ARRAY else None,
        max_definition_level=definition,
        max_repetition_level=repeat,
    )


def _integer(bits: int, *, signed: bool) -> Callable[[RawSchemaElement], LogicalType | None]:
    integer = LogicalType("INTEGER", bit_width=bits, signed=signed)
    return lambda _: integer


_CONVERTED: Mapping[int, Callable[[RawSchemaElement], LogicalType | None]] = {
    0: lambda _: LogicalType("STRING"),
    1: lambda _: LogicalType("MAP"),
    2: lambda _: None,  # MAP_KEY_VALUE: no logical type stands for it
    3: lambda _: LogicalType("LIST"),
    4: lambda _: LogicalType("ENUM"),
    5: lambda e: LogicalType("DECIMAL", precision=e.precision, scale=e.scale or 0),
    6: lambda _: LogicalType("DATE"),
    7: lambda _: LogicalType("TIME", unit="MILLIS", utc=True),
    8: lambda _: LogicalType("TIME", unit="MICROS", utc=True),
    9: lambda _: LogicalType("TIMESTAMP", unit="MILLIS", utc=True),
    10: lambda _: LogicalType("TIMESTAMP", unit="MICROS", utc=True),
    **{11 + i: _integer(bits, signed=False) for i, bits in enumerate((8, 16, 32, 64))},  # UINT_8..UINT_64
    **{15 + i: _integer(bits, signed=True) for i, bits in enumerate((8, 16, 32, 64))},  # INT_8..INT_64
    19: lambda _: LogicalType("JSON"),
    20: lambda _: LogicalType("BSON"),
    21: lambda _: LogicalType("INTERVAL"),
}


def _from_converted_type(element: RawSchemaElement) -> LogicalType | None:
    if element.converted_type is None:
        return None
    convert = _CONVERTED.get(element.converted_type)
    if convert is None:
        raise IntegrityError(
            f"The parquet column {element.name!r} has an unknown converted type ({element.converted_type})."
        )
    return convert(element)


# -- row groups and chunks -------------------------------------------------------------------------------------
def _check_counts(metadata: FileMetaData) -> None:
    if metadata.num_rows < 0:
        raise IntegrityError(f"The parquet footer claims {metadata.num_rows} rows.")
    total = 0
    for index, group in enumerate(metadata.row_groups):
        if group.num_rows < 0:
            raise IntegrityError(f"Row group {index} of the parquet file claims {group.num_rows} rows.")
        total += group.num_rows
    if total != metadata.num_rows:
        raise IntegrityError(
            f"The parquet footer claims {metadata.num_rows} rows but its {len(metadata.row_groups)} row groups "
            f"hold {total}."
        )
    if metadata.type_defined_order is not None and len(metadata.type_defined_order) != len(metadata.leaves):
        raise IntegrityError(
            f"The parquet footer lists {len(metadata.type_defined_order)} column orders for "
            f"{len(metadata.leaves)} columns."
        )


def _check_chunks(metadata: FileMetaData, *, data_end: int) -> None:
    """Every chunk names its leaf (in schema order) and lies in ``[4, data_end)``, where data ends and the footer starts."""
    leaves = metadata.leaves
    for index, group in enumerate(metadata.row_groups):
        if len(group.columns) != len(leaves):
            raise IntegrityError(
                f"Row group {index} of the parquet file has {len(group.columns)} column chunks for "
                f"{len(leaves)} columns."
            )
        for leaf, chunk in zip(leaves, group.columns, strict=True):
            where = f"column {leaf.dotted_path!r} of row group {index}"
            if chunk.path != leaf.path or chunk.physical_type != leaf.physical_type:
                raise IntegrityError(
                    f"The parquet chunk for {where} describes {'.'.join(chunk.path)!r} of type "
                    f"{_type_name(chunk.physical_type)}, not {leaf.physical_type.name}."
                )
            _check_inside(chunk, where, data_end)


def _type_name(physical_type: int) -> str:
    try:
        return PhysicalType(physical_type).name
    except ValueError:
        return f"number {physical_type}"


def _check_inside(chunk: ColumnChunk, where: str, data_end: int) -> None:
    if chunk.num_values == 0 and chunk.total_compressed_size == 0:
        return  # an empty chunk claims no bytes (pyarrow writes its offsets as 0)
    # A chunk of no values may have no data page (pyarrow writes only a dictionary page, data page offset 0).
    has_data_page = chunk.num_values > 0 or chunk.data_page_offset != 0
    start = chunk.data_page_offset if chunk.dictionary_page_offset is None else chunk.dictionary_page_offset
    end = start + chunk.total_compressed_size
    inside = len(MAGIC) <= start and chunk.total_compressed_size >= 0 and end <= data_end
    if inside and has_data_page:
        inside = start <= chunk.data_page_offset and (chunk.data_page_offset < end or chunk.total_compressed_size == 0)
    if not inside:
        raise IntegrityError(
            f"The parquet chunk for {where} claims bytes {start}..{end} (first data page at "
            f"{chunk.data_page_offset}), outside the file's data (bytes 4..{data_end}): the file is truncated "
            "or its footer is corrupt."
        )
