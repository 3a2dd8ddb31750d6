"""Deciding what to export, and asking for it exactly once, with a bounded number of jobs in flight.

* ``nightly_days`` + ``catch_up``: a schedule tick becomes yesterday (in the schedule's time zone) plus
  every day of the look-back window that has not landed, healing lost or failed executions on the way.
* ``AdhocRequest``: an "Export Requested" event becomes one request per tenant and day (or per tenant).
* ``plan_exports`` records requests as PENDING in the ledger; ``dispatch_pending`` creates the jobs, at
  most ``cap`` in flight and at most ``tenant_cap`` of one tenant, and is called again whenever an export
  finishes (the drain trigger).
* A refused token (:class:`AuthError`, after the client's one re-read of the secret) is not transient: that
  tenant's days of the run are marked FAILED without asking the API again, and the other tenants go on.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import (
    AmbiguousCreate,
    AuthError,
    ConfigurationError,
    InvalidInput,
    OmboriGridExportError,
    QueueUnavailable,
)
from .executions import ExecutionStatus
from .ledger import EntryState, Ledger
from .models import ExportJob, ExportRequest, Split, parse_date, validate_tenant_id
from .state import JobRef

logger = logging.getLogger(__name__)

MAX_REQUESTS_PER_EVENT = 50_000


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"{name!r} is not a known time zone (use an IANA name such as Europe/Stockholm)."
        ) from None


def check_lookback(lookback_days: int) -> int:
    if not 0 <= lookback_days <= 366:
        raise ConfigurationError(
            f"The look-back window (LOOKBACK_DAYS) must be between 0 and 366 days, not {lookback_days}."
        )
    return lookback_days


def check_cap(cap: int, name: str = "MAX_JOBS_IN_FLIGHT") -> int:
    if cap < 1:
        raise ConfigurationError(f"The cap on jobs in flight ({name}) must be at least 1, not {cap}.")
    return cap


def nightly_days(now: datetime, tz: ZoneInfo, lookback_days: int) -> list[date]:
    """Yesterday in ``tz`` and the ``lookback_days`` before it, oldest first."""
    check_lookback(lookback_days)
    yesterday = now.astimezone(tz).date() - timedelta(days=1)
    return [yesterday - timedelta(days=n) for n in range(lookback_days, -1, -1)]


@dataclass(frozen=True, slots=True)
class AdhocRequest:
    tenants: tuple[str, ...]
    date_from: date
    date_to: date
    split: Split
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
        try:
            split = Split(detail.get("split", Split.DAILY))
        except ValueError:
            raise InvalidInput(f"split must be 'daily' or 'none', not {detail.get('split')!r}.") from None
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
        if len(request.tenants) * (days if split is Split.DAILY else 1) > MAX_REQUESTS_PER_EVENT:
            raise InvalidInput(f"One event may ask for at most {MAX_REQUESTS_PER_EVENT} exports; split it up.")
        return request

    def expand(self) -> list[ExportRequest]:
        result: list[ExportRequest] = []
        for tenant in self.tenants:
            result.extend(ExportRequest(tenant, self.date_from, self.date_to).split(self.split))
        return result


class Outcome(enum.StrEnum):
    """What became of one request in a CreateJob run."""

    PLANNED = "planned"
    CREATED = "created"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    request: ExportRequest
    outcome: Outcome
    job_id: str | None = None
    detail: str | None = None
    #: The error's type name when it failed ("AuthError"...).
    error: str | None = None

    @property
    def refused(self) -> bool:
        """The tenant's token was refused: not transient, so the run is not retried for it."""
        return self.error == AuthError.__name__

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenantId": self.request.tenant_id,
            "dataDateFrom": self.request.date_from.isoformat(),
            "dataDateTo": self.request.date_to.isoformat(),
            "outcome": self.outcome,
            "jobId": self.job_id,
            "detail": self.detail,
            "error": self.error,
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


