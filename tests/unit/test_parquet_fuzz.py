"""Fuzzing the footer decoder and the prover: whatever the bytes, an IntegrityError or a proof, fast and small.

Inputs: random bytes as footers and as trailers; real footers (pyarrow-written and hand-made) mutated by bit
flips, truncations, insertions, deletions, overwrites, huge varints and huge container sizes; and random but
well-formed thrift values of unknown structure added to a real footer, which must be skipped without changing
what the footer decodes to. Each example is decoded under tracemalloc and a clock: its peak allocation and
time are asserted to stay under fixed bounds.

Size: ``FUZZ_EXAMPLES`` examples per test (default 300, so ~1,500 in a suite run);
``FUZZ_EXAMPLES=20000 pytest --timeout 0 tests/unit/test_parquet_fuzz.py`` is the longer run (80,000 examples;
about 15 minutes on a loaded 2-core machine, past the suite's 300 s per-test timeout, hence ``--timeout 0``).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import struct
import time
import tracemalloc
from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omborigrid_export.errors import IntegrityError
from omborigrid_export.models import ExportRequest, JobIdentity
from omborigrid_export.parquet_footer import FileMetaData, decode_footer
from omborigrid_export.parquet_proof import ParquetProver, ProofPolicy
from omborigrid_export.proof import Proof
from tests.unit.test_parquet_footer import Thrift, every_type_table, legacy_file

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
# No example database (nothing written to the work tree); a failure prints the example that reproduces it.
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
#: Bounds per example, for footers of at most ~20 KB: the decoder holds a few times the footer, never more.
MAX_PEAK_BYTES = 4 * 1024 * 1024
MAX_SECONDS = 2.0
CAP = ProofPolicy().max_footer_bytes
TENANT = "621e1fc633350f0007637a0c"
PROVER = ParquetProver(JobIdentity("job-1", ExportRequest(TENANT, dt.date(2024, 4, 12), dt.date(2024, 4, 12))))


@functools.cache
def seeds() -> tuple[tuple[bytes, int], ...]:
    """Real footers and the size of the data before each (so mutated chunk offsets may still fit)."""
    found = []
    start = dt.datetime(2024, 4, 12, tzinfo=dt.UTC)
    events = pa.table(
        {
            "tenantId": [TENANT] * 300,
            "eventTime": pa.array([start + dt.timedelta(minutes=i) for i in range(300)], pa.timestamp("us", tz="UTC")),
            "int1": list(range(300)),
        }
    )
    for table, options in (
        (events, {"row_group_size": 100}),
        (every_type_table(20), {"store_schema": False}),
        (every_type_table(20).slice(0, 0), {}),
    ):
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, **options)
        data = sink.getvalue().to_pybytes()
        length = int.from_bytes(data[-8:-4], "little")
        found.append((data[-8 - length : -8], len(data) - length - 12))
    found.append((legacy_file(), 100))
    return tuple(found)


def run_bounded(action: Callable[[], object]) -> object:
    """``action``'s result or its IntegrityError; any other exception fails the test. Time and memory are bounded."""
    tracemalloc.start()
    began = time.perf_counter()
    try:
        outcome: object = action()
    except IntegrityError as error:
        outcome = error
    finally:
        elapsed = time.perf_counter() - began
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < MAX_PEAK_BYTES, f"peak allocation {peak} bytes"
    assert elapsed < MAX_SECONDS, f"took {elapsed:.2f} s"
    return outcome


def prove_footer(footer: bytes, data_bytes: int) -> object:
    tail = footer + struct.pack("<I", len(footer)) + b"PAR1"
    outcome = run_bounded(lambda: PROVER.prove(tail, 4 + data_bytes + len(tail)))
    assert isinstance(outcome, Proof | IntegrityError)
    if isinstance(outcome, IntegrityError):
        assert str(outcome).endswith(".")
        assert len(str(outcome)) < 1000
    return outcome


# -- mutations ------------------------------------------------------------------------------------------------------
Mutation = Callable[[bytes], bytes]
position = st.integers(min_value=0, max_value=2**20)


def at(data: bytes, where: int) -> int:
    return where % (len(data) + 1)


def flip(where: int, bit: int) -> Mutation:
    def mutate(data: bytes) -> bytes:
        if not data:
            return data
        index = where % len(data)
        return data[:index] + bytes([data[index] ^ (1 << bit)]) + data[index + 1 :]

    return mutate


def truncate(where: int) -> Mutation:
    return lambda d: d[: at(d, where)]


def insert(where: int, extra: bytes) -> Mutation:
    return lambda d: d[: at(d, where)] + extra + d[at(d, where) :]


def delete(where: int, count: int) -> Mutation:
    return lambda d: d[: at(d, where)] + d[at(d, where) + count :]


def overwrite(where: int, extra: bytes) -> Mutation:
    return lambda d: d[: at(d, where)] + extra + d[at(d, where) + len(extra) :]


HUGE_VARINT = b"\xff" * 9 + b"\x01"
HUGE_LISTS = [bytes([0xF0 | wire]) + Thrift.varint(2**31 - 1) for wire in range(1, 13)]
HUGE_MAP = Thrift.varint(2**31 - 1) + bytes([0x8C])

mutation = st.one_of(
    st.builds(flip, position, st.integers(0, 7)),
    st.builds(truncate, position),
    st.builds(insert, position, st.binary(min_size=1, max_size=16)),
    st.builds(delete, position, st.integers(1, 64)),
    st.builds(overwrite, position, st.binary(min_size=1, max_size=8)),
    st.builds(insert, position, st.sampled_from([HUGE_VARINT, HUGE_MAP, *HUGE_LISTS])),
    st.builds(overwrite, position, st.sampled_from([HUGE_VARINT, HUGE_MAP, *HUGE_LISTS])),
)


