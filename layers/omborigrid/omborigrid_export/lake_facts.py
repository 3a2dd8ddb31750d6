"""The facts each landing leaves in the ledger table: rows, bytes and schema per tenant, table and day.

A manifest in S3 says what one export landed; answering "what does this tenant's table usually hold?" or "what was
the schema the day before?" from manifests would mean listing and reading objects on every landing. So each landing
also keeps one small item per (tenant, table, day) in the ledger table, its own item type beside the ledger's
entries:

* partition ``#facts#{tenantId}`` — never a tenant id (tenant ids do not start with ``#``), so the ledger's queries
  of a tenant never meet facts, and a fact has no ``state``, so it never appears in the ``byState`` index;
* sort ``{day}#{table}`` — one range query gives every table of a tenant over a date range (``status``), and the
  days before a given day newest first (the previous schema, the volume baseline).

A forced re-landing of a day writes its fact again (the last landing is the fact). Every call goes through
:func:`.dynamodb.dynamodb_errors`, so DynamoDB's failures reach callers as ``LedgerUnavailable``/``LedgerError``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from .dynamodb import dynamodb_errors
from .manifest import Manifest, ManifestFile
from .proof import Column
from .schema_diff import columns_from_dicts

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

#: The table name of a single-file delivery (the layout's name for it too).
SINGLE_FILE_TABLE = "export"
FACTS_PARTITION_PREFIX = "#facts#"


@dataclass(frozen=True, slots=True, kw_only=True)
class LandingFact:
    """What one landing showed for one table and day. ``rows``/``schema`` are None when no proof was made."""

    tenant_id: str
    table: str
    day: date
    rows: int | None
    bytes: int
    files: int
    schema_fingerprint: str | None
    columns: tuple[Column, ...]
    event_time_min: str | None
    event_time_max: str | None
    job_id: str
    manifest_key: str
    landed_at: datetime
    #: What the signals made of the day (``volume.Verdict`` value; ``schema_diff.Compatibility`` value).
    volume: str | None = None
    schema_change: str | None = None

    @property
    def empty(self) -> bool:
        return self.rows == 0

    def judged(self, *, volume: str | None, schema_change: str | None) -> LandingFact:
        return replace(self, volume=volume, schema_change=schema_change)

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "tenantId": {"S": FACTS_PARTITION_PREFIX + self.tenant_id},
            "dataRange": {"S": sort_key(self.day, self.table)},
            "factTenantId": {"S": self.tenant_id},
            "tableName": {"S": self.table},
            "day": {"S": self.day.isoformat()},
            "bytes": {"N": str(self.bytes)},
            "files": {"N": str(self.files)},
            "jobId": {"S": self.job_id},
            "manifestKey": {"S": self.manifest_key},
            "landedAt": {"S": self.landed_at.isoformat()},
            "columns": {"S": json.dumps([c.to_dict() for c in self.columns], separators=(",", ":"))},
        }
        optional = {
            "schemaFingerprint": self.schema_fingerprint,
            "eventTimeMin": self.event_time_min,
            "eventTimeMax": self.event_time_max,
            "volumeVerdict": self.volume,
            "schemaChange": self.schema_change,
        }
        item.update({name: {"S": value} for name, value in optional.items() if value is not None})
        if self.rows is not None:
            item["rows"] = {"N": str(self.rows)}
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> LandingFact:
        def text(name: str) -> str | None:
            value = item.get(name, {}).get("S")
            return value if isinstance(value, str) else None

        rows = item.get("rows", {}).get("N")
        return cls(
            tenant_id=item["factTenantId"]["S"],
            table=item["tableName"]["S"],
            day=date.fromisoformat(item["day"]["S"]),
            rows=None if rows is None else int(rows),
            bytes=int(item["bytes"]["N"]),
            files=int(item["files"]["N"]),
            schema_fingerprint=text("schemaFingerprint"),
            columns=columns_from_dicts(json.loads(item["columns"]["S"])),
            event_time_min=text("eventTimeMin"),
            event_time_max=text("eventTimeMax"),
            job_id=item["jobId"]["S"],
            manifest_key=item["manifestKey"]["S"],
            landed_at=datetime.fromisoformat(item["landedAt"]["S"]),
            volume=text("volumeVerdict"),
            schema_change=text("schemaChange"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The fact as ``status --json`` shows it."""
        return {
            "table": self.table,
            "day": self.day.isoformat(),
            "rows": self.rows,
            "bytes": self.bytes,
            "files": self.files,
            "empty": self.empty,
            "schemaFingerprint": self.schema_fingerprint,
            "eventTimeMin": self.event_time_min,
            "eventTimeMax": self.event_time_max,
            "volume": self.volume,
            "schemaChange": self.schema_change,
        }


