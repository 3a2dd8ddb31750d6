"""Deciding what to export, and asking for it exactly once.

``nightly_requests`` turns a schedule tick into (tenant, day) requests: yesterday in the schedule's time
zone plus every day of the look-back window that has not landed. ``adhoc_requests`` does the same for an
"Export Requested" event. ``request_exports`` claims each in the ledger, creates the job and enqueues it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import AmbiguousCreate, ConfigurationError, InvalidInput, OmboriGridExportError
from .ledger import FAILED, QUEUED, Claimed, Ledger
from .models import ExportJob, ExportRequest, parse_date, validate_tenant_id

logger = logging.getLogger(__name__)

MAX_REQUESTS_PER_EVENT = 50_000


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"{name!r} is not a known time zone (use an IANA name such as Europe/Stockholm)."
        ) from None


def nightly_days(now: datetime, tz: ZoneInfo, lookback_days: int) -> list[date]:
    """Yesterday in ``tz`` and the ``lookback_days`` before it, oldest first."""
    if not 0 <= lookback_days <= 366:
        raise ConfigurationError("The look-back window must be between 0 and 366 days.")
    yesterday = now.astimezone(tz).date() - timedelta(days=1)
    return [yesterday - timedelta(days=n) for n in range(lookback_days, -1, -1)]


def nightly_requests(
    tenants: Sequence[str], now: datetime, tz: ZoneInfo, lookback_days: int, ledger: Ledger
) -> list[ExportRequest]:
    days = nightly_days(now, tz, lookback_days)
    requests: list[ExportRequest] = []
    for tenant in tenants:
        known = {(e.date_from, e.date_to): e for e in ledger.entries(tenant, days[0], days[-1])}
        for day in days:
            entry = known.get((day, day))
            if entry is None or entry.state == FAILED or (entry.state == QUEUED and not entry.enqueued):
                requests.append(ExportRequest(tenant, day, day))
    return requests


@dataclass(frozen=True, slots=True)
class AdhocRequest:
    tenants: tuple[str, ...]
    date_from: date
    date_to: date
    split: str
    force: bool

    @classmethod
    def from_detail(cls, detail: Any) -> AdhocRequest:
        """Validate the detail of an "Export Requested" event (see schemas/export-requested.schema.json)."""
        if not isinstance(detail, dict):
            raise InvalidInput("The Export Requested event has no detail object.")
        unknown = set(detail) - {"tenantIds", "dataDateFrom", "dataDateTo", "split", "force"}
        if unknown:
            raise InvalidInput(f"The Export Requested event has unknown fields: {sorted(unknown)}.")
        tenants = detail.get("tenantIds")
        if not isinstance(tenants, list) or not tenants:
            raise InvalidInput("The Export Requested event needs a non-empty list tenantIds.")
        split = detail.get("split", "daily")
        if split not in ("daily", "none"):
            raise InvalidInput(f"split must be 'daily' or 'none', not {split!r}.")
        force = detail.get("force", False)
        if not isinstance(force, bool):
            raise InvalidInput("force must be true or false.")
        request = cls(
            tenants=tuple(dict.fromkeys(validate_tenant_id(t) for t in tenants)),
            date_from=parse_date(detail.get("dataDateFrom"), what="dataDateFrom"),
            date_to=parse_date(detail.get("dataDateTo"), what="dataDateTo"),
            split=split,
            force=force,
        )
        if request.date_from > request.date_to:
            raise InvalidInput("dataDateFrom must not be after dataDateTo.")
        days = (request.date_to - request.date_from).days + 1
        if len(request.tenants) * (days if split == "daily" else 1) > MAX_REQUESTS_PER_EVENT:
            raise InvalidInput(f"One event may ask for at most {MAX_REQUESTS_PER_EVENT} exports; split it up.")
        return request

    def expand(self) -> list[ExportRequest]:
        result: list[ExportRequest] = []
        for tenant in self.tenants:
            whole = ExportRequest(tenant, self.date_from, self.date_to)
            result.extend(whole.split_daily() if self.split == "daily" else [whole])
        return result


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    request: ExportRequest
    outcome: str  # created | re-enqueued | skipped | failed
    job_id: str | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenantId": self.request.tenant_id,
            "dataDateFrom": self.request.date_from.isoformat(),
            "dataDateTo": self.request.date_to.isoformat(),
            "outcome": self.outcome,
            "jobId": self.job_id,
            "detail": self.detail,
        }


def queue_message(request: ExportRequest, job_id: str, force: bool) -> str:
    return json.dumps(
        {
            "jobId": job_id,
            "tenantId": request.tenant_id,
            "dataDateFrom": request.date_from.isoformat(),
            "dataDateTo": request.date_to.isoformat(),
            "force": force,
        }
    )


def request_exports(
    requests: Iterable[ExportRequest],
    *,
    create: Callable[[ExportRequest], ExportJob],
    ledger: Ledger,
    enqueue: Callable[[str], None],
    force: bool = False,
) -> list[RequestOutcome]:
    outcomes: list[RequestOutcome] = []
    for request in requests:
        try:
            claim = ledger.claim(request, force=force)
        except Claimed as taken:
            entry = taken.entry
            if entry.state == QUEUED and entry.job_id and not entry.enqueued:
                # The job exists but the earlier run died before enqueueing it: finish that run's work.
                enqueue(queue_message(request, entry.job_id, force))
                ledger.mark_enqueued(request, entry.job_id)
                outcomes.append(RequestOutcome(request, "re-enqueued", entry.job_id))
            else:
                outcomes.append(RequestOutcome(request, "skipped", entry.job_id, f"already {entry.state.lower()}"))
            continue
        try:
            job = create(request)
        except AmbiguousCreate as exc:
            # Keep the claim: a job may exist. The claim goes stale and is retried later.
            logger.error("%s: %s", request.label, exc)
            outcomes.append(RequestOutcome(request, "failed", None, f"{type(exc).__name__}: {exc}"))
            continue
        except OmboriGridExportError as exc:
            ledger.release(request, claim, f"{type(exc).__name__}: {exc}")
            logger.error("%s: %s", request.label, exc)
            outcomes.append(RequestOutcome(request, "failed", None, f"{type(exc).__name__}: {exc}"))
            continue
        ledger.record_job(request, claim, job.id)
        enqueue(queue_message(request, job.id, force))
        ledger.mark_enqueued(request, job.id)
        outcomes.append(RequestOutcome(request, "created", job.id))
    return outcomes
