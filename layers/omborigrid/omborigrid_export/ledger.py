"""The export ledger (DynamoDB): what was asked for each tenant and date range, and how it ended.

It makes job creation idempotent and bounds the jobs in flight against the API.

Lifecycle of an entry (partition ``tenantId``, sort ``dataRange`` = ``FROM/TO``)::

    (none | FAILED | LANDED when forced) ──plan──► PENDING ──dispatch──► REQUESTING ──job id──► QUEUED
    QUEUED ──► LANDED (Download) | FAILED ("Export Failed", or the execution found failed)
    REQUESTING ──► FAILED (the POST certainly created nothing) | PENDING (stale: its outcome is unknown)

* The intent is recorded (PENDING) *before* any API call, and the job id right after it (QUEUED), so a
  retried CreateJob finds the entry instead of creating a second job.
* A REQUESTING entry whose POST outcome is unknown (the process died, or the POST timed out after it was
  sent) is only taken over after ``stale_after``, longer than any invocation lives.
* Jobs in flight (REQUESTING or QUEUED) hold a slot of a counter item, and one of their tenant's counter (a
  tenant's share of the cap, so one tenant's backfill cannot starve the others' nights); taking and giving back
  slots happen in the same DynamoDB transaction as the state change, so the counts are exact and strongly
  consistent however many invocations run at once, and a duplicate event cannot release a slot twice.

Every conditional write spells its condition out of named parts, and every DynamoDB call goes through one
translation (:func:`.dynamodb.dynamodb_errors`): a failed condition means what that write says it means (not planned,
no free slot, already finished); throttling, a conflicting transaction or an unreachable endpoint is
:class:`LedgerUnavailable` (retryable); anything else is :class:`LedgerError`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .capacity import (
    CAPACITY_KEY,
    CAPACITY_PARTITION,
    TENANT_CAPACITY_PREFIX,
    give_slots_back,
    in_flight_of,
    take_slots,
    tenants_full,
)
from .dynamodb import ConditionFailed, dynamodb_errors
from .ledger_entry import (
    FAILED,
    LANDED,
    PENDING,
    QUEUED,
    REQUESTING,
    EntryState,
    LedgerEntry,
    data_range,
    string_attribute,
)
from .models import ExportRequest

__all__ = [
    "CAPACITY_KEY",
    "FAILED",
    "LANDED",
    "PENDING",
    "QUEUED",
    "REQUESTING",
    "STATE_INDEX",
    "EntryState",
    "Ledger",
    "LedgerEntry",
]

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)


STATE_INDEX = "byState"


# Named parts of the conditional writes (``#state`` is the attribute ``state``).
ENTRY_IS_NEW = "attribute_not_exists(tenantId)"
ENTRY_FAILED = "#state = :failed"
ENTRY_LANDED = "#state = :landed"
ENTRY_PENDING = "#state = :pending"
ENTRY_REQUESTING = "#state = :requesting"
ENTRY_QUEUED = "#state = :queued"
CLAIM_HELD = "claim = :claim"
JOB_IS_CURRENT = "jobId = :job"


def all_of(*conditions: str) -> str:
    return " AND ".join(f"({c})" if " OR " in c else c for c in conditions)


def any_of(*conditions: str) -> str:
    return " OR ".join(conditions)


class Ledger:
    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table: str,
        *,
        stale_after: timedelta = timedelta(minutes=20),
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self._db = dynamodb
        self._table = table
        self._stale_after = stale_after
        self._now = now or (lambda: datetime.now(UTC))

    # -- reading ----------------------------------------------------------------------------------

    def _key(self, request: ExportRequest) -> dict[str, Any]:
        return {"tenantId": {"S": request.tenant_id}, "dataRange": {"S": data_range(request)}}

    def _item(self, request: ExportRequest) -> dict[str, Any] | None:
        with dynamodb_errors(f"read the entry of {request.label}"):
            item = self._db.get_item(TableName=self._table, Key=self._key(request), ConsistentRead=True).get("Item")
        return item or None

    def get(self, request: ExportRequest) -> LedgerEntry | None:
        item = self._item(request)
        return LedgerEntry.from_item(item) if item else None

    def entries(self, tenant_id: str, date_from: date, date_to: date) -> list[LedgerEntry]:
        """Every entry of a tenant whose range starts within [date_from, date_to]."""
        return [
            LedgerEntry.from_item(item)
            for item in self._query(
                f"list the entries of {tenant_id}",
                KeyConditionExpression="tenantId = :t AND dataRange BETWEEN :a AND :b",
                ExpressionAttributeValues={
                    ":t": {"S": tenant_id},
                    ":a": {"S": date_from.isoformat()},
                    ":b": {"S": date_to.isoformat() + "/~"},
                },
                ConsistentRead=True,
            )
        ]

    def in_state(
        self, state: EntryState, *, limit: int | None = None, except_tenants: frozenset[str] = frozenset()
    ) -> list[LedgerEntry]:
        """Entries in ``state``, oldest change first (the ``byState`` index; eventually consistent).

        With ``limit``, reading stops once that many are found: a drain of a long backfill must not read
        every pending entry each time. ``except_tenants`` (at most 100) are left out, so the tenants whose share
        is full do not hide the others' entries.
        """
        values: dict[str, Any] = {":s": {"S": state}}
        extra: dict[str, Any] = {}
        if except_tenants:
            names = sorted(except_tenants)[:100]
            values.update({f":x{n}": {"S": t} for n, t in enumerate(names)})
            extra["FilterExpression"] = f"NOT tenantId IN ({', '.join(f':x{n}' for n in range(len(names)))})"
        return [
            LedgerEntry.from_item(item)
            for item in self._query(
                f"list the {state} entries",
                IndexName=STATE_INDEX,
                KeyConditionExpression="#state = :s",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=values,
                limit=limit,
                **extra,
            )
        ]

    def tenants_at_cap(self, tenant_cap: int) -> frozenset[str]:
        """The tenants whose jobs in flight already fill their share of the cap."""
        items = self._query(
            "count each tenant's jobs in flight",
            KeyConditionExpression="tenantId = :c AND begins_with(dataRange, :p)",
            ExpressionAttributeValues={":c": {"S": CAPACITY_PARTITION}, ":p": {"S": TENANT_CAPACITY_PREFIX}},
            ConsistentRead=True,
        )
        return tenants_full(items, tenant_cap)

    def in_flight(self) -> int:
        with dynamodb_errors("count the jobs in flight"):
            item = self._db.get_item(TableName=self._table, Key=CAPACITY_KEY, ConsistentRead=True).get("Item", {})
        return in_flight_of(item)

    def _query(self, action: str, *, limit: int | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs["TableName"] = self._table
        if limit is not None:
            kwargs["Limit"] = limit
        while limit is None or len(items) < limit:
            with dynamodb_errors(action):
                page = self._db.query(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items if limit is None else items[:limit]

    # -- planning ---------------------------------------------------------------------------------

    def plan(self, request: ExportRequest, *, force: bool = False) -> LedgerEntry | None:
        """Record the intent to export ``request`` (PENDING). Returns None when planned, or the entry that
        makes it unnecessary (live, pending or landed; landed is replanned when ``force``)."""
        now = self._now()
        condition = any_of(ENTRY_IS_NEW, ENTRY_FAILED, *([ENTRY_LANDED] if force else []))
        values: dict[str, Any] = {":failed": {"S": FAILED}}
        if force:
            values[":landed"] = {"S": LANDED}
        previous = self.get(request) if force else None
        item: dict[str, Any] = {
            **self._key(request),
            "state": {"S": PENDING},
            "plannedAt": {"S": now.isoformat()},
            "updatedAt": {"S": now.isoformat()},
            "force": {"BOOL": force},
        }
        if previous is not None and previous.state == LANDED and previous.manifest_key:
            # Remembered so the forced landing can remove the files it replaces.
            item["previousManifestKey"] = {"S": previous.manifest_key}
        try:
            with dynamodb_errors(f"plan {request.label}"):
                self._db.put_item(
                    TableName=self._table,
                    Item=item,
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#state": "state"},
                    ExpressionAttributeValues=values,
                )
        except ConditionFailed:
            entry = self.get(request)
            return self.plan(request, force=force) if entry is None else entry
        return None

    # -- dispatching --------------------------------------------------------------------------------

    def dispatch(self, request: ExportRequest, *, cap: int, tenant_cap: int | None = None) -> str | None:
        """PENDING → REQUESTING, taking a slot of the cap and one of the tenant's share (``tenant_cap``, default
        the whole cap). Returns a claim token, or None when no slot is free or the entry is no longer pending
        (another invocation took it)."""
        claim = uuid.uuid4().hex
        now = self._now().isoformat()
        claim_entry: dict[str, Any] = {
            "TableName": self._table,
            "Key": self._key(request),
            "UpdateExpression": "SET #state = :requesting, claim = :claim, requestedAt = :now, updatedAt = :now",
            "ConditionExpression": ENTRY_PENDING,
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {
                ":requesting": {"S": REQUESTING},
                ":pending": {"S": PENDING},
                ":claim": {"S": claim},
                ":now": {"S": now},
            },
        }
        try:
            with dynamodb_errors(f"claim {request.label} for a new job"):
                slots = take_slots(self._table, request, cap=cap, tenant_cap=tenant_cap or cap, now=now)
                self._db.transact_write_items(TransactItems=[*slots, {"Update": claim_entry}])  # type: ignore[list-item, typeddict-item]
        except ConditionFailed:
            return None
        return claim

    def record_job(self, request: ExportRequest, claim: str, job_id: str) -> bool:
        """REQUESTING → QUEUED with the job id. False if the claim was lost meanwhile."""
        return self._update(
            request,
            "SET #state = :queued, jobId = :job, updatedAt = :now REMOVE #error",
            {":queued": {"S": QUEUED}, ":job": {"S": job_id}, ":claim": {"S": claim}},
            condition=CLAIM_HELD,
        )

    def mark_enqueued(self, request: ExportRequest, job_id: str) -> bool:
        return self._update(
            request, "SET enqueuedAt = :now, updatedAt = :now", {":job": {"S": job_id}}, condition=JOB_IS_CURRENT
        )

    def mark_create_failed(self, request: ExportRequest, claim: str, error: str) -> bool:
        """REQUESTING → FAILED when the POST certainly created nothing, giving the slot back. A failed day is
        planned again by the next nightly run (within the look-back window) or by a new request."""
        return self._finish(
            request,
            "SET #state = :failed, #error = :error, updatedAt = :now",
            {
                ":failed": {"S": FAILED},
                ":error": {"S": error[:1000]},
                ":claim": {"S": claim},
                ":requesting": {"S": REQUESTING},
            },
            condition=all_of(CLAIM_HELD, ENTRY_REQUESTING),
        )

    def fail_pending(self, request: ExportRequest, error: str) -> bool:
        """PENDING → FAILED without an API call (its tenant's token was just refused); it held no slot."""
        return self._update(
            request,
            "SET #state = :failed, #error = :error, updatedAt = :now",
            {":failed": {"S": FAILED}, ":error": {"S": error[:1000]}, ":pending": {"S": PENDING}},
            condition=ENTRY_PENDING,
        )

    def requeue_stale(self, entry: LedgerEntry) -> bool:
        """A REQUESTING entry older than ``stale_after`` goes back to PENDING and gives its slot back."""
        if entry.state != REQUESTING or entry.claim is None:
            return False
        if self._now() - entry.updated_at < self._stale_after:
            return False
        return self._finish(
            entry.request,
            "SET #state = :pending, updatedAt = :now REMOVE claim",
            {":pending": {"S": PENDING}, ":claim": {"S": entry.claim}, ":requesting": {"S": REQUESTING}},
            condition=all_of(CLAIM_HELD, ENTRY_REQUESTING),
        )

    # -- outcomes ---------------------------------------------------------------------------------

    def mark_landed(self, request: ExportRequest, job_id: str, key: str, manifest_key: str) -> bool:
        return self._finish(
            request,
            "SET #state = :landed, landedAt = :now, updatedAt = :now, #key = :key, manifestKey = :manifest "
            "REMOVE #error, previousManifestKey, #transfer",
            {
                ":landed": {"S": LANDED},
                ":job": {"S": job_id},
                ":key": {"S": key},
                ":manifest": {"S": manifest_key},
                ":queued": {"S": QUEUED},
            },
            condition=all_of(JOB_IS_CURRENT, ENTRY_QUEUED),
            names={"#key": "key", "#transfer": "transfer"},
        )

    def mark_failed(self, request: ExportRequest, job_id: str, error: str) -> bool:
        return self._finish(
            request,
            "SET #state = :failed, #error = :error, updatedAt = :now",
            {":failed": {"S": FAILED}, ":error": {"S": error[:1000]}, ":job": {"S": job_id}, ":queued": {"S": QUEUED}},
            condition=all_of(JOB_IS_CURRENT, ENTRY_QUEUED),
        )

    def save_checkpoint(self, request: ExportRequest, job_id: str, checkpoint: dict[str, Any]) -> bool:
        """Keep the transfer's checkpoint so a killed Download invocation can resume instead of restarting."""
        return self._update(
            request,
            "SET #transfer = :transfer, updatedAt = :now",
            {":transfer": {"S": json.dumps(checkpoint)}, ":job": {"S": job_id}, ":queued": {"S": QUEUED}},
            condition=all_of(JOB_IS_CURRENT, ENTRY_QUEUED),
            names={"#transfer": "transfer"},
        )

    def load_checkpoint(self, request: ExportRequest, job_id: str) -> dict[str, Any] | None:
        item = self._item(request)
        if not item or string_attribute(item, "jobId") != job_id or not string_attribute(item, "transfer"):
            return None
        try:
            loaded: dict[str, Any] = json.loads(string_attribute(item, "transfer") or "")
        except ValueError:
            logger.warning("the saved transfer checkpoint of %s is unreadable; starting over", request.label)
            return None
        return loaded

    def previous_manifest_key(self, request: ExportRequest) -> str | None:
        item = self._item(request)
        return string_attribute(item, "previousManifestKey") if item else None

    # -- plumbing ---------------------------------------------------------------------------------

    def _update_kwargs(
        self,
        request: ExportRequest,
        expression: str,
        values: dict[str, Any],
        condition: str,
        names: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        attribute_names = {"#state": "state", "#error": "error", **(names or {})}
        text = expression + " " + condition
        used = {n: v for n, v in attribute_names.items() if n in text}
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Key": self._key(request),
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": {":now": {"S": self._now().isoformat()}, **values},
        }
        if used:
            kwargs["ExpressionAttributeNames"] = used
        return kwargs

    def _update(
        self,
        request: ExportRequest,
        expression: str,
        values: dict[str, Any],
        *,
        condition: str,
        names: dict[str, str] | None = None,
    ) -> bool:
        """A conditional update; False when the entry changed meanwhile (the condition failed)."""
        kwargs = self._update_kwargs(request, expression, values, condition, names)
        try:
            with dynamodb_errors(f"update the entry of {request.label}"):
                self._db.update_item(**kwargs)
        except ConditionFailed:
            logger.warning("ledger entry for %s changed meanwhile; update skipped", request.label)
            return False
        return True

    def _finish(
        self,
        request: ExportRequest,
        expression: str,
        values: dict[str, Any],
        *,
        condition: str,
        names: dict[str, str] | None = None,
    ) -> bool:
        """A state change that ends a job in flight, made together with giving its slot back. False when the
        entry was already finished (its condition failed): a duplicate outcome never frees a slot twice."""
        update = self._update_kwargs(request, expression, values, condition, names)
        try:
            with dynamodb_errors(f"finish the entry of {request.label}"):
                self._db.transact_write_items(
                    TransactItems=[{"Update": update}, *give_slots_back(self._table, request)]  # type: ignore[list-item, typeddict-item]
                )
        except ConditionFailed:
            logger.info("ledger entry for %s was already finished; nothing to do", request.label)
            return False
        return True
