"""A ledger entry as read back: its state and what it records (see :mod:`.ledger` for the lifecycle)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from .models import ExportRequest


class EntryState(enum.StrEnum):
    PENDING = "PENDING"
    REQUESTING = "REQUESTING"
    QUEUED = "QUEUED"
    LANDED = "LANDED"
    FAILED = "FAILED"


# The states by their own names, for readers of the ledger (the CLI's status view imports them).
PENDING = EntryState.PENDING
REQUESTING = EntryState.REQUESTING
QUEUED = EntryState.QUEUED
LANDED = EntryState.LANDED
FAILED = EntryState.FAILED


def data_range(request: ExportRequest) -> str:
    return f"{request.date_from.isoformat()}/{request.date_to.isoformat()}"


def string_attribute(item: dict[str, Any], name: str) -> str | None:
    """The string value of attribute ``name`` of a DynamoDB item, or None."""
    value = item.get(name, {}).get("S")
    return str(value) if value is not None else None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    tenant_id: str
    date_from: date
    date_to: date
    state: EntryState
    job_id: str | None
    claim: str | None
    updated_at: datetime
    enqueued_at: datetime | None = None
    landed_at: datetime | None = None
    error: str | None = None
    key: str | None = None
    manifest_key: str | None = None
    force: bool = False

    @property
    def request(self) -> ExportRequest:
        return ExportRequest(self.tenant_id, self.date_from, self.date_to)

    @property
    def enqueued(self) -> bool:
        return self.enqueued_at is not None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> LedgerEntry:
        date_from, _, date_to = item["dataRange"]["S"].partition("/")

        def when(name: str) -> datetime | None:
            value = string_attribute(item, name)
            return datetime.fromisoformat(value) if value else None

        updated = when("updatedAt")
        return cls(
            tenant_id=item["tenantId"]["S"],
            date_from=date.fromisoformat(date_from),
            date_to=date.fromisoformat(date_to),
            state=EntryState(item["state"]["S"]),
            job_id=string_attribute(item, "jobId"),
            claim=string_attribute(item, "claim"),
            updated_at=updated or datetime.min.replace(tzinfo=UTC),
            enqueued_at=when("enqueuedAt"),
            landed_at=when("landedAt"),
            error=string_attribute(item, "error"),
            key=string_attribute(item, "key"),
            manifest_key=string_attribute(item, "manifestKey"),
            force=bool(item.get("force", {}).get("BOOL", False)),
        )
