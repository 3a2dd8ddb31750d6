"""Full-object CRC32 from per-part CRC32s.

S3 records a FULL_OBJECT CRC32 for a multipart upload and, on AWS, checks the value we send on
CompleteMultipartUpload against the bytes it received. Parts are read and uploaded out of order, so the
object's CRC is combined from the parts' CRCs (zlib's crc32_combine, in pure Python) instead of hashing
the stream in order. Every part of one size shares one precomputed operator, so combining is cheap.

The CRC32 of each part is zlib-ng's (the same CRC-32 as zlib's, computed with the CPU's carry-less multiply
or CRC instructions): Python's zlib module links the system's zlib, whose CRC32 runs at about 4 GiB/s and
was the largest single cost of a transfer after TLS (0.3-0.5 CPU-s per GiB; zlib-ng about 0.05; BENCHMARKS.md).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from zlib_ng import zlib_ng

_POLY = 0xEDB88320  # CRC-32 (IEEE), reflected


def _multmodp(a: int, b: int) -> int:
    """Multiply a and b modulo the CRC polynomial (reflected bit order)."""
    m = 1 << 31
    p = 0
    while a:
        if a & m:
            p ^= b
            a ^= m
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return p


def _build_x2n_table() -> list[int]:
    table = []
    p = 1 << 30  # x^1
    for _ in range(64):
        table.append(p)
        p = _multmodp(p, p)
    return table


_X2N = _build_x2n_table()


def shift_operator(length: int) -> int:
    """x^(8*length) mod P: what appending ``length`` bytes does to a CRC."""
    p = 1 << 31  # x^0
    n, k = length, 3
    while n:
        if n & 1:
            p = _multmodp(_X2N[k % 64], p)
        n >>= 1
        k += 1
    return p


def crc32_combine(crc1: int, crc2: int, len2: int, operator: int | None = None) -> int:
    """CRC of A+B given CRC(A), CRC(B) and len(B)."""
    op = shift_operator(len2) if operator is None else operator
    return _multmodp(op, crc1) ^ crc2


def combine_parts(parts: Iterable[tuple[int, int]]) -> int:
    """CRC32 of the concatenation of parts given as (crc, length), in order."""
    crc = 0
    operators: dict[int, int] = {}
    for part_crc, length in parts:
        op = operators.get(length)
        if op is None:
            op = operators[length] = shift_operator(length)
        crc = crc32_combine(crc, part_crc, length, op)
    return crc


def crc32_of(data: bytes | bytearray | memoryview, running: int = 0) -> int:
    """CRC32 of ``data``; of what came before and ``data`` when ``running`` is the CRC32 of what came before."""
    return zlib_ng.crc32(data, running) & 0xFFFFFFFF


def to_base64(crc: int) -> str:
    """The form S3 uses in ChecksumCRC32 fields."""
    return base64.b64encode(crc.to_bytes(4, "big")).decode("ascii")


def from_base64(value: str) -> int:
    return int.from_bytes(base64.b64decode(value), "big")
