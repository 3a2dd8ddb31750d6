"""What Athena will make of a changed schema: the landed columns checked against the Glue table's columns.

A breaking change between two days is a fact about the files; whether queries break depends on the table Athena
reads them through. With the catalog on (``EnableCatalog``), the Glue table's columns are the ones template.yaml
declares (one description, checked against the simulator's schemas by ``tests/test_template.py``); a landed column
whose type differs from the catalog's (``int1`` landing as a string where the table says ``bigint``) makes Athena
fail on that day. So a "Schema Changed" that is breaking also carries the conflicts with the catalog.

With ``SchemaChangePolicy=land`` the check runs after the day is published (the file is already under its key when
the signals are judged) and is advice, never a reason to fail the landing. With ``quarantine`` the gate
(:mod:`.schema_gate`) asks it before publication, and a conflict holds the file back. Either way a Glue table that
cannot be read is reported as not checked, with the reason (and holds nothing back).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .proof import Column
from .redact import describe_exception

logger = logging.getLogger(__name__)

_BY_LOGICAL = {"STRING": "string", "UTF8": "string", "JSON": "string", "ENUM": "string", "DATE": "date"}
_BY_PHYSICAL = {"INT64": "bigint", "INT32": "int", "DOUBLE": "double", "FLOAT": "float", "BOOLEAN": "boolean"}
_INT_WIDTHS = {"8": "tinyint", "16": "smallint", "32": "int", "64": "bigint"}
_INT_LOGICAL = re.compile(r"^INT\((\d+)")


def athena_type(column: Column) -> str | None:
    """The Athena (Hive) type a parquet leaf column reads as, or None when this check does not know it."""
    logical = (column.logical_type or "").upper()
    name = logical.split("(", 1)[0]
    if name in _BY_LOGICAL:
        return _BY_LOGICAL[name]
    if name == "TIMESTAMP":
        return "timestamp"
    width = _INT_LOGICAL.match(logical)
    if width:
        return _INT_WIDTHS.get(width.group(1))
    return _BY_PHYSICAL.get(column.physical_type) if not logical else None


@dataclass(frozen=True, slots=True)
class CatalogConflict:
    column: str
    landed: str
    catalog: str

    def to_dict(self) -> dict[str, str]:
        return {"column": self.column, "landedType": self.landed, "catalogType": self.catalog}


@dataclass(frozen=True, slots=True)
class CatalogCheck:
    database: str
    table: str
    checked: bool
    conflicts: tuple[CatalogConflict, ...] = ()
    #: Why the table could not be checked (checked is False).
    reason: str | None = None

    def describe_conflicts(self) -> str:
        """The conflicts as a clause: "int1 is string, the table says bigint" ("" when there are none)."""
        return ", ".join(f"{c.column} is {c.landed}, the table says {c.catalog}" for c in self.conflicts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "table": self.table,
            "checked": self.checked,
            "conflicts": [c.to_dict() for c in self.conflicts],
            "reason": self.reason,
        }


def conflicts_with(columns: Sequence[Column], catalog: Sequence[tuple[str, str]]) -> tuple[CatalogConflict, ...]:
    """Landed columns whose Athena type differs from the catalog column of the same name (Glue lower-cases names;
    a column the catalog lacks is invisible to Athena, one the file lacks reads as null: neither conflicts)."""
    declared = {name.lower(): kind.lower() for name, kind in catalog}
    found = []
    for column in columns:
        expected = declared.get(column.path.lower())
        landed = athena_type(column)
        if expected is not None and landed is not None and landed != expected:
            found.append(CatalogConflict(column.path, landed, expected))
    return tuple(found)


class Catalog:
    """The Glue database the stack created (``EnableCatalog``): one table per landed table name."""

    def __init__(self, glue: Any, database: str) -> None:
        # ``Any``: the Glue stubs are not among the dev dependencies; get_table is the one call made.
        self._glue = glue
        self.database = database

    def check(self, table: str, columns: Sequence[Column]) -> CatalogCheck:
        try:
            found = self._glue.get_table(DatabaseName=self.database, Name=table)["Table"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "EntityNotFoundException":
                return CatalogCheck(self.database, table, False, reason="the catalog has no such table")
            return self._unread(table, exc)
        except BotoCoreError as exc:
            return self._unread(table, exc)
        declared = [
            (c["Name"], c["Type"]) for c in found.get("StorageDescriptor", {}).get("Columns", []) if "Type" in c
        ]
        return CatalogCheck(self.database, table, True, conflicts_with(columns, declared))

    def _unread(self, table: str, exc: Exception) -> CatalogCheck:
        reason = f"the Glue table could not be read: {describe_exception(exc)}"
        logger.warning("catalog check of %s.%s skipped: %s", self.database, table, reason)
        return CatalogCheck(self.database, table, False, reason=reason)
