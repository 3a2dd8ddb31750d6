"""CreateJob's use case: what a trigger asks for, and one run that plans it, creates jobs and reports.

Triggers: the nightly schedule (``{"trigger": "schedule", "scheduledTime": ...}``), an "Export Requested" event,
and the end of any export ("Export Completed" / "Export Failed", or ``{"trigger": "drain"}``), which frees a slot for the next
pending job of a backfill. A run records what the trigger asks for in the ledger (PENDING), then creates jobs for
pending entries while fewer than the cap are in flight, enqueues them, and reports one outcome per request.

A tenant whose token is refused has its days of the run marked FAILED and one "Export Failed" event per day
(naming the tenant); that is not transient, so it does not fail the run (which would retry it and, for every
other tenant, repeat the run). A tenant that failed ``pause_after_failed_nights`` nights in a row is skipped by
the nightly run until an "Export Requested" names it (:mod:`.tenant_health`).

The nightly run's days come from the schedule's own time (``scheduledTime``, Scheduler's
``<aws.scheduler.scheduled-time>``), not from the clock: a retry of last night's tick that arrives after midnight
still exports the day that tick was for. A tick without one (an old sample, a hand-made invocation) uses the clock,
and says so; one from the future beyond :data:`SCHEDULE_CLOCK_SKEW` is refused. The clock still decides what is
wall-clock time: how long an execution has been lost, freshness, when a tenant was paused.

Everything it talks to is passed in (:class:`Services`), so the rules are tested without Lambda; the handler
only builds the services from its settings and publishes the report's figures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
    requeue_stale_claims,
    send_unsent,
    stale_tenants,
)
from .state import JobRef
from .tenant_health import TENANT_PAUSED, TenantHealthStore, check_pause_after, judge_night, paused_detail

logger = logging.getLogger(__name__)

SOURCE = "omborigrid.export"
REQUESTED = "Export Requested"
COMPLETED = "Export Completed"
FAILED = "Export Failed"
#: Scheduler's context attribute for the time a tick was scheduled for (the template's schedule Input names it).
SCHEDULED_TIME_ATTRIBUTE = "<aws.scheduler.scheduled-time>"
#: How far a tick's scheduled time may lie ahead of this function's clock (clocks differ a little).
SCHEDULE_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulePolicy:
    """What the nightly run exports and how many jobs may be live at the API at once."""

    tenants: tuple[str, ...]
    zone: ZoneInfo
    lookback_days: int
    max_jobs_in_flight: int
    freshness_hours: int
    #: A tenant's share of ``max_jobs_in_flight`` (None: all of it).
    max_jobs_in_flight_per_tenant: int | None = None
    pause_after_failed_nights: int = 5

    def __post_init__(self) -> None:
        for tenant in self.tenants:
            try:
                validate_tenant_id(tenant)
            except InvalidInput as exc:
                raise ConfigurationError(f"TENANT_IDS: {exc}") from None
        check_lookback(self.lookback_days)
        check_cap(self.max_jobs_in_flight)
        if self.max_jobs_in_flight_per_tenant is not None:
            check_cap(self.max_jobs_in_flight_per_tenant, "MAX_JOBS_IN_FLIGHT_PER_TENANT")
        check_pause_after(self.pause_after_failed_nights)
        if self.freshness_hours < 1:
            raise ConfigurationError(
                f"The freshness window (FRESHNESS_HOURS) must be at least one hour, not {self.freshness_hours}."
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    """The collaborators of a run."""

    ledger: Ledger
    health: TenantHealthStore
    create: Callable[[ExportRequest], ExportJob]
    enqueue: Callable[[str], None]
    execution_status: Callable[[JobRef], ExecutionStatus | None]
    now: Callable[[], datetime]
    #: Puts events (detail-type, detail) on the stack's bus: "Export Failed" for refused days, "Tenant Paused".
    publish: Callable[[Sequence[tuple[str, dict[str, Any]]]], None]
    #: True once the invocation should stop creating jobs (its remaining time is low).
    out_of_time: Callable[[], bool] = lambda: False


# ------------------------------------------------------------------------------------------------ triggers
@dataclass(frozen=True, slots=True)
class Scheduled:
    """The nightly tick: the day before its scheduled time plus the look-back window's missing or failed days.

    ``scheduled_time`` (UTC) is None for a tick that carries none: the run then takes the clock's time."""

    scheduled_time: datetime | None = None

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> Scheduled:
        raw = event.get("scheduledTime")
        if raw is None:
            return cls()
        return cls(parse_scheduled_time(raw))

    def logical_time(self, now: datetime) -> datetime:
        """The time whose "yesterday" the run exports: the scheduled time, checked against ``now``."""
        if self.scheduled_time is None:
            logger.warning(
                "the scheduled tick carries no scheduledTime; exporting the day before the current time, %s",
                now.isoformat(),
            )
            return now
        if self.scheduled_time - now > SCHEDULE_CLOCK_SKEW:
            raise InvalidInput(
                f"The scheduled tick is for {self.scheduled_time.isoformat()}, later than this function's clock "
                f"({now.isoformat()}) by more than {int(SCHEDULE_CLOCK_SKEW.total_seconds() // 60)} minutes; a "
                "tick for a time that has not come yet would export a day that is not over, so it is refused."
            )
        return self.scheduled_time


