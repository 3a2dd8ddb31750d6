"""Create Job: decide what to export and ask for it exactly once, with a bounded number of jobs in flight.

Triggers: the nightly schedule (``{"trigger": "schedule"}``), an "Export Requested" event, and the end of
any export ("Export Completed" / "Export Failed", or ``{"trigger": "drain"}``), which frees a slot for the
next pending job of a backfill. Each run plans requests in the ledger (PENDING), then creates jobs for
pending entries while fewer than MAX_JOBS_IN_FLIGHT are in flight, and enqueues them.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from omborigrid_export.errors import ExportFailed, InvalidInput
from omborigrid_export.models import validate_tenant_id
from omborigrid_export.scheduling import (
    AdhocRequest,
    RequestOutcome,
    catch_up,
    dispatch_pending,
    nightly_days,
    plan_exports,
    stale_tenants,
    zone,
)
from omborigrid_export.state import JobRef
from omborigrid_lambda import runtime

logger = Logger()
metrics = Metrics()
tracer = Tracer()

SOURCE = "omborigrid.export"
#: Seconds kept in hand: dispatching stops creating jobs when fewer remain.
RESERVE_SECONDS = 30


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name) or str(default)
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(f"The function setting {name} must be a whole number, not {raw!r}.") from None


def _tenants() -> list[str]:
    return [validate_tenant_id(t.strip()) for t in runtime.env("TENANT_IDS").split(",") if t.strip()]


def execution_status(ref: JobRef) -> str | None:
    """The status of the job's execution, or None when there is none."""
    machine = runtime.env("EXPORT_STATE_MACHINE_ARN")
    arn = machine.replace(":stateMachine:", ":execution:", 1) + ":" + ref.execution_name()
    try:
        return str(runtime.aws("stepfunctions").describe_execution(executionArn=arn)["status"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
            return None
        raise


def plan(event: dict[str, Any], enqueue: Any) -> list[RequestOutcome]:
    """Record what this event asks for in the ledger; returns what was planned or skipped."""
    ledger = runtime.ledger()
    if event.get("trigger") == "schedule":
        tenants = _tenants()
        days = nightly_days(
            datetime.now(UTC), zone(os.environ.get("SCHEDULE_TIMEZONE") or "UTC"), _int_env("LOOKBACK_DAYS", 7)
        )
        missing = catch_up(
            tenants, days, ledger, execution_status=execution_status, enqueue=enqueue, now=datetime.now(UTC)
        )
        return plan_exports(missing, ledger)
    if event.get("source") == SOURCE and event.get("detail-type") == "Export Requested":
        adhoc = AdhocRequest.from_detail(event.get("detail"))
        return plan_exports(adhoc.expand(), ledger, force=adhoc.force)
    if event.get("source") == SOURCE and event.get("detail-type") == "Export Failed":
        detail = event.get("detail") or {}
        ref = JobRef.from_dict(detail)
        ledger.mark_failed(ref.request, ref.job_id, f"{detail.get('error')}: {detail.get('message')}")
        return []
    if event.get("trigger") == "drain" or (
        event.get("source") == SOURCE and event.get("detail-type") == "Export Completed"
    ):
        return []
    raise InvalidInput(
        'CreateJob accepts a scheduled tick ({"trigger": "schedule"}), an omborigrid.export \'Export Requested\' '
        "event, or the end of an export ('Export Completed'/'Export Failed'); this event is none of them."
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    queue_url = runtime.env("EXPORT_QUEUE_URL")
    sqs = runtime.aws("sqs")

    def enqueue(body: str) -> None:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)

    planned = plan(event, enqueue)
    dispatched = dispatch_pending(
        runtime.ledger(),
        create=runtime.exporter().create,
        enqueue=enqueue,
        cap=_int_env("MAX_JOBS_IN_FLIGHT", 20),
        deadline=lambda: context.get_remaining_time_in_millis() < RESERVE_SECONDS * 1000,
    )
    # One row per request, its latest outcome: a request planned and then created is reported once, created.
    latest = {o.request: o for o in planned}
    latest.update({o.request: o for o in dispatched})
    outcomes = list(latest.values())
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
    metrics.add_metric(name="JobsCreated", unit=MetricUnit.Count, value=counts.get("created", 0))
    if os.environ.get("TENANT_IDS"):
        stale = stale_tenants(
            _tenants(), runtime.ledger(), now=datetime.now(UTC), hours=_int_env("FRESHNESS_HOURS", 36)
        )
        metrics.add_metric(name="StaleTenants", unit=MetricUnit.Count, value=len(stale))
        if stale:
            logger.warning("tenants without a landed export recently", extra={"tenants": stale})
    logger.info("export requests handled", extra={"counts": counts, "inFlight": runtime.ledger().in_flight()})
    failed = [o for o in outcomes if o.outcome == "failed"]
    if failed:
        metrics.add_metric(name="JobRequestFailures", unit=MetricUnit.Count, value=len(failed))
        first = failed[0]
        raise ExportFailed(
            f"{len(failed)} of {len(outcomes)} export requests failed; first: {first.request.label}: {first.detail}"
        )
    return {"counts": counts, "jobs": [o.to_dict() for o in outcomes]}
