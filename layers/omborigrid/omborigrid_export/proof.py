"""What a landing proves about its content, and the interface that proves it.

Size and checksum show that the bytes arrived as the API served them; they say nothing about whether those
bytes are a whole parquet file holding the tenant and the days that were asked for. A :class:`ContentProver`
reads the file's footer (the parquet ``FileMetaData`` at the end of the file) before the file is published
and either returns a :class:`Proof` or raises :class:`~omborigrid_export.errors.IntegrityError`.

The transfer calls it in two steps, because only the last 8 bytes say how long the footer is:
``tail_length(size, last8)`` names how many trailing bytes are needed (footer + length + magic, bounded by a
cap), and ``prove(tail, size)`` decodes them. With Range that is two small reads before any byte is
uploaded; in a stream it is the tail kept in memory before the completion; for archive members, the tail of
the inflated member. A proof never needs a second full read of the file.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from .models import iso_utc


class CheckResult(enum.StrEnum):
    """The outcome of one named check (a failed check is an IntegrityError, never a value)."""

    PASSED = "passed"
    #: The file holds no evidence either way (e.g. no statistics on the tenant column): recorded, not failed,
    #: unless the strict policy makes it a failure.
    NOT_VERIFIED = "not verified"


@dataclass(frozen=True, slots=True)
class Column:
    """One leaf column of the schema, in the canonical form the fingerprint is computed from."""

    path: str
    physical_type: str
    logical_type: str | None
    repetition: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "physicalType": self.physical_type,
            "logicalType": self.logical_type,
            "repetition": self.repetition,
        }


@dataclass(frozen=True, slots=True)
class Proof:
    """What the footer of one landed parquet file showed. Travels in the manifest and "Export Completed"."""

    rows: int
    row_groups: int
    #: ``sha256:<hex>`` of the canonical schema description (see the parquet footer module).
    schema_fingerprint: str
    columns: tuple[Column, ...]
    created_by: str | None
    #: The event-time range from column statistics, when the file has such a column with statistics.
    event_time_min: datetime | None
    event_time_max: datetime | None
    #: The tenant values the tenant column's statistics show (min and max), when present.
    tenant_ids: tuple[str, ...]
    checks: Mapping[str, CheckResult] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "rowGroups": self.row_groups,
            "schemaFingerprint": self.schema_fingerprint,
            "columns": [c.to_dict() for c in self.columns],
            "createdBy": self.created_by,
            "eventTimeMin": iso_utc(self.event_time_min),
            "eventTimeMax": iso_utc(self.event_time_max),
            "tenantIds": list(self.tenant_ids),
            "checks": {name: result.value for name, result in sorted(self.checks.items())},
        }


class ContentProver(Protocol):
    """Proves one file's content from its tail; raises IntegrityError when the file is not what was asked."""

    #: The most trailing bytes ``tail_length`` may ask for: what a stream or an archive member keeps in memory
    #: to prove it (the one statement of that bound).
    @property
    def max_tail_bytes(self) -> int: ...

    def tail_length(self, size: int, last8: bytes) -> int:
        """How many trailing bytes ``prove`` needs, from the file's size and its last 8 bytes."""
        ...

    def prove(self, tail: bytes, size: int) -> Proof:
        """Decode and check the footer held in ``tail`` (exactly the last ``tail_length`` bytes)."""
        ...
