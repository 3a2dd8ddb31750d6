"""CreateJob's use case: what a trigger asks for, and one run that plans it, creates jobs and reports.

Triggers: the nightly schedule (``{"trigger": "schedule"}``), an "Export Requested" event, and the end of any
export ("Export Completed" / "Export Failed", or ``{"trigger": "drain"}``), which frees a slot for the next
pending job of a backfill. A run records what the trigger asks for in the ledger (PENDING), then creates jobs for
pending entries while fewer than the cap are in flight, enqueues them, and reports one outcome per request.

Everything it talks to is passed in (:class:`Services`), so the rules are tested without Lambda; the handler
only builds the services from its settings and publishes the report's figures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .errors import ConfigurationError, ExportFailed, InvalidInput
from .executions import ExecutionStatus
from .ledger import Ledger
from .models import ExportJob, ExportRequest, validate_tenant_id
from .scheduling import (
    AdhocRequest,
    Outcome,
    RequestOutcome,
    catch_up,
    check_cap,
    check_lookback,
    dispatch_pending,
    nightly_days,
    plan_exports,
    stale_tenants,
)
from .state import JobRef

SOURCE = "omborigrid.export"
REQUESTED = "Export Requested"
COMPLETED = "Export Completed"
FAILED = "Export Failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulePolicy:
    """What the nightly run exports and how many jobs may be live at the API at once."""

    tenants: tuple[str, ...]
    zone: ZoneInfo
    lookback_days: int
    max_jobs_in_flight: int
    freshness_hours: int

    def __post_init__(self) -> None:
        for tenant in self.tenants:
            try:
                validate_tenant_id(tenant)
            except InvalidInput as exc:
                raise ConfigurationError(f"TENANT_IDS: {exc}") from None
        check_lookback(self.lookback_days)
        check_cap(self.max_jobs_in_flight)
        if self.freshness_hours < 1:
            raise ConfigurationError(
                f"The freshness window (FRESHNESS_HOURS) must be at least one hour, not {self.freshness_hours}."
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    """The collaborators of a run."""

    ledger: Ledger
    create: Callable[[ExportRequest], ExportJob]
    enqueue: Callable[[str], None]
    execution_status: Callable[[JobRef], ExecutionStatus | None]
    now: Callable[[], datetime]
    #: True once the invocation should stop creating jobs (its remaining time is low).
    out_of_time: Callable[[], bool] = lambda: False


# ------------------------------------------------------------------------------------------------ triggers
@dataclass(frozen=True, slots=True)
class Scheduled:
    """The nightly tick: yesterday plus the look-back window's missing or failed days."""


@dataclass(frozen=True, slots=True)
class Requested:
    """An "Export Requested" event."""

    request: AdhocRequest


@dataclass(frozen=True, slots=True)
class Drain:
    """An export ended ("Export Completed", or ``{"trigger": "drain"}``): a slot may be free for the next job."""


@dataclass(frozen=True, slots=True)
class Failed:
    """An "Export Failed" event: the job's ledger entry is marked FAILED (giving its slot back), then a drain."""

    ref: JobRef
    reason: str


Trigger = Scheduled | Requested | Drain | Failed


def parse_trigger(event: object) -> Trigger:
    """What the event asks of CreateJob; :class:`InvalidInput` when it is none of the triggers."""
    if not isinstance(event, dict):
        raise InvalidInput(f"CreateJob was invoked with {type(event).__name__} where an event object was expected.")
    if event.get("trigger") == "schedule":
        return Scheduled()
    if event.get("trigger") == "drain":
        return Drain()
    kind = event.get("detail-type") if event.get("source") == SOURCE else None
    if kind == REQUESTED:
        return Requested(AdhocRequest.from_detail(event.get("detail")))
    if kind == COMPLETED:
        return Drain()
    if kind == FAILED:
        detail = event.get("detail")
        if not isinstance(detail, dict):
            raise InvalidInput("The Export Failed event has no detail object.")
        reason = f"{_text(detail.get('error'))}: {_text(detail.get('message'))}"
        return Failed(JobRef.from_dict(detail), reason)
    raise InvalidInput(
        'CreateJob accepts a scheduled tick ({"trigger": "schedule"}), an omborigrid.export \'Export Requested\' '
        "event, or the end of an export ('Export Completed'/'Export Failed'); this event is none of them."
    )


def _text(value: object) -> str:
    return value if isinstance(value, str) and value else "(not given)"


# ------------------------------------------------------------------------------------------------ the run
@dataclass(frozen=True, slots=True)
class CreateJobReport:
    """One outcome per request (its latest: planned then created is reported once, created), the stale
    tenants (None when no tenants are configured, so none is watched) and the jobs in flight afterwards."""

    outcomes: tuple[RequestOutcome, ...]
    stale_tenants: tuple[str, ...] | None
    in_flight: int

    @property
    def counts(self) -> dict[Outcome, int]:
        counts: dict[Outcome, int] = {}
        for outcome in self.outcomes:
            counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
        return counts

    @property
    def failed(self) -> tuple[RequestOutcome, ...]:
        return tuple(o for o in self.outcomes if o.outcome is Outcome.FAILED)

    def failure(self) -> ExportFailed | None:
        """The error that fails the run when any request failed (so the trigger is retried or dead-lettered)."""
        if not self.failed:
            return None
        first = self.failed[0]
        return ExportFailed(
            f"{len(self.failed)} of {len(self.outcomes)} export requests failed; "
            f"first: {first.request.label}: {first.detail}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"counts": {str(k): v for k, v in self.counts.items()}, "jobs": [o.to_dict() for o in self.outcomes]}


def create_jobs(trigger: Trigger, policy: SchedulePolicy, services: Services) -> CreateJobReport:
    planned = _plan(trigger, policy, services)
    dispatched = dispatch_pending(
        services.ledger,
        create=services.create,
        enqueue=services.enqueue,
        cap=policy.max_jobs_in_flight,
        deadline=services.out_of_time,
    )
    latest = {o.request: o for o in planned}
    latest.update({o.request: o for o in dispatched})
    stale = None
    if policy.tenants:
        stale = tuple(stale_tenants(policy.tenants, services.ledger, now=services.now(), hours=policy.freshness_hours))
    return CreateJobReport(tuple(latest.values()), stale, services.ledger.in_flight())


def _plan(trigger: Trigger, policy: SchedulePolicy, services: Services) -> list[RequestOutcome]:
    """Record what the trigger asks for in the ledger; returns what was planned or skipped."""
    ledger = services.ledger
    match trigger:
        case Scheduled():
            now = services.now()
            missing = catch_up(
                policy.tenants,
                nightly_days(now, policy.zone, policy.lookback_days),
                ledger,
                execution_status=services.execution_status,
                enqueue=services.enqueue,
                now=now,
            )
            return plan_exports(missing, ledger)
        case Requested(request=adhoc):
            return plan_exports(adhoc.expand(), ledger, force=adhoc.force)
        case Failed(ref=ref, reason=reason):
            ledger.mark_failed(ref.request, ref.job_id, reason)
            return []
        case Drain():
            return []