def parse_scheduled_time(raw: object) -> datetime:
    """A tick's ``scheduledTime``: ISO 8601 in UTC, as Scheduler writes it (``2026-11-02T01:00:00Z``)."""
    if raw == SCHEDULED_TIME_ATTRIBUTE:
        raise InvalidInput(
            f"scheduledTime is the unreplaced placeholder {SCHEDULED_TIME_ATTRIBUTE}: only EventBridge Scheduler "
            "fills it in; a hand-made tick must give a time such as 2026-11-02T01:00:00Z, or leave it out."
        )
    if not isinstance(raw, str):
        raise InvalidInput(f"scheduledTime must be an ISO 8601 UTC time text, not {type(raw).__name__}.")
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or parsed.utcoffset() != timedelta(0):
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        raise InvalidInput(f"scheduledTime {shown!r} is not an ISO 8601 time in UTC such as 2026-11-02T01:00:00Z.")
    return parsed.astimezone(UTC)


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
        return Scheduled.from_event(event)
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
        if detail.get("jobId") is None:
            return Drain()  # CreateJob's own (a refused token): the entry is marked FAILED already
        reason = f"{_text(detail.get('error'))}: {_text(detail.get('message'))}"
        return Failed(JobRef.from_dict(detail), reason)
    raise InvalidInput(
        'CreateJob accepts a scheduled tick ({"trigger": "schedule", "scheduledTime": ...}), an omborigrid.export \'Export Requested\' '
        "event, or the end of an export ('Export Completed'/'Export Failed'); this event is none of them."
    )


def _text(value: object) -> str:
    return value if isinstance(value, str) and value else "(not given)"


# ------------------------------------------------------------------------------------------------ the run
@dataclass(frozen=True, slots=True)
class CreateJobReport:
    """One outcome per request (its latest: planned then created is reported once, created), the stale
    tenants (None when no tenants are configured, so none is watched), the jobs in flight afterwards and, for a
    nightly run, the configured tenants it skipped because they are paused (None for other triggers)."""

    outcomes: tuple[RequestOutcome, ...]
    stale_tenants: tuple[str, ...] | None
    in_flight: int
    paused_tenants: tuple[str, ...] | None = None
    newly_paused: tuple[str, ...] = field(default=())

    @property
    def counts(self) -> dict[Outcome, int]:
        counts: dict[Outcome, int] = {}
        for outcome in self.outcomes:
            counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
        return counts

    @property
    def failed(self) -> tuple[RequestOutcome, ...]:
        return tuple(o for o in self.outcomes if o.outcome is Outcome.FAILED)

    @property
    def refused(self) -> tuple[RequestOutcome, ...]:
        """Days failed because their tenant's token was refused (announced, not retried)."""
        return tuple(o for o in self.failed if o.refused)

    def failure(self) -> ExportFailed | None:
        """The error that fails the run when a request failed in a way a retry may heal (so the trigger is
        retried or dead-lettered); a refused token is not one of them."""
        transient = [o for o in self.failed if not o.refused]
        if not transient:
            return None
        first = transient[0]
        return ExportFailed(
            f"{len(transient)} of {len(self.outcomes)} export requests failed; "
            f"first: {first.request.label}: {first.detail}"
        )

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "counts": {str(k): v for k, v in self.counts.items()},
            "jobs": [o.to_dict() for o in self.outcomes],
        }
        if self.paused_tenants is not None:
            result["pausedTenants"] = list(self.paused_tenants)
        return result


