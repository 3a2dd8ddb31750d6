"""The export ledger (DynamoDB): which tenant/day was requested, with which job, and how it ended.

It makes job creation idempotent. The intent (tenant, dates) is claimed with a conditional write
*before* the POST, and the job id recorded after it, so a CreateJob retried after a timeout finds the
claim instead of creating a second job. A claim whose POST outcome is unknown (the process died between
the two writes) is only taken over after ``stale_after`` seconds, longer than any invocation lives.

Item: tenantId (partition), dataRange "FROM/TO" (sort), state, jobId, timestamps, error, key.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from .errors import TransferFailed
from .models import ExportRequest
from .redact import describe_exception

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

REQUESTING = "REQUESTING"
QUEUED = "QUEUED"
LANDED = "LANDED"
FAILED = "FAILED"
#: States after which a day may be requested again without force.
RETRYABLE_STATES = frozenset({FAILED})


def data_range(request: ExportRequest) -> str:
    return f"{request.date_from.isoformat()}/{request.date_to.isoformat()}"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    tenant_id: str
    date_from: date
    date_to: date
    state: str
    job_id: str | None
    claim: str | None
    updated_at: datetime
    enqueued: bool
    error: str | None = None
    key: str | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> LedgerEntry:
        date_from, _, date_to = item["dataRange"]["S"].partition("/")
        return cls(
            tenant_id=item["tenantId"]["S"],
            date_from=date.fromisoformat(date_from),
            date_to=date.fromisoformat(date_to),
            state=item["state"]["S"],
            job_id=item.get("jobId", {}).get("S"),
            claim=item.get("claim", {}).get("S"),
            updated_at=datetime.fromisoformat(item["updatedAt"]["S"]),
            enqueued="enqueuedAt" in item,
            error=item.get("error", {}).get("S"),
            key=item.get("key", {}).get("S"),
        )


class Claimed(Exception):
    """The day is already claimed by a live or landed export."""

    def __init__(self, entry: LedgerEntry) -> None:
        super().__init__(entry.state)
        self.entry = entry


class Ledger:
    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table: str,
        *,
        stale_after: timedelta = timedelta(minutes=20),
        now: Any = None,
    ) -> None:
        self._db = dynamodb
        self._table = table
        self._stale_after = stale_after
        self._now = now or (lambda: datetime.now(UTC))

    def _key(self, request: ExportRequest) -> dict[str, Any]:
        return {"tenantId": {"S": request.tenant_id}, "dataRange": {"S": data_range(request)}}

    def get(self, request: ExportRequest) -> LedgerEntry | None:
        try:
            item = self._db.get_item(TableName=self._table, Key=self._key(request), ConsistentRead=True).get("Item")
        except ClientError as exc:
            raise TransferFailed(f"Could not read the export ledger: {describe_exception(exc)}") from None
        return LedgerEntry.from_item(item) if item else None

    def claim(self, request: ExportRequest, *, force: bool = False) -> str:
        """Claim the day for a new job. Returns a claim token; raises :class:`Claimed` if it is taken."""
        token = uuid.uuid4().hex
        now = self._now()
        stale = (now - self._stale_after).isoformat()
        condition = (
            "attribute_not_exists(tenantId) OR #state = :failed OR (#state = :requesting AND updatedAt < :stale)"
        )
        values: dict[str, Any] = {":failed": {"S": FAILED}, ":requesting": {"S": REQUESTING}, ":stale": {"S": stale}}
        if force:
            # A forced re-export may replace a landed day, but never races a job that is still live.
            condition += " OR #state = :landed"
            values[":landed"] = {"S": LANDED}
        try:
            self._db.put_item(
                TableName=self._table,
                Item={
                    **self._key(request),
                    "state": {"S": REQUESTING},
                    "claim": {"S": token},
                    "requestedAt": {"S": now.isoformat()},
                    "updatedAt": {"S": now.isoformat()},
                },
                ConditionExpression=condition,
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                entry = self.get(request)
                if entry is None:  # deleted meanwhile: try once more
                    return self.claim(request, force=force)
                raise Claimed(entry) from None
            raise TransferFailed(f"Could not write the export ledger: {describe_exception(exc)}") from None
        return token

    def record_job(self, request: ExportRequest, claim: str, job_id: str) -> None:
        self._update(
            request,
            "SET #state = :queued, jobId = :job, updatedAt = :now REMOVE #error",
            {":queued": {"S": QUEUED}, ":job": {"S": job_id}, ":claim": {"S": claim}},
            condition="claim = :claim",
        )

    def mark_enqueued(self, request: ExportRequest, job_id: str) -> None:
        self._update(
            request,
            "SET enqueuedAt = :now, updatedAt = :now",
            {":job": {"S": job_id}},
            condition="jobId = :job",
        )

    def mark_landed(self, request: ExportRequest, job_id: str, key: str) -> None:
        self._update(
            request,
            "SET #state = :landed, landedAt = :now, updatedAt = :now, #key = :key REMOVE #error",
            {":landed": {"S": LANDED}, ":job": {"S": job_id}, ":key": {"S": key}},
            condition="jobId = :job",
            names={"#key": "key"},
        )

    def mark_failed(self, request: ExportRequest, job_id: str | None, error: str) -> None:
        values: dict[str, Any] = {":failed": {"S": FAILED}, ":error": {"S": error[:1000]}}
        condition = None
        if job_id is not None:
            values[":job"] = {"S": job_id}
            condition = "jobId = :job"
        self._update(request, "SET #state = :failed, #error = :error, updatedAt = :now", values, condition=condition)

    def release(self, request: ExportRequest, claim: str, error: str) -> None:
        """Give up a claim whose POST certainly created nothing, so a later run may try again."""
        self._update(
            request,
            "SET #state = :failed, #error = :error, updatedAt = :now",
            {":failed": {"S": FAILED}, ":error": {"S": error[:1000]}, ":claim": {"S": claim}},
            condition="claim = :claim AND #state = :requesting",
            extra_values={":requesting": {"S": REQUESTING}},
        )

    def entries(self, tenant_id: str, date_from: date, date_to: date) -> list[LedgerEntry]:
        """Every entry of a tenant whose range starts within [date_from, date_to]."""
        result: list[LedgerEntry] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "tenantId = :t AND dataRange BETWEEN :a AND :b",
            "ExpressionAttributeValues": {
                ":t": {"S": tenant_id},
                ":a": {"S": date_from.isoformat()},
                ":b": {"S": date_to.isoformat() + "/~"},
            },
            "ConsistentRead": True,
        }
        while True:
            page = self._db.query(**kwargs)
            result.extend(LedgerEntry.from_item(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return result
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _update(
        self,
        request: ExportRequest,
        expression: str,
        values: dict[str, Any],
        *,
        condition: str | None,
        names: dict[str, str] | None = None,
        extra_values: dict[str, Any] | None = None,
    ) -> None:
        attribute_names = {"#state": "state", "#error": "error", **(names or {})}
        used = {n: v for n, v in attribute_names.items() if n in expression or (condition and n in condition)}
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Key": self._key(request),
            "UpdateExpression": expression,
            "ExpressionAttributeValues": {":now": {"S": self._now().isoformat()}, **values, **(extra_values or {})},
        }
        if used:
            kwargs["ExpressionAttributeNames"] = used
        if condition:
            kwargs["ConditionExpression"] = condition
        try:
            self._db.update_item(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                logger.warning("ledger entry for %s changed hands; update skipped", request.label)
                return
            raise TransferFailed(f"Could not update the export ledger: {describe_exception(exc)}") from None
