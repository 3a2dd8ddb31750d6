"""Announce Lineage: the OpenLineage FAIL run event of an export that ended without a file.

Download sends START and COMPLETE; a failed export may never reach Download, so its "Export Failed" event (on the
stack's bus, rule AnnounceLineageOnFailure) is turned into the run's FAIL here. Only deployed when LineageEndpoint
is set. A refused or unreachable endpoint is logged and counted, never retried into a DLQ: lineage is a courtesy.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from omborigrid_export.function_settings import AnnounceLineageSettings
from omborigrid_export.lineage import LineageSender, fail_event_of
from omborigrid_lambda import observability, runtime
from omborigrid_lambda.boundary import typed_failures

SETTINGS = AnnounceLineageSettings
logger = Logger()
metrics = Metrics()
tracer = Tracer()
# Secrets out of every log record and trace this function writes, third-party loggers' included.
observability.install(logger)


@typed_failures
@logger.inject_lambda_context(correlation_id_path="detail.jobId", clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    endpoint = runtime.settings(SETTINGS).lineage_endpoint
    fail = fail_event_of(event, now=datetime.now(UTC))
    if endpoint is None:
        return {"sent": None}
    sent = LineageSender(endpoint).send(fail)
    metrics.add_metric(name="LineageEventsSent" if sent else "LineageEventsNotSent", unit=MetricUnit.Count, value=1)
    return {"sent": sent}
