"""Start Export: one Standard execution per queued job, named deterministically.

A redelivered message computes the same name, so it cannot start a second execution: Step Functions
answers ``ExecutionAlreadyExists``, which is success here. Failed records are reported individually
(ReportBatchItemFailures) and land in the DLQ after the queue's redrive count.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from omborigrid_export.errors import InvalidInput
from omborigrid_export.state import JobRef
from omborigrid_lambda import runtime

logger = Logger()
metrics = Metrics()
tracer = Tracer()


def start(ref: JobRef) -> str:
    """Start the execution for ``ref``; returns 'started' or 'already-started'.

    StartExecution answers a duplicate of a *running* execution with that execution (not an error), and a
    duplicate of a finished one with ExecutionAlreadyExists; looking first tells the two apart for the
    logs and metrics. Correctness does not depend on the look: the name alone prevents a second run.
    """
    sfn = runtime.aws("stepfunctions")
    machine = runtime.env("EXPORT_STATE_MACHINE_ARN")
    arn = machine.replace(":stateMachine:", ":execution:", 1) + ":" + ref.execution_name()
    try:
        sfn.describe_execution(executionArn=arn)
        return "already-started"
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ExecutionDoesNotExist":
            raise
    try:
        sfn.start_execution(stateMachineArn=machine, name=ref.execution_name(), input=json.dumps(ref.execution_input()))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
            return "already-started"
        raise
    return "started"


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = event.get("Records")
    if not isinstance(records, list):
        raise InvalidInput("The event is not an SQS batch (no Records list).")
    failures: list[dict[str, str]] = []
    for record in records:
        message_id = str(record.get("messageId", ""))
        try:
            ref = JobRef.from_message(record.get("body", ""))
        except InvalidInput as exc:
            # A malformed message will never succeed: report it so it goes to the DLQ, keep the rest.
            logger.error("invalid export message", extra={"messageId": message_id, "error": str(exc)})
            failures.append({"itemIdentifier": message_id})
            continue
        logger.set_correlation_id(ref.job_id)
        try:
            outcome = start(ref)
        except ClientError as exc:
            logger.error(
                "could not start the export",
                extra={"messageId": message_id, "error": exc.response.get("Error", {}).get("Code")},
            )
            failures.append({"itemIdentifier": message_id})
            continue
        metrics.add_metric(
            name="ExecutionsStarted" if outcome == "started" else "DuplicateStartsIgnored",
            unit=MetricUnit.Count,
            value=1,
        )
        logger.info("export execution", extra={"outcome": outcome, "executionName": ref.execution_name()})
    return {"batchItemFailures": failures}
