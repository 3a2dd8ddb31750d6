"""Create Job: decide what to export (a nightly tick or an "Export Requested" event), claim each
tenant/day in the ledger, create the job through the API and enqueue it. Idempotent: see ledger.py."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from omborigrid_export.errors import ExportFailed, InvalidInput
from omborigrid_export.models import ExportRequest, validate_tenant_id
from omborigrid_export.scheduling import AdhocRequest, nightly_requests, request_exports, zone
from omborigrid_lambda import runtime

logger = Logger()
metrics = Metrics()
tracer = Tracer()


def plan(event: dict[str, Any]) -> tuple[list[ExportRequest], bool]:
    """What this event asks for: (requests, force)."""
    if event.get("trigger") == "schedule":
        tenants = [validate_tenant_id(t.strip()) for t in runtime.env("TENANT_IDS").split(",") if t.strip()]
        tz = zone(os.environ.get("SCHEDULE_TIMEZONE") or "UTC")
        lookback = int(os.environ.get("LOOKBACK_DAYS") or 7)
        return nightly_requests(tenants, datetime.now(UTC), tz, lookback, runtime.ledger()), False
    if event.get("source") == "omborigrid.export" and event.get("detail-type") == "Export Requested":
        adhoc = AdhocRequest.from_detail(event.get("detail"))
        return adhoc.expand(), adhoc.force
    raise InvalidInput(
        'CreateJob accepts a scheduled tick ({"trigger": "schedule"}) or an omborigrid.export '
        "'Export Requested' event; this event is neither."
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    requests, force = plan(event)
    queue_url = runtime.env("EXPORT_QUEUE_URL")
    sqs = runtime.aws("sqs")
    outcomes = request_exports(
        requests,
        create=runtime.exporter().create,
        ledger=runtime.ledger(),
        enqueue=lambda body: sqs.send_message(QueueUrl=queue_url, MessageBody=body),
        force=force,
    )
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
    metrics.add_metric(name="JobsCreated", unit=MetricUnit.Count, value=counts.get("created", 0))
    logger.info("export requests handled", extra={"counts": counts, "requested": len(requests)})
    failed = [o for o in outcomes if o.outcome == "failed"]
    if failed:
        metrics.add_metric(name="JobRequestFailures", unit=MetricUnit.Count, value=len(failed))
        first = failed[0]
        raise ExportFailed(
            f"{len(failed)} of {len(outcomes)} export requests failed; first: {first.request.label}: {first.detail}"
        )
    return {"requested": len(requests), "counts": counts, "jobs": [o.to_dict() for o in outcomes]}
