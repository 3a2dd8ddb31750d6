"""Stop hammering a broken tenant: consecutive failed nights, a pause, and the way back.

A tenant whose token was revoked or whose host is gone fails every night, and every night the catch-up asks for the
whole look-back window again. After ``pause_after`` consecutive failed nights the nightly run skips the tenant and
says so once (a "Tenant Paused" event, and the TenantsPaused metric its alarm watches), as AppFlow and Airbyte
deactivate a failing flow; unlike them it heals itself: an "Export Requested" naming the tenant (``retry``, or any
ad-hoc request) resumes it, and a night whose newest day landed clears the count.

A night is judged at the next nightly tick, by the tenant's newest day in the look-back window (and the day before
it, which the last night asked for as its yesterday): FAILED counts one
failed night, LANDED clears the count, anything else (still in flight) leaves it. The failed entry's own stamp (its
day and last change) is remembered, so a tick that runs twice without a new attempt in between counts once.

The record is one item per tenant in the ledger table, in a partition of its own (``#health``, sort key = the
tenant; tenant ids never start with '#'), so a tenant's partition keeps holding its entries only. It is written
whole: only the nightly run writes it, apart from a resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .dynamodb import ConditionFailed, dynamodb_errors
from .errors import ConfigurationError
from .ledger_entry import EntryState, LedgerEntry

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

HEALTH_PARTITION = "#health"
TENANT_PAUSED = "Tenant Paused"


def health_key(tenant_id: str) -> dict[str, Any]:
    return {"tenantId": {"S": HEALTH_PARTITION}, "dataRange": {"S": tenant_id}}


def check_pause_after(nights: int) -> int:
    if not 1 <= nights <= 366:
        raise ConfigurationError(
            f"PAUSE_AFTER_FAILED_NIGHTS must be between 1 and 366 consecutive failed nights, not {nights}."
        )
    return nights


@dataclass(frozen=True, slots=True)
class TenantHealth:
    tenant_id: str
    failed_nights: int = 0
    #: The stamp of the failed entry counted last (see the module docstring).
    last_failure: str | None = None
    #: When the nightly run started skipping the tenant; None while it is not paused.
    paused_at: datetime | None = None
    #: The newest failure's error, for the "Tenant Paused" event.
    last_error: str | None = None

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    @classmethod
    def from_item(cls, tenant_id: str, item: dict[str, Any] | None) -> TenantHealth:
        if not item:
            return cls(tenant_id)
        paused_at = item.get("pausedAt", {}).get("S")
        return cls(
            tenant_id=tenant_id,
            failed_nights=int(item.get("failedNights", {}).get("N", "0")),
            last_failure=item.get("lastFailure", {}).get("S"),
            paused_at=datetime.fromisoformat(paused_at) if paused_at else None,
            last_error=item.get("lastError", {}).get("S"),
        )

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            **health_key(self.tenant_id),
            "failedNights": {"N": str(self.failed_nights)},
            "paused": {"BOOL": self.paused},
        }
        if self.last_failure:
            item["lastFailure"] = {"S": self.last_failure}
        if self.paused_at:
            item["pausedAt"] = {"S": self.paused_at.isoformat()}
        if self.last_error:
            item["lastError"] = {"S": self.last_error[:1000]}
        return item


def judge_night(
    health: TenantHealth, window: Sequence[LedgerEntry], *, pause_after: int, now: datetime
) -> TenantHealth:
    """The tenant's record after the night its newest day in ``window`` tells of (see the module docstring)."""
    days = [e for e in window if e.date_from == e.date_to]
    if health.paused or not days:
        return health
    newest = max(days, key=lambda e: e.date_from)
    if newest.state is EntryState.LANDED:
        return TenantHealth(health.tenant_id) if health.failed_nights else health
    if newest.state is not EntryState.FAILED:
        return health
    stamp = f"{newest.date_from.isoformat()}@{newest.updated_at.isoformat()}"
    if stamp == health.last_failure:
        return health
    failed = health.failed_nights + 1
    pausing = failed >= pause_after
    return replace(
        health,
        failed_nights=failed,
        last_failure=stamp,
        last_error=newest.error,
        paused_at=now if pausing else None,
    )


def paused_detail(health: TenantHealth, *, pause_after: int) -> dict[str, Any]:
    """The "Tenant Paused" event's detail (schemas/tenant-paused.schema.json)."""
    tenant = health.tenant_id
    return {
        "tenantId": tenant,
        "failedNights": health.failed_nights,
        "pauseAfterFailedNights": pause_after,
        "pausedAt": health.paused_at.isoformat() if health.paused_at else None,
        "lastError": health.last_error,
        "message": (
            f"Tenant {tenant} failed {health.failed_nights} nights in a row, so the nightly run skips it from now on. "
            f"Fix the cause (the last error is above), then resume it with: omborigrid-export retry --stack STACK "
            f"--tenant {tenant} --from FIRST-FAILED-DAY --to YESTERDAY"
        ),
    }


class TenantHealthStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def get(self, tenant_id: str) -> TenantHealth:
        with dynamodb_errors(f"read the nightly record of tenant {tenant_id}"):
            item = self._db.get_item(
                TableName=self._table,
                Key=health_key(tenant_id),
                ConsistentRead=True,
            ).get("Item")
        return TenantHealth.from_item(tenant_id, item)

    def save(self, health: TenantHealth) -> None:
        with dynamodb_errors(f"write the nightly record of tenant {health.tenant_id}"):
            self._db.put_item(TableName=self._table, Item=health.to_item())

    def resume(self, tenant_id: str) -> bool:
        """Clear a pause (and the count); False when the tenant was not paused."""
        try:
            with dynamodb_errors(f"resume tenant {tenant_id}"):
                self._db.put_item(
                    TableName=self._table,
                    Item=TenantHealth(tenant_id).to_item(),
                    ConditionExpression="paused = :yes",
                    ExpressionAttributeValues={":yes": {"BOOL": True}},
                )
        except ConditionFailed:
            return False
        return True
