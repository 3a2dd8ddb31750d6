"""The numbers that bound a transfer: S3's multipart limits, how parts are sized, and the time margins.

Stated once here; everything else in the package refers to these names.
"""

from __future__ import annotations

import math

from ..errors import IntegrityError
from ..settings import MIB

#: S3's limits for one multipart upload.
MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 * 1024**4
#: How much is read from a response at a time (also the granularity of progress reports).
CHUNK = 1 * MIB
#: Redirects followed by one download request (each target is checked before it is connected to).
MAX_REDIRECTS = 5
#: Seconds kept in hand when a deadline is given, on top of twice the slowest part.
DEADLINE_MARGIN_SECONDS = 5.0
#: How often a running transfer hands a checkpoint to ``on_checkpoint`` (for crash recovery).
CHECKPOINT_EVERY_SECONDS = 20.0


def choose_part_size(size: int, minimum: int) -> int:
    """At least ``minimum``, large enough for ``size`` to fit in 10,000 parts, a whole number of MiB."""
    if size > MAX_OBJECT_SIZE:
        raise IntegrityError(f"The export is {size} bytes, more than S3's 5 TiB object limit.")
    needed = math.ceil(size / MAX_PARTS) if size else minimum
    part = max(minimum, needed)
    return math.ceil(part / MIB) * MIB


def part_count(size: int, part_size: int) -> int:
    """How many parts a file of ``size`` bytes has (at least one)."""
    return max(1, math.ceil(size / part_size))


def part_range(number: int, part_size: int, size: int) -> tuple[int, int]:
    """The first and last byte (inclusive) of part ``number`` (from 1)."""
    start = (number - 1) * part_size
    return start, min(start + part_size, size) - 1
