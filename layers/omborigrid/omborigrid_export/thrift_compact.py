"""A bounded reader of the Thrift compact protocol, the encoding of a parquet footer.

Why our own: the layer must prove a file without pyarrow (stdlib only, small and fast to import in Lambda),
and the footer is the first thing a hostile or truncated file controls. So every read here is bounded by
the bytes actually held: a varint longer than its type allows, a length or a container size larger than
the bytes left, a nesting deeper than :data:`MAX_DEPTH` or an unknown wire type is an
:class:`~omborigrid_export.errors.IntegrityError` naming the byte offset, never another exception. Every
element of a container takes at least one byte on the wire, so checking a declared size against the bytes
left bounds both the memory and the time of a decode by the footer's length.

The reader is driven by the caller: :meth:`CompactReader.fields` yields each field's id and wire type, and
the caller reads the value it wants (``i32``, ``binary``, ``struct`` …) or :meth:`CompactReader.skip` s it.
Booleans in a field header carry their value in the type nibble; inside a list they are one byte each.
:func:`read_struct` does that loop from a table of the fields a struct is read for (:data:`FieldTable`),
skipping all others, so ``parquet.thrift`` structures are tables rather than hand-written loops.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar, cast

from .errors import IntegrityError

T = TypeVar("T")

#: Nesting of structs and containers allowed: a parquet footer needs 7 (FileMetaData → RowGroup →
#: ColumnChunk → ColumnMetaData → Statistics, plus lists); hostile input could nest until the stack breaks.
MAX_DEPTH = 32

_DOUBLE = struct.Struct("<d")


class WireType(enum.IntEnum):
    """The compact protocol's type nibble."""

    BOOL_TRUE = 1
    BOOL_FALSE = 2
    BYTE = 3
    I16 = 4
    I32 = 5
    I64 = 6
    DOUBLE = 7
    BINARY = 8
    LIST = 9
    SET = 10
    MAP = 11
    STRUCT = 12
    UUID = 13


_STOP = 0
#: Nibble -> wire type (a table: this is the hottest lookup of a decode).
_WIRE_TYPES: tuple[WireType | None, ...] = tuple({t.value: t for t in WireType}.get(n) for n in range(16))
_FIXED_WIDTH = {WireType.DOUBLE: 8, WireType.UUID: 16, WireType.BYTE: 1}
_VARINT_BITS = {WireType.I16: 16, WireType.I32: 32, WireType.I64: 64}


