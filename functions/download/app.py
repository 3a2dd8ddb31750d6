"""Download Export: stream the job's file into S3, verified and atomic, then write the manifest.

Returns the state with ``transfer``: ``{"complete": true, "manifest": {...}}`` when landed, or
``{"complete": false, "checkpoint": {...}}`` when the invocation's time ran low first (the state machine
calls it again and it resumes with Range). With ``SchemaChangePolicy=quarantine`` a delivery whose schema breaks its
table's lands under ``_quarantine/`` instead; its "Schema Changed" is announced, and ``SchemaQuarantined`` fails the
export (the state machine's failure path marks the day FAILED with its sentence and sends "Export Failed").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from omborigrid_export.errors import SchemaQuarantined
from omborigrid_export.exporter import Quarantined
from omborigrid_export.function_settings import DownloadSettings
from omborigrid_export.lake_facts import LakeFacts
from omborigrid_export.lake_signals import LakeSignals, quarantine_sentence
from omborigrid_export.schema_gate import gate_for
from omborigrid_export.state import ExportState
from omborigrid_export.transfer import Checkpoint, Continued
from omborigrid_lambda import observability, runtime
from omborigrid_lambda.boundary import typed_failures

SETTINGS = DownloadSettings
logger = Logger()
metrics = Metrics()
tracer = Tracer()
# Secrets out of every log record and trace this function writes, third-party loggers' included.
observability.install(logger)

#: Seconds kept in hand at the end of an invocation to return the checkpoint.
RESERVE_SECONDS = 60.0


def _time_left(context: LambdaContext, budget: float | None) -> Callable[[], float]:
    """Seconds left for transfer work; ``budget`` (DOWNLOAD_TIME_BUDGET_SECONDS) caps it (tests, tuning)."""
    started = time.monotonic()

    def left() -> float:
        remaining = context.get_remaining_time_in_millis() / 1000 - RESERVE_SECONDS
        if budget is not None:
            remaining = min(remaining, budget - (time.monotonic() - started))
        return remaining

    return left


@typed_failures
@logger.inject_lambda_context(correlation_id_path="job.jobId", clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    settings = runtime.settings(SETTINGS)
    state = ExportState.from_event(event)
    request = state.ref.request
    logger.append_keys(
        tenantId=request.tenant_id, dataDateFrom=request.date_from.isoformat(), dataDateTo=request.date_to.isoformat()
    )
    ledger = runtime.ledger(settings.ledger_table)
    facts = LakeFacts(runtime.aws("dynamodb"), settings.ledger_table)
    signals = LakeSignals(
        settings.signals,
        store=facts,
        events=runtime.aws("events"),
        glue=runtime.aws("glue") if settings.signals.catalog_database else None,
    )
    resume = state.checkpoint
    if resume is None:
        # A retry after this function was killed (timeout, out of memory) carries no checkpoint in its input:
        # the one saved while the transfer ran lets it continue instead of starting over.
        saved = ledger.load_checkpoint(request, state.ref.job_id)
        if saved is not None:
            resume = Checkpoint.from_dict(saved)
            logger.info("resuming from the saved checkpoint", extra={"bytesDone": resume.bytes_done})
    if resume is None:
        signals.started(state.ref.identity)

    def save(checkpoint: Checkpoint) -> None:
        ledger.save_checkpoint(request, state.ref.job_id, checkpoint.to_dict())

    result = runtime.exporter(settings.export, request.tenant_id).land(
        state.ref.identity,
        bucket=settings.bucket,
        replace=state.ref.force,
        resume=resume,
        on_checkpoint=save,
        time_left=_time_left(context, settings.time_budget_seconds),
        keep_upload_on_failure=True,
        previous_manifest_key=ledger.previous_manifest_key(request) if state.ref.force else None,
        gate=gate_for(settings.export.schema_change_policy, facts, signals.catalog),
    )
    if isinstance(result, Continued):
        save(result.checkpoint)
        metrics.add_metric(name="TransferContinuations", unit=MetricUnit.Count, value=1)
        logger.info("continuing in the next invocation", extra={"bytesDone": result.checkpoint.bytes_done})
        return {**event, "transfer": {"complete": False, "checkpoint": result.checkpoint.to_dict(), "manifest": None}}
    if isinstance(result, Quarantined):
        held = signals.quarantined(result.manifest, result.location)
        for name, count in held.metrics().items():
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=count)
        logger.warning("quarantined", extra={"location": result.location, "manifestKey": result.manifest.manifest_key})
        raise SchemaQuarantined(quarantine_sentence(held.signals, result.location))
    manifest = result.manifest
    ledger.mark_landed(request, state.ref.job_id, manifest.key, manifest.manifest_key)
    for name, count in signals.landed(manifest).metrics().items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=count)
    if not manifest.already_existed:
        metrics.add_metric(name="BytesLanded", unit=MetricUnit.Bytes, value=float(manifest.bytes))
        metrics.add_metric(name="ExportsLanded", unit=MetricUnit.Count, value=1)
        if manifest.timings.transfer_seconds is not None:
            metrics.add_metric(name="TransferSeconds", unit=MetricUnit.Seconds, value=manifest.timings.transfer_seconds)
    logger.info(
        "landed", extra={"key": manifest.key, "bytes": manifest.bytes, "alreadyExisted": manifest.already_existed}
    )
    # Announced as written in S3: a retry that found its landing done announces the same manifest again.
    return {**event, "transfer": {"complete": True, "checkpoint": None, "manifest": manifest.as_written().to_dict()}}