def plan_exports(requests: Iterable[ExportRequest], ledger: Ledger, *, force: bool = False) -> list[RequestOutcome]:
    """Record each request as PENDING unless it is already live, pending or landed (unless forced)."""
    outcomes = []
    for request in requests:
        blocking = ledger.plan(request, force=force)
        if blocking is None:
            outcomes.append(RequestOutcome(request, Outcome.PLANNED))
        else:
            outcomes.append(
                RequestOutcome(request, Outcome.SKIPPED, blocking.job_id, f"already {blocking.state.lower()}")
            )
    return outcomes


def dispatch_pending(
    ledger: Ledger,
    *,
    create: Callable[[ExportRequest], ExportJob],
    enqueue: Callable[[str], None],
    cap: int,
    tenant_cap: int | None = None,
    deadline: Callable[[], bool] = lambda: False,
) -> list[RequestOutcome]:
    """Create jobs for PENDING entries, oldest data first, while fewer than ``cap`` are in flight (and fewer
    than ``tenant_cap`` of the entry's tenant). A tenant whose token is refused gets no further POST this run:
    its other pending entries are marked FAILED with the same error."""
    check_cap(cap)
    tenant_cap = check_cap(min(tenant_cap or cap, cap), "MAX_JOBS_IN_FLIGHT_PER_TENANT")
    outcomes: list[RequestOutcome] = []
    refused: dict[str, RequestOutcome] = {}
    while not deadline():
        free = cap - ledger.in_flight()
        if free <= 0:
            break
        full = ledger.tenants_at_cap(tenant_cap) if tenant_cap < cap else frozenset()
        candidates = sorted(
            ledger.in_state(EntryState.PENDING, limit=free * 4, except_tenants=full),
            key=lambda e: (e.date_from, e.tenant_id),
        )
        progressed = False
        taken = 0
        for entry in candidates:
            if deadline() or taken >= free:
                break
            if entry.tenant_id in refused:
                progressed |= _fail_refused(entry.request, refused[entry.tenant_id], ledger, outcomes)
                continue
            claim = ledger.dispatch(entry.request, cap=cap, tenant_cap=tenant_cap)
            if claim is None:
                if ledger.in_flight() >= cap:
                    return outcomes
                continue  # taken by another invocation meanwhile, or the tenant's share is full
            progressed = True
            taken += 1
            outcome = _create(entry.request, claim, entry.force, ledger=ledger, create=create, enqueue=enqueue)
            outcomes.append(outcome)
            if outcome.refused:
                refused[entry.tenant_id] = outcome
        if not progressed:
            break
    return outcomes


def _fail_refused(
    request: ExportRequest, first: RequestOutcome, ledger: Ledger, outcomes: list[RequestOutcome]
) -> bool:
    if not ledger.fail_pending(request, f"{first.error}: {first.detail}"):
        return False
    outcomes.append(RequestOutcome(request, Outcome.FAILED, None, first.detail, first.error))
    return True


def _create(
    request: ExportRequest,
    claim: str,
    force: bool,
    *,
    ledger: Ledger,
    create: Callable[[ExportRequest], ExportJob],
    enqueue: Callable[[str], None],
) -> RequestOutcome:
    try:
        job = create(request)
    except AmbiguousCreate as exc:
        # Keep the claim (and its slot): a job may exist. It goes back to PENDING once stale.
        logger.error("%s: %s", request.label, exc)
        return RequestOutcome(request, Outcome.FAILED, None, f"{type(exc).__name__}: {exc}", type(exc).__name__)
    except OmboriGridExportError as exc:
        ledger.mark_create_failed(request, claim, f"{type(exc).__name__}: {exc}")
        logger.error("%s: %s", request.label, exc)
        detail = str(exc) if isinstance(exc, AuthError) else f"{type(exc).__name__}: {exc}"
        return RequestOutcome(request, Outcome.FAILED, None, detail, type(exc).__name__)
    if not ledger.record_job(request, claim, job.id):
        return RequestOutcome(
            request, Outcome.FAILED, job.id, "the ledger entry was taken over while the job was created"
        )
    try:
        enqueue(queue_message(request, job.id, force))
    except QueueUnavailable as exc:
        # The job is recorded (QUEUED, not sent): the next run sends it (send_unsent); this one fails to be retried.
        logger.error("%s: %s", request.label, exc)
        return RequestOutcome(request, Outcome.FAILED, job.id, f"{type(exc).__name__}: {exc}", type(exc).__name__)
    ledger.mark_enqueued(request, job.id)
    return RequestOutcome(request, Outcome.CREATED, job.id)


