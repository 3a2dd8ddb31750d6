"""Create Job: decide what to export and ask for it exactly once, with a bounded number of jobs in flight.

The rules are the library's (:mod:`omborigrid_export.createjob`); this adapter reads the settings, builds the
collaborators (ledger, API, queue, executions, clock, the invocation's deadline), runs one trigger and publishes
the report's figures. A run in which a request failed in a way a retry may heal raises ExportFailed after reporting,
so the trigger is retried and, in the end, dead-lettered; a refused token is announced instead (one "Export Failed"
per day) and not retried.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from omborigrid_export.createjob import Services, create_jobs, parse_trigger
from omborigrid_export.function_settings import CreateJobSettings
from omborigrid_export.jobqueue import send_job_message
from omborigrid_export.scheduling import Outcome
from omborigrid_lambda import observability, runtime
from omborigrid_lambda.boundary import typed_failures

SETTINGS = CreateJobSettings
logger = Logger()
metrics = Metrics()
tracer = Tracer()
# Secrets out of every log record and trace this function writes, third-party loggers' included.
observability.install(logger)

#: Seconds kept in hand: dispatching stops creating jobs when fewer remain.
RESERVE_SECONDS = 30


@typed_failures
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    settings = runtime.settings(SETTINGS)
    trigger = parse_trigger(event)
    sqs = runtime.aws("sqs")

    def enqueue(body: str) -> None:
        send_job_message(sqs, settings.queue_url, body)

    services = Services(
        ledger=runtime.ledger(settings.ledger_table),
        health=runtime.tenant_health(settings.ledger_table),
        publish=runtime.publisher(settings.event_bus),
        create=runtime.create_job(settings.export),
        enqueue=enqueue,
        execution_status=runtime.executions(settings.state_machine_arn).status,
        now=lambda: datetime.now(UTC),
        out_of_time=lambda: context.get_remaining_time_in_millis() < RESERVE_SECONDS * 1000,
    )
    report = create_jobs(trigger, settings.policy, services)
    counts = report.counts
    metrics.add_metric(name="JobsCreated", unit=MetricUnit.Count, value=counts.get(Outcome.CREATED, 0))
    if report.stale_tenants is not None:
        metrics.add_metric(name="StaleTenants", unit=MetricUnit.Count, value=len(report.stale_tenants))
        if report.stale_tenants:
            logger.warning("tenants without a landed export recently", extra={"tenants": report.stale_tenants})
    if report.paused_tenants is not None:
        metrics.add_metric(name="TenantsPaused", unit=MetricUnit.Count, value=len(report.paused_tenants))
        if report.paused_tenants:
            logger.warning("paused tenants skipped by the nightly run", extra={"tenants": report.paused_tenants})
    if report.refused:
        metrics.add_metric(name="TokensRefused", unit=MetricUnit.Count, value=len(report.refused))
    logger.info("export requests handled", extra={"counts": counts, "inFlight": report.in_flight})
    failure = report.failure()
    if failure is not None:
        metrics.add_metric(name="JobRequestFailures", unit=MetricUnit.Count, value=len(report.failed))
        raise failure
    return report.to_dict()
