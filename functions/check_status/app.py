"""Check Export Status: one GET of the job; the state machine decides what follows.

Returns the state with ``job`` and ``poll`` refreshed; raises typed errors (ExportFailed, JobExpired,
ExportTimedOut, JobNotFound, AuthError, ApiUnavailable, InvalidApiResponse, IntegrityError) that the ASL
catches by name.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from omborigrid_export.errors import InvalidInput
from omborigrid_export.function_settings import CheckStatusSettings
from omborigrid_export.state import ExportState
from omborigrid_lambda import observability, runtime
from omborigrid_lambda.boundary import typed_failures

SETTINGS = CheckStatusSettings
logger = Logger()
metrics = Metrics()
tracer = Tracer()
# Secrets out of every log record and trace this function writes, third-party loggers' included.
observability.install(logger)


@typed_failures
@logger.inject_lambda_context(correlation_id_path="job.jobId", clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    settings = runtime.settings(SETTINGS)
    state = ExportState.from_event(event)
    logger.append_keys(
        tenantId=state.ref.request.tenant_id,
        dataDateFrom=state.ref.request.date_from.isoformat(),
        dataDateTo=state.ref.request.date_to.isoformat(),
    )
    if state.poll is None:
        raise InvalidInput("The state has no 'poll' object; it is added by the 'Prepare Polling' state.")
    job, poll = runtime.exporter(settings.export, state.ref.request.tenant_id).check(state.ref.identity, state.poll)
    metrics.add_metric(name="StatusChecks", unit=MetricUnit.Count, value=1)
    if job is None:
        # An unreadable answer: the job stays as last seen, so "Is Export Ready" waits and asks again.
        logger.warning("unreadable status answer", extra={"garbledInARow": poll.garbled_in_a_row})
        return {**event, "poll": poll.to_dict()}
    logger.info(
        "job status", extra={"status": job.status.value, "attempt": poll.attempt, "nextWait": poll.wait_seconds}
    )
    return {**event, "job": {**event["job"], **job.to_public_dict()}, "poll": poll.to_dict()}