def previous_schema(history: Sequence[LandingFact]) -> LandingFact | None:
    """The newest fact of ``history`` (newest first) that has a schema: what a day's schema is compared with."""
    return next((f for f in history if f.schema_fingerprint is not None), None)


def sort_key(day: date, table: str) -> str:
    return f"{day.isoformat()}#{table}"


def facts_of(manifest: Manifest) -> list[LandingFact]:
    """One fact per (table, day) the manifest landed: an archive's members grouped by their table and day; a
    single file is the table ``export`` of the first requested day."""
    groups: dict[tuple[str, date], list[ManifestFile]] = {}
    for file in manifest.files:
        table = file.table or SINGLE_FILE_TABLE
        groups.setdefault((table, file.data_date or manifest.date_from), []).append(file)
    return [_fact(manifest, table, day, files) for (table, day), files in groups.items()]


def _fact(manifest: Manifest, table: str, day: date, files: Sequence[ManifestFile]) -> LandingFact:
    proofs = [f.proof for f in files]
    proven = [p for p in proofs if p is not None]
    complete = len(proven) == len(proofs)
    fingerprints = {str(p.get("schemaFingerprint")) for p in proven}
    rows = [p.get("rows") for p in proven]
    starts = [str(p["eventTimeMin"]) for p in proven if p.get("eventTimeMin")]
    ends = [str(p["eventTimeMax"]) for p in proven if p.get("eventTimeMax")]
    columns = columns_from_dicts(proven[0].get("columns") or []) if proven else ()
    return LandingFact(
        tenant_id=manifest.tenant_id,
        table=table,
        day=day,
        rows=sum(r for r in rows if isinstance(r, int)) if complete and rows else None,
        bytes=sum(f.bytes for f in files),
        files=len(files),
        # One table's files of one day with different schemas have no one fingerprint.
        schema_fingerprint=fingerprints.pop() if complete and len(fingerprints) == 1 else None,
        columns=columns,
        event_time_min=min(starts) if starts else None,
        event_time_max=max(ends) if ends else None,
        job_id=manifest.job_id,
        manifest_key=manifest.manifest_key,
        landed_at=manifest.timings.landed_at,
    )


class LakeFacts:
    """The facts kept in the ledger table (the same table and client as :class:`~.ledger.Ledger`)."""

    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def record(self, fact: LandingFact) -> None:
        with dynamodb_errors(f"keep the facts of {fact.tenant_id} {fact.table} {fact.day}"):
            self._db.put_item(TableName=self._table, Item=fact.to_item())

    def between(self, tenant_id: str, date_from: date, date_to: date) -> list[LandingFact]:
        """Every table's facts of ``tenant_id`` for the days in [date_from, date_to], oldest first."""
        return list(
            self._facts(
                f"read the facts of {tenant_id} from {date_from} to {date_to}",
                KeyConditionExpression="tenantId = :p AND dataRange BETWEEN :a AND :b",
                ExpressionAttributeValues={
                    ":p": {"S": FACTS_PARTITION_PREFIX + tenant_id},
                    ":a": {"S": date_from.isoformat()},
                    ":b": {"S": date_to.isoformat() + "#~"},
                },
            )
        )

    def before(self, tenant_id: str, table: str, day: date, *, limit: int) -> list[LandingFact]:
        """The last ``limit`` landed days of ``table`` before ``day``, newest first."""
        return self._nearest(tenant_id, table, day, limit=limit, later=False)

    def next_after(self, tenant_id: str, table: str, day: date) -> LandingFact | None:
        """The first landed day of ``table`` after ``day`` (a backfill lands days out of order)."""
        found = self._nearest(tenant_id, table, day, limit=1, later=True)
        return found[0] if found else None

    def _nearest(self, tenant_id: str, table: str, day: date, *, limit: int, later: bool) -> list[LandingFact]:
        found: list[LandingFact] = []
        for fact in self._facts(
            f"read the history of {tenant_id} {table} {'after' if later else 'before'} {day}",
            KeyConditionExpression=f"tenantId = :p AND dataRange {'>' if later else '<'} :d",
            FilterExpression="tableName = :t",
            ExpressionAttributeValues={
                ":p": {"S": FACTS_PARTITION_PREFIX + tenant_id},
                # Every sort key of ``day`` sorts below "{day}#~" and above "{day}".
                ":d": {"S": day.isoformat() + ("#~" if later else "")},
                ":t": {"S": table},
            },
            ScanIndexForward=later,
        ):
            found.append(fact)
            if len(found) >= limit:
                break
        return found

    def _facts(self, action: str, **kwargs: Any) -> Iterator[LandingFact]:
        kwargs |= {"TableName": self._table, "ConsistentRead": True}
        while True:
            with dynamodb_errors(action):
                page = self._db.query(**kwargs)
            yield from (LandingFact.from_item(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
