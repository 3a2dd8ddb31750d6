"""The slots of jobs in flight: one counter for the stack's cap and one per tenant for its share.

The counters are items of the ledger table in a partition of their own (``#capacity``; tenant ids never start with
'#'). The ledger adds the updates built here to the transaction of each state change (:mod:`.ledger`), so a slot is
taken, or given back, exactly when an entry starts or stops being in flight, and a count is never off by a
duplicate event.
"""

from __future__ import annotations

from typing import Any

from .models import ExportRequest

CAPACITY_PARTITION = "#capacity"
CAPACITY_KEY = {"tenantId": {"S": CAPACITY_PARTITION}, "dataRange": {"S": "#jobs-in-flight"}}
TENANT_CAPACITY_PREFIX = "#tenant#"
SLOT_FREE = "attribute_not_exists(inFlight) OR inFlight < :cap"


def tenant_capacity_key(tenant_id: str) -> dict[str, Any]:
    """The counter of one tenant's jobs in flight."""
    return {"tenantId": {"S": CAPACITY_PARTITION}, "dataRange": {"S": TENANT_CAPACITY_PREFIX + tenant_id}}


def take_slots(table: str, request: ExportRequest, *, cap: int, tenant_cap: int, now: str) -> list[dict[str, Any]]:
    """Transaction items taking a slot of the cap and one of the tenant's share (each fails when full)."""
    slots = []
    for key, limit in ((CAPACITY_KEY, cap), (tenant_capacity_key(request.tenant_id), tenant_cap)):
        slots.append(
            {
                "Update": {
                    "TableName": table,
                    "Key": key,
                    "UpdateExpression": "ADD inFlight :one SET updatedAt = :now",
                    "ConditionExpression": SLOT_FREE,
                    "ExpressionAttributeValues": {":one": {"N": "1"}, ":cap": {"N": str(limit)}, ":now": {"S": now}},
                }
            }
        )
    return slots


def give_slots_back(table: str, request: ExportRequest) -> list[dict[str, Any]]:
    """Transaction items giving both slots back. Unconditional: exactly-once comes from the entry's own condition,
    in the same transaction."""
    return [
        {
            "Update": {
                "TableName": table,
                "Key": key,
                "UpdateExpression": "ADD inFlight :minus",
                "ExpressionAttributeValues": {":minus": {"N": "-1"}},
            }
        }
        for key in (CAPACITY_KEY, tenant_capacity_key(request.tenant_id))
    ]


def in_flight_of(item: dict[str, Any]) -> int:
    return int(item.get("inFlight", {}).get("N", "0"))


def tenants_full(items: list[dict[str, Any]], tenant_cap: int) -> frozenset[str]:
    """The tenants whose counter (among ``items`` of the ``#capacity`` partition) fills their share."""
    return frozenset(
        item["dataRange"]["S"][len(TENANT_CAPACITY_PREFIX) :]
        for item in items
        if item["dataRange"]["S"].startswith(TENANT_CAPACITY_PREFIX) and in_flight_of(item) >= tenant_cap
    )