@FUZZ
@given(seed=st.integers(0, 3), mutations=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_real_footers_raise_only_integrity_errors_within_bounds(seed: int, mutations: list[Mutation]) -> None:
    footer, data_bytes = seeds()[seed]
    for mutate in mutations:
        footer = mutate(footer)
    prove_footer(footer, data_bytes)


@FUZZ
@given(footer=st.binary(max_size=4096), data_bytes=st.integers(0, 2**40))
def test_random_bytes_as_a_footer_raise_only_integrity_errors_within_bounds(footer: bytes, data_bytes: int) -> None:
    prove_footer(footer, data_bytes)


@FUZZ
@given(size=st.integers(0, 2**64), last8=st.binary(min_size=0, max_size=8))
def test_any_trailer_gives_a_sane_tail_length_or_an_integrity_error(size: int, last8: bytes) -> None:
    outcome = run_bounded(lambda: PROVER.tail_length(size, last8))
    if isinstance(outcome, int):
        assert 8 < outcome <= CAP + 8
        assert outcome + 4 <= size


# -- well-formed values of unknown structure ----------------------------------------------------------------------
T = Thrift


def scalar() -> st.SearchStrategy[tuple[int, bytes]]:
    """(wire type, encoding) of a random scalar value."""
    return st.one_of(
        st.builds(lambda v: (T.BYTE, bytes([v])), st.integers(0, 255)),
        st.builds(lambda v: (T.I16, T.int(v)), st.integers(-(2**15), 2**15 - 1)),
        st.builds(lambda v: (T.I32, T.int(v)), st.integers(-(2**31), 2**31 - 1)),
        st.builds(lambda v: (T.I64, T.int(v)), st.integers(-(2**63), 2**63 - 1)),
        st.builds(lambda v: (T.DOUBLE, struct.pack("<d", v)), st.floats()),
        st.builds(lambda v: (T.BINARY, T.binary(v)), st.binary(max_size=40)),
        st.builds(lambda v: (13, v), st.binary(min_size=16, max_size=16)),  # UUID
        st.sampled_from([(T.TRUE, b""), (T.FALSE, b"")]),  # a boolean field: its value is in the type nibble
    )


def container(children: st.SearchStrategy[tuple[int, bytes]]) -> st.SearchStrategy[tuple[int, bytes]]:
    def as_struct(fields: list[tuple[int, tuple[int, bytes]]]) -> tuple[int, bytes]:
        ordered = sorted(dict(fields).items())
        return T.STRUCT, T.struct(*((fid, wire, value) for fid, (wire, value) in ordered))

    def as_list(wire: int, items: list[tuple[int, bytes]]) -> tuple[int, bytes]:
        if wire in (T.TRUE, T.FALSE):  # inside a list a boolean is a byte
            return T.LIST, T.list(wire, [bytes([w]) for w, _ in items if w in (T.TRUE, T.FALSE)])
        return T.LIST, T.list(wire, [value for item_wire, value in items if item_wire == wire])

    def as_map(pairs: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
        if not pairs:
            return T.MAP, b"\x00"
        body = b"".join(T.binary(k) + T.binary(v) for k, v in pairs)
        return T.MAP, T.varint(len(pairs)) + bytes([T.BINARY << 4 | T.BINARY]) + body

    booleans = st.builds(lambda n: (T.LIST, T.list(T.TRUE, [b"\x01", b"\x02"] * n)), st.integers(0, 10))
    return st.one_of(
        st.builds(as_struct, st.lists(st.tuples(st.integers(-(2**15), 2**15 - 1), children), max_size=6)),
        children.flatmap(
            lambda first: st.builds(lambda rest: as_list(first[0], [first, *rest]), st.lists(children, max_size=5))
        ),
        st.builds(as_map, st.lists(st.tuples(st.binary(max_size=8), st.binary(max_size=8)), max_size=4)),
        booleans,
    )


thrift_value = st.recursive(scalar(), container, max_leaves=40)


def decoded(footer: bytes, data_bytes: int) -> FileMetaData:
    tail = footer + struct.pack("<I", len(footer)) + b"PAR1"
    return decode_footer(tail, 4 + data_bytes + len(tail), max_footer_bytes=CAP)


@functools.cache
def decoded_seed(seed: int) -> FileMetaData:
    return decoded(*seeds()[seed])


@FUZZ
@given(seed=st.integers(0, 3), value=thrift_value, field_id=st.integers(10, 2**15 - 1))
def test_unknown_fields_of_any_shape_are_skipped_exactly(seed: int, value: tuple[int, bytes], field_id: int) -> None:
    footer, data_bytes = seeds()[seed]
    wire, encoded = value
    # Given the footer with an unknown field of FileMetaData appended after its known ones (explicit id)
    header = bytes([wire]) + T.int(field_id)
    extended = footer[:-1] + header + encoded + b"\x00"
    # Then it decodes to the same metadata (only the footer length differs)
    original, outcome = decoded_seed(seed), run_bounded(lambda: decoded(extended, data_bytes))
    assert isinstance(outcome, FileMetaData), outcome
    assert (outcome.leaves, outcome.row_groups, outcome.key_value_metadata) == (
        original.leaves,
        original.row_groups,
        original.key_value_metadata,
    )