def requeue_stale_claims(ledger: Ledger) -> int:
    """Give every REQUESTING entry whose claim is past its stale window back to PENDING (its POST's outcome is
    unknown: the invocation died, or the POST was ambiguous), whatever trigger or tenant asked for it; returns how
    many. The nightly run's look-back does this for its own tenants; a backfill's days need it too."""
    return sum(ledger.requeue_stale(entry) for entry in ledger.in_state(EntryState.REQUESTING))


def send_unsent(ledger: Ledger, enqueue: Callable[[str], None]) -> int:
    """Send the message of every QUEUED job that was never sent (SQS refused it, or CreateJob died between the
    job id and the message); returns how many. A message sent twice starts one execution (its name is the job's)."""
    sent = 0
    for entry in ledger.in_state(EntryState.QUEUED):
        if entry.job_id and not entry.enqueued:
            enqueue(queue_message(entry.request, entry.job_id, entry.force))
            ledger.mark_enqueued(entry.request, entry.job_id)
            sent += 1
    return sent


#: An enqueued job whose execution cannot be found after this long was lost (e.g. its message is in the DLQ).
LOST_AFTER = timedelta(minutes=30)
FINISHED_BADLY = frozenset({ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT, ExecutionStatus.ABORTED})


def catch_up(
    tenants: Sequence[str],
    days: Sequence[date],
    ledger: Ledger,
    *,
    execution_status: Callable[[JobRef], ExecutionStatus | None],
    enqueue: Callable[[str], None],
    now: datetime,
) -> list[ExportRequest]:
    """Heal the look-back window: returns the requests to plan (missing or failed days), after marking
    lost or failed executions FAILED, re-enqueueing jobs that were never enqueued and returning stale
    claims to PENDING."""
    to_plan: list[ExportRequest] = []
    for tenant in tenants:
        known = {(e.date_from, e.date_to): e for e in ledger.entries(tenant, days[0], days[-1])}
        for day in days:
            entry = known.get((day, day))
            if entry is None or entry.state is EntryState.FAILED:
                to_plan.append(ExportRequest(tenant, day, day))
            elif entry.state is EntryState.QUEUED and entry.job_id and not entry.enqueued:
                enqueue(queue_message(entry.request, entry.job_id, entry.force))
                ledger.mark_enqueued(entry.request, entry.job_id)
            elif (
                entry.state is EntryState.QUEUED
                and entry.job_id
                and entry.enqueued_at
                and now - entry.enqueued_at > LOST_AFTER
            ):
                status = execution_status(JobRef(entry.job_id, entry.request, entry.force))
                if status is None or status in FINISHED_BADLY:
                    why = "its execution was not found" if status is None else f"its execution ended {status}"
                    if ledger.mark_failed(entry.request, entry.job_id, f"ExportFailed: {why}"):
                        to_plan.append(entry.request)
            elif entry.state is EntryState.REQUESTING:
                ledger.requeue_stale(entry)
    return to_plan


def stale_tenants(tenants: Sequence[str], ledger: Ledger, *, now: datetime, hours: int) -> list[str]:
    """Tenants with no export landed within ``hours`` (by the ledger's landedAt)."""
    since = now - timedelta(hours=hours)
    stale = []
    for tenant in tenants:
        entries = ledger.entries(tenant, (since - timedelta(days=3)).date(), now.date() + timedelta(days=1))
        if not any(e.landed_at and e.landed_at >= since for e in entries):
            stale.append(tenant)
    return stale