def refused_detail(outcome: RequestOutcome) -> dict[str, Any]:
    """The "Export Failed" detail of a day whose tenant's token was refused (no job, no execution)."""
    request = outcome.request
    return {
        "tenantId": request.tenant_id,
        "dataDateFrom": request.date_from.isoformat(),
        "dataDateTo": request.date_to.isoformat(),
        "jobId": None,
        "executionId": None,
        "error": outcome.error or "AuthError",
        "message": f"Tenant {request.tenant_id}: {outcome.detail}",
    }


def create_jobs(trigger: Trigger, policy: SchedulePolicy, services: Services) -> CreateJobReport:
    paused: tuple[str, ...] | None = None
    newly_paused: tuple[str, ...] = ()
    # The time whose "yesterday" a nightly run exports; other triggers name their days themselves.
    logical = trigger.logical_time(services.now()) if isinstance(trigger, Scheduled) else services.now()
    if isinstance(trigger, Scheduled):
        paused, newly_paused = _pause_broken_tenants(policy, services, logical)
    planned = _plan(trigger, policy, services, skip=frozenset(paused or ()), logical=logical)
    requeue_stale_claims(services.ledger)
    send_unsent(services.ledger, services.enqueue)
    dispatched = dispatch_pending(
        services.ledger,
        create=services.create,
        enqueue=services.enqueue,
        cap=policy.max_jobs_in_flight,
        tenant_cap=policy.max_jobs_in_flight_per_tenant,
        deadline=services.out_of_time,
    )
    latest = {o.request: o for o in planned}
    latest.update({o.request: o for o in dispatched})
    stale = None
    if policy.tenants:
        stale = tuple(stale_tenants(policy.tenants, services.ledger, now=services.now(), hours=policy.freshness_hours))
    report = CreateJobReport(tuple(latest.values()), stale, services.ledger.in_flight(), paused, newly_paused)
    announcements = [(FAILED, refused_detail(o)) for o in report.refused]
    for tenant in newly_paused:
        detail = paused_detail(services.health.get(tenant), pause_after=policy.pause_after_failed_nights)
        announcements.append((TENANT_PAUSED, detail))
    if announcements:
        services.publish(announcements)
    return report


def _pause_broken_tenants(
    policy: SchedulePolicy, services: Services, logical: datetime
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Judge each configured tenant's last night (the one before the tick's ``logical`` time); returns the paused
    tenants and those paused just now."""
    now = services.now()
    # From the day before the window: the last night asked for the day before this night's yesterday.
    days = nightly_days(logical, policy.zone, min(policy.lookback_days + 1, 366))
    paused: list[str] = []
    newly: list[str] = []
    for tenant in policy.tenants:
        before = services.health.get(tenant)
        after = judge_night(
            before,
            services.ledger.entries(tenant, days[0], days[-1]),
            pause_after=policy.pause_after_failed_nights,
            now=now,
        )
        if after != before:
            services.health.save(after)
        if after.paused:
            paused.append(tenant)
            if not before.paused:
                newly.append(tenant)
    return tuple(paused), tuple(newly)


def _plan(
    trigger: Trigger, policy: SchedulePolicy, services: Services, *, skip: frozenset[str], logical: datetime
) -> list[RequestOutcome]:
    """Record what the trigger asks for in the ledger; returns what was planned or skipped."""
    ledger = services.ledger
    match trigger:
        case Scheduled():
            missing = catch_up(
                [t for t in policy.tenants if t not in skip],
                nightly_days(logical, policy.zone, policy.lookback_days),
                ledger,
                execution_status=services.execution_status,
                enqueue=services.enqueue,
                now=services.now(),
            )
            return plan_exports(missing, ledger)
        case Requested(request=adhoc):
            for tenant in adhoc.tenants:
                services.health.resume(tenant)  # an operator asked for it: the nightly run takes it up again
            return plan_exports(adhoc.expand(), ledger, force=adhoc.force)
        case Failed(ref=ref, reason=reason):
            ledger.mark_failed(ref.request, ref.job_id, reason)
            return []
        case Drain():
            return []
