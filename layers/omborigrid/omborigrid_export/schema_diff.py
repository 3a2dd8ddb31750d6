"""What changed between two landed schemas of one table, and whether the lake's readers survive it.

A schema fingerprint says *that* a day's file differs from the day before; a person needs to know *what* and
*whether it breaks queries*. Athena (and Spark, Trino) read every day of a table through one table schema: a new
nullable column is absorbed (older files read it as null), but a removed column, a column whose type changed
(``int1`` from INT64 to a string) or one that became repeated makes the reader fail on some files
(``HIVE_PARTITION_SCHEMA_MISMATCH``) or read garbage. So a change is *additive* when every column of the old
schema is still there with the same type and repetition (a REQUIRED column that became OPTIONAL included:
the table already reads it as nullable), and *breaking* otherwise.

The columns compared are the proof's leaf columns (:class:`~.proof.Column`): path, physical type, logical type,
repetition — the same canonical description the fingerprint is computed from.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import IntegrityError
from .proof import Column


class ChangeKind(enum.StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    TYPE_CHANGED = "typeChanged"
    REPETITION_CHANGED = "repetitionChanged"


class Compatibility(enum.StrEnum):
    ADDITIVE = "additive"
    BREAKING = "breaking"


@dataclass(frozen=True, slots=True)
class ColumnChange:
    """One column that differs; ``before``/``after`` is None for an added/removed column."""

    path: str
    kind: ChangeKind
    before: Column | None
    after: Column | None

    @property
    def compatibility(self) -> Compatibility:
        if self.kind is ChangeKind.ADDED:
            return Compatibility.ADDITIVE
        relaxed = (
            self.kind is ChangeKind.REPETITION_CHANGED
            and self.before is not None
            and self.after is not None
            and (self.before.repetition, self.after.repetition) == ("REQUIRED", "OPTIONAL")
        )
        return Compatibility.ADDITIVE if relaxed else Compatibility.BREAKING

    def describe(self) -> str:
        """One clause a person reads: "int1 changed type from INT64 to BYTE_ARRAY (STRING)"."""
        before, after = self.before, self.after
        if before is None and after is not None:
            return f"{self.path} was added ({type_name(after)}, {after.repetition})"
        if after is None and before is not None:
            return f"{self.path} was removed (it was {type_name(before)})"
        if before is not None and after is not None and self.kind is ChangeKind.TYPE_CHANGED:
            return f"{self.path} changed type from {type_name(before)} to {type_name(after)}"
        if before is not None and after is not None:
            return f"{self.path} changed from {before.repetition} to {after.repetition}"
        return f"{self.path} changed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.path,
            "change": self.kind.value,
            "compatibility": self.compatibility.value,
            "before": None if self.before is None else self.before.to_dict(),
            "after": None if self.after is None else self.after.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class SchemaDiff:
    changes: tuple[ColumnChange, ...]

    @property
    def compatibility(self) -> Compatibility:
        breaking = any(c.compatibility is Compatibility.BREAKING for c in self.changes)
        return Compatibility.BREAKING if breaking else Compatibility.ADDITIVE

    @property
    def is_breaking(self) -> bool:
        return self.compatibility is Compatibility.BREAKING

    def of_kind(self, kind: ChangeKind) -> list[ColumnChange]:
        return [c for c in self.changes if c.kind is kind]

    def describe(self) -> str:
        """The whole change in one sentence (without a final full stop)."""
        if not self.changes:
            return "the columns are the same (only their order or the file's metadata differ)"
        return "; ".join(c.describe() for c in self.changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "compatibility": self.compatibility.value,
            "added": [c.to_dict() for c in self.of_kind(ChangeKind.ADDED)],
            "removed": [c.to_dict() for c in self.of_kind(ChangeKind.REMOVED)],
            "typeChanged": [c.to_dict() for c in self.of_kind(ChangeKind.TYPE_CHANGED)],
            "repetitionChanged": [c.to_dict() for c in self.of_kind(ChangeKind.REPETITION_CHANGED)],
            "summary": self.describe(),
        }


def type_name(column: Column) -> str:
    """``INT64`` or ``BYTE_ARRAY (STRING)``: the physical type, with the logical one when there is one."""
    return f"{column.physical_type} ({column.logical_type})" if column.logical_type else column.physical_type


def diff_schemas(before: Sequence[Column], after: Sequence[Column]) -> SchemaDiff:
    """The changes from ``before`` to ``after``, in the order of ``after`` (removed columns last)."""
    old = {c.path: c for c in before}
    new = {c.path: c for c in after}
    changes: list[ColumnChange] = []
    for path, column in new.items():
        previous = old.get(path)
        if previous is None:
            changes.append(ColumnChange(path, ChangeKind.ADDED, None, column))
        elif (previous.physical_type, previous.logical_type) != (column.physical_type, column.logical_type):
            changes.append(ColumnChange(path, ChangeKind.TYPE_CHANGED, previous, column))
        elif previous.repetition != column.repetition:
            changes.append(ColumnChange(path, ChangeKind.REPETITION_CHANGED, previous, column))
    changes.extend(ColumnChange(path, ChangeKind.REMOVED, c, None) for path, c in old.items() if path not in new)
    return SchemaDiff(tuple(changes))


def columns_from_dicts(items: Iterable[Any]) -> tuple[Column, ...]:
    """Columns as ``Column.to_dict`` wrote them (a manifest's proof, a kept fact). IntegrityError if not."""
    columns: list[Column] = []
    for item in items:
        if not isinstance(item, Mapping) or not all(
            isinstance(item.get(name), str) for name in ("path", "physicalType", "repetition")
        ):
            raise IntegrityError(f"A column description {item!r} lacks its path, physical type or repetition.")
        logical = item.get("logicalType")
        columns.append(
            Column(
                path=item["path"],
                physical_type=item["physicalType"],
                logical_type=logical if isinstance(logical, str) else None,
                repetition=item["repetition"],
            )
        )
    return tuple(columns)
