"""Start Export: one Standard execution per queued job, named deterministically.

A redelivered message computes the same name, so it cannot start a second execution. Each record stands
alone: a malformed one (not an SQS record, a body that is not a JSON job) or one whose start fails is reported
in ``batchItemFailures`` (ReportBatchItemFailures) and lands in the DLQ after the queue's redrive count, while
the other records of the batch still start.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from omborigrid_export.errors import InvalidInput, OmboriGridExportError
from omborigrid_export.executions import StartResult
from omborigrid_export.function_settings import StartExportSettings
from omborigrid_export.state import JobRef
from omborigrid_lambda import observability, runtime
from omborigrid_lambda.boundary import typed_failures

SETTINGS = StartExportSettings
logger = Logger()
metrics = Metrics()
tracer = Tracer()
# Secrets out of every log record and trace this function writes, third-party loggers' included.
observability.install(logger)


def job_of(record: object) -> tuple[str, JobRef]:
    """The record's message id and the job its body names; InvalidInput for anything else."""
    if not isinstance(record, dict):
        raise InvalidInput(f"A record of the batch is {type(record).__name__}, not an SQS record.")
    message_id = record.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        raise InvalidInput("A record of the batch has no messageId.")
    body = record.get("body")
    if not isinstance(body, str):
        raise InvalidInput(f"The body of message {message_id} is {type(body).__name__}, not text.")
    return message_id, JobRef.from_message(body)


@typed_failures
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    executions = runtime.executions(runtime.settings(SETTINGS).state_machine_arn)
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        raise InvalidInput("The event is not an SQS batch (no Records list).")
    failures: list[dict[str, str]] = []
    for record in records:
        message_id = str(record.get("messageId", "")) if isinstance(record, dict) else ""
        try:
            message_id, ref = job_of(record)
            logger.set_correlation_id(ref.job_id)
            outcome = executions.start(ref)
        except OmboriGridExportError as exc:
            # Reported alone: it is retried (and dead-lettered) by SQS, the rest of the batch goes on.
            logger.error("could not start the export", extra={"messageId": message_id, "error": str(exc)})
            failures.append({"itemIdentifier": message_id})
            continue
        metrics.add_metric(
            name="ExecutionsStarted" if outcome is StartResult.STARTED else "DuplicateStartsIgnored",
            unit=MetricUnit.Count,
            value=1,
        )
        logger.info("export execution", extra={"outcome": outcome, "executionName": ref.execution_name()})
    return {"batchItemFailures": failures}
