"""The content proof of a landing, read from the file's tail the two ways a transfer can get it.

The prover (see :mod:`omborigrid_export.proof`) first names how many trailing bytes it needs from the last 8,
then proves the file from exactly those. With Range, that is two small ranged reads made before any part is
uploaded, so a bad file is refused before a byte of it reaches S3 (and again on every resume: a checkpoint
carries no proof). From a stream that ignores Range, it is the tail held in memory while the stream passed,
checked before the upload is completed; a footer longer than what was held cannot be verified.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import IntegrityError
from ..proof import ContentProver, Proof
from .buffers import RollingTail

#: The magic and footer length at the end of a parquet file: what ``tail_length`` is given.
LAST_BYTES = 8
#: Reads bytes start..end (inclusive) of the file.
RangeReader = Callable[[int, int], bytes]


def prove_with_ranges(prover: ContentProver, size: int, read_range: RangeReader) -> Proof:
    last = read_range(max(0, size - LAST_BYTES), size - 1)
    length = _needed(prover, size, last)
    tail = last[len(last) - length :] if length <= len(last) else read_range(size - length, size - 1)
    return prover.prove(tail, size)


def prove_from_stream_tail(prover: ContentProver, size: int, tail: RollingTail) -> Proof:
    length = _needed(prover, size, tail.last(min(LAST_BYTES, size)))
    if length > len(tail):
        raise IntegrityError(
            f"The file's footer is in its last {length} bytes, more than the {tail.keep} bytes kept from a "
            "download that does not serve byte ranges; its content cannot be verified."
        )
    return prover.prove(tail.last(length), size)


def _needed(prover: ContentProver, size: int, last: bytes) -> int:
    length = prover.tail_length(size, last)
    if not 0 < length <= size:
        raise IntegrityError(f"The content check asked for the last {length} bytes of a {size}-byte file.")
    return length