class CompactReader:
    """Reads compact-protocol values from ``data``, never past its end."""

    __slots__ = ("_data", "_depth", "_pos", "_shared")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        self._depth = 0
        self._shared: dict[object, object] = {}

    @property
    def position(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def malformed(self, what: str) -> IntegrityError:
        """The error for a malformation found at the current position."""
        return IntegrityError(f"The parquet footer is malformed: {what} (at byte {self._pos} of {len(self._data)}).")

    # -- scalars -------------------------------------------------------------------------------------------
    def _byte(self) -> int:
        try:
            value = self._data[self._pos]
        except IndexError:
            raise self.malformed("it ends in the middle of a value") from None
        self._pos += 1
        return value

    def _varint(self, bits: int) -> int:
        """An unsigned LEB128 varint of at most ``bits`` bits (more bytes or bits are a malformation)."""
        data, pos = self._data, self._pos
        try:
            byte = data[pos]
            if byte < 0x80:  # most footer integers take one byte
                self._pos = pos + 1
                return byte
            result = shift = 0
            while True:
                byte = data[pos]
                pos += 1
                result |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
                if shift >= bits:
                    self._pos = pos
                    raise self.malformed(f"a varint is longer than a {bits}-bit integer allows")
        except IndexError:
            self._pos = len(data)
            raise self.malformed("it ends in the middle of a value") from None
        self._pos = pos
        if result >> bits:
            raise self.malformed(f"a varint does not fit in {bits} bits")
        return result

    def _zigzag(self, bits: int) -> int:
        raw = self._varint(bits)
        return (raw >> 1) ^ -(raw & 1)

    def i8(self) -> int:
        value = self._byte()
        return value - 256 if value > 127 else value

    def i16(self) -> int:
        return self._zigzag(16)

    def i32(self) -> int:
        return self._zigzag(32)

    def i64(self) -> int:
        return self._zigzag(64)

    def double(self) -> float:
        return float(_DOUBLE.unpack(self._take(8))[0])

    def _take(self, length: int) -> bytes:
        if length > self.remaining:
            raise self.malformed(f"a value of {length} bytes is longer than the {self.remaining} bytes left")
        start = self._pos
        self._pos += length
        return self._data[start : self._pos]

    def binary(self) -> bytes:
        return self._take(self._varint(32))

    def string(self) -> str:
        raw = self.binary()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.malformed("a string is not valid UTF-8") from None

    def shared(self, value: T) -> T:
        """The first value equal to ``value`` passed here: values repeated across a footer (column paths,
        statistics of a constant column) are then held once, whatever the number of row groups."""
        return cast(T, self._shared.setdefault(value, value))

    # -- structs and containers ----------------------------------------------------------------------------
    def _enter(self) -> None:
        if self._depth >= MAX_DEPTH:
            raise self.malformed(f"values are nested deeper than {MAX_DEPTH} levels")
        self._depth += 1

    def fields(self) -> Iterator[tuple[int, WireType]]:
        """Each field of the struct that starts here, as (field id, wire type), until its stop byte.

        The caller must consume each field's value (a read or :meth:`skip`) before asking for the next one.
        """
        self._enter()
        last_id = 0
        while (header := self._byte()) != _STOP:
            wire_type = self._wire_type(header & 0x0F)
            delta = header >> 4
            last_id = last_id + delta if delta else self.i16()
            yield last_id, wire_type
        self._depth -= 1

    def _wire_type(self, nibble: int) -> WireType:
        wire_type = _WIRE_TYPES[nibble]
        if wire_type is None:
            raise self.malformed(f"wire type {nibble} is unknown")
        return wire_type

    def list_header(self) -> tuple[WireType, int]:
        """(element type, size) of the list or set that starts here; the size fits in the bytes left."""
        header = self._byte()
        size = header >> 4
        if size == 15:
            size = self._varint(32)
        element = self._wire_type(header & 0x0F)
        self._check_size(size, 1)
        return element, size

    def map_header(self) -> tuple[WireType, WireType, int]:
        size = self._varint(32)
        if size == 0:
            return WireType.BINARY, WireType.BINARY, 0
        types = self._byte()
        self._check_size(size, 2)
        return self._wire_type(types >> 4), self._wire_type(types & 0x0F), size

    def _check_size(self, size: int, bytes_per_element: int) -> None:
        if size * bytes_per_element > self.remaining:
            raise self.malformed(f"a container declares {size} elements but only {self.remaining} bytes are left")

    def elements(self, expected: WireType) -> Iterator[None]:
        """Iterate once per element of a list of ``expected`` elements (the caller reads each one)."""
        element, size = self.list_header()
        if not compatible(element, expected):
            raise self.malformed(f"a list holds {element.name} where {expected.name} was expected")
        self._enter()
        for _ in range(size):
            yield None
        self._depth -= 1

    def list_bool(self) -> bool:
        """A boolean element of a list (one byte: 1 true; 0 or 2 false)."""
        value = self._byte()
        if value not in (0, 1, 2):
            raise self.malformed(f"a boolean list element is {value}")
        return value == 1

    def skip(self, wire_type: WireType, *, in_container: bool = False) -> None:
        """Step over one value of ``wire_type`` (a boolean takes a byte only inside a container)."""
        if wire_type in (WireType.BOOL_TRUE, WireType.BOOL_FALSE):
            if in_container:
                self.list_bool()
        elif wire_type in _VARINT_BITS:
            self._varint(_VARINT_BITS[wire_type])
        elif wire_type in _FIXED_WIDTH:
            self._take(_FIXED_WIDTH[wire_type])
        elif wire_type is WireType.BINARY:
            self.binary()
        elif wire_type is WireType.STRUCT:
            for _, field_type in self.fields():
                self.skip(field_type)
        else:
            self._skip_container(wire_type)

    def _skip_container(self, wire_type: WireType) -> None:
        self._enter()
        if wire_type is WireType.MAP:
            key_type, value_type, size = self.map_header()
            for _ in range(size):
                self.skip(key_type, in_container=True)
                self.skip(value_type, in_container=True)
        else:
            element, size = self.list_header()
            self._skip_elements(element, size)
        self._depth -= 1

    def _skip_elements(self, element: WireType, size: int) -> None:
        if element in _FIXED_WIDTH:
            self._take(size * _FIXED_WIDTH[element])
        elif element in _VARINT_BITS:  # lists of encodings, offsets, histograms
            bits = _VARINT_BITS[element]
            for _ in range(size):
                self._varint(bits)
        else:
            for _ in range(size):
                self.skip(element, in_container=True)


def compatible(actual: WireType, expected: WireType) -> bool:
    """Whether a value sent as ``actual`` can be read as ``expected`` (both booleans count as one type)."""
    booleans = (WireType.BOOL_TRUE, WireType.BOOL_FALSE)
    return actual == expected or (actual in booleans and expected in booleans)


# -- reading a struct by a table of its fields --------------------------------------------------------------------
#: Reads one field's value, given the wire type it was sent as.
FieldRead = Callable[["CompactReader", WireType], object]
#: A struct's fields: id -> (name, wire type, reader).
FieldTable = Mapping[int, tuple[str, WireType, FieldRead]]


def read_struct(reader: CompactReader, spec: FieldTable, what: str) -> dict[str, object]:
    """The fields of the struct starting here that ``spec`` names, by name; all others are skipped."""
    values: dict[str, object] = {}
    for field_id, wire in reader.fields():
        entry = spec.get(field_id)
        if entry is None:
            reader.skip(wire)
            continue
        name, expected, read = entry
        if wire is not expected and not compatible(wire, expected):
            raise reader.malformed(f"{what}.{name} is sent as {wire.name} where {expected.name} belongs")
        values[name] = read(reader, wire)
    return values


def required(values: Mapping[str, object], name: str, what: str, kind: type[T]) -> T:
    """Field ``name`` of a struct read by :func:`read_struct`; missing or of another type is a malformation."""
    value = values.get(name)
    if not isinstance(value, kind):
        raise IntegrityError(f"The parquet footer is malformed: a {what} lacks a valid {name}.")
    return value


def optional(values: Mapping[str, object], name: str, kind: type[T]) -> T | None:
    """Field ``name`` of a struct read by :func:`read_struct`, or None when it was not sent."""
    value = values.get(name)
    return value if isinstance(value, kind) else None


def list_of(element: WireType, read: FieldRead) -> FieldRead:
    def read_list(reader: CompactReader, _: WireType) -> tuple[object, ...]:
        return tuple(read(reader, element) for _ in reader.elements(element))

    return read_list


def struct_of(read: Callable[[CompactReader], object]) -> FieldRead:
    return lambda reader, _: read(reader)


def read_i8(reader: CompactReader, _: WireType) -> int:
    return reader.i8()


def read_i32(reader: CompactReader, _: WireType) -> int:
    return reader.i32()


def read_i64(reader: CompactReader, _: WireType) -> int:
    return reader.i64()


def read_shared_binary(reader: CompactReader, _: WireType) -> bytes:
    return reader.shared(reader.binary())


def read_string(reader: CompactReader, _: WireType) -> str:
    return reader.string()


def read_bool(_: CompactReader, wire: WireType) -> bool:
    return wire is WireType.BOOL_TRUE


def read_skipped(reader: CompactReader, wire: WireType) -> bool:
    reader.skip(wire)
    return True
