"""OpenLineage run events for each export, so the lake's lineage tools (Marquez, DataZone through an adapter, any
OpenLineage receiver) see where a table's days come from without a plugin of ours.

One export is one OpenLineage *run* of the job ``export.{tenantId}`` in the namespace ``omborigrid-export``: START
when its transfer begins and COMPLETE when it landed (both sent by Download), FAIL when it ended without a file (sent
from its "Export Failed" event by the AnnounceLineage function). The run id is a UUID derived
from the API's job id (``uuid5``), so the events of one export, sent by different invocations, name the same run.
The output datasets are the landed tables (namespace ``s3://{bucket}``, name = the table's location under the
prefix), each with the ``schema`` dataset facet (from the proof's columns) and the ``outputStatistics`` facet (rows,
bytes, files); the run's ``nominalTime`` facet is the exported day(s), midnight to midnight UTC.

Lineage is a courtesy to other tools, never a reason to fail an export: :class:`LineageSender` posts with a short
timeout and reports a refused or unreachable endpoint as ``False`` (the caller logs it and counts a metric).
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from .errors import ConfigurationError, InvalidInput
from .lake_facts import LandingFact
from .manifest import Manifest
from .models import ExportRequest, JobIdentity, iso_utc, parse_date, validate_tenant_id
from .schema_diff import type_name

logger = logging.getLogger(__name__)

PRODUCER = "https://github.com/omborigrid/omborigrid-export"
SPEC = "https://openlineage.io/spec"
RUN_EVENT_SCHEMA_URL = f"{SPEC}/2-0-2/OpenLineage.json#/$defs/RunEvent"
JOB_NAMESPACE = "omborigrid-export"
#: Fixed namespace for the run ids (uuid5 of the API's job id).
RUN_ID_NAMESPACE = uuid.UUID("6f1c5a1e-3f0b-5b7e-9a43-0e1d2c3b4a59")
_FACETS = {
    "nominalTime": f"{SPEC}/facets/1-0-1/NominalTimeRunFacet.json#/$defs/NominalTimeRunFacet",
    "errorMessage": f"{SPEC}/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
    "jobType": f"{SPEC}/facets/2-0-3/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
    "schema": f"{SPEC}/facets/1-1-1/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
    "outputStatistics": (
        f"{SPEC}/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet"
    ),
}


def _facet(name: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": _FACETS[name], **fields}


def run_id(identity: JobIdentity) -> str:
    return str(uuid.uuid5(RUN_ID_NAMESPACE, identity.job_id))


@dataclass(frozen=True, slots=True)
class OutputTable:
    """One landed table of an export: where it lives and what the landing put there."""

    bucket: str
    location: str
    facts: tuple[LandingFact, ...]

    def to_dataset(self) -> dict[str, Any]:
        columns = self.facts[0].columns if self.facts else ()
        rows = [f.rows for f in self.facts]
        statistics: dict[str, Any] = {
            "size": sum(f.bytes for f in self.facts),
            "fileCount": sum(f.files for f in self.facts),
        }
        if all(r is not None for r in rows):
            statistics["rowCount"] = sum(r for r in rows if r is not None)
        dataset: dict[str, Any] = {
            "namespace": f"s3://{self.bucket}",
            "name": self.location,
            "facets": {},
            "outputFacets": {"outputStatistics": _facet("outputStatistics", **statistics)},
        }
        if columns:
            fields = [{"name": c.path, "type": type_name(c)} for c in columns]
            dataset["facets"]["schema"] = _facet("schema", fields=fields)
        return dataset


def table_location(key: str) -> str:
    """A landed key's table location: its path before the ``tenant=`` segment (the layout's table root)."""
    segments = key.split("/")
    for index, segment in enumerate(segments):
        if segment.startswith("tenant="):
            return "/".join(segments[:index]) or "/"
    return "/".join(segments[:-1]) or "/"


def outputs_of(manifest: Manifest, facts: Sequence[LandingFact]) -> list[OutputTable]:
    """The manifest's landed tables, each with its facts (grouped by table location)."""
    by_table: dict[str, str] = {}
    for file in manifest.files:
        by_table.setdefault(file.table or "export", table_location(file.key))
    return [
        OutputTable(manifest.bucket, location, tuple(f for f in facts if f.table == table))
        for table, location in by_table.items()
    ]


def _event(kind: str, identity: JobIdentity, now: datetime, **extra: Any) -> dict[str, Any]:
    request = identity.request
    start = datetime.combine(request.date_from, time(0), tzinfo=UTC)
    end = datetime.combine(request.date_to + timedelta(days=1), time(0), tzinfo=UTC)
    run_facets = {"nominalTime": _facet("nominalTime", nominalStartTime=iso_utc(start), nominalEndTime=iso_utc(end))}
    run_facets |= extra.pop("run_facets", {})
    return {
        "eventType": kind,
        "eventTime": iso_utc(now),
        "producer": PRODUCER,
        "schemaURL": RUN_EVENT_SCHEMA_URL,
        "run": {"runId": run_id(identity), "facets": run_facets},
        "job": {
            "namespace": JOB_NAMESPACE,
            "name": f"export.{request.tenant_id}",
            "facets": {
                "jobType": _facet("jobType", processingType="BATCH", integration="OMBORIGRID", jobType="EXPORT")
            },
        },
        "inputs": [],
        **extra,
    }


def start_event(identity: JobIdentity, *, now: datetime) -> dict[str, Any]:
    return _event("START", identity, now, outputs=[])


def complete_event(manifest: Manifest, facts: Sequence[LandingFact], *, now: datetime) -> dict[str, Any]:
    outputs = [table.to_dataset() for table in outputs_of(manifest, facts)]
    return _event("COMPLETE", manifest.identity, now, outputs=outputs)


def fail_event(identity: JobIdentity, *, error: str, message: str, now: datetime) -> dict[str, Any]:
    failure = _facet("errorMessage", message=f"{error}: {message}", programmingLanguage="python")
    return _event("FAIL", identity, now, outputs=[], run_facets={"errorMessage": failure})


def fail_event_of(export_failed: Any, *, now: datetime) -> dict[str, Any]:
    """The FAIL run event of an "Export Failed" event (as EventBridge delivers it). InvalidInput when it is not one."""
    detail = export_failed.get("detail") if isinstance(export_failed, dict) else None
    if not isinstance(detail, dict) or export_failed.get("detail-type") != "Export Failed":
        raise InvalidInput('The event is not an "Export Failed" event with a detail object.')
    names = ("tenantId", "dataDateFrom", "dataDateTo", "jobId", "error", "message")
    missing = sorted(name for name in names if not isinstance(detail.get(name), str) or not detail.get(name))
    if missing:
        raise InvalidInput(f'The "Export Failed" event lacks {", ".join(missing)}.')
    fields: dict[str, str] = {name: str(detail[name]) for name in names}
    request = ExportRequest(
        validate_tenant_id(fields["tenantId"]),
        parse_date(fields["dataDateFrom"], what="dataDateFrom"),
        parse_date(fields["dataDateTo"], what="dataDateTo"),
    )
    identity = JobIdentity(fields["jobId"], request)
    return fail_event(identity, error=fields["error"], message=fields["message"], now=now)


class LineageSender:
    """POSTs run events as JSON to the operator's OpenLineage endpoint (e.g. ``https://marquez/api/v1/lineage``)."""

    def __init__(self, endpoint: str, *, timeout: float = 5.0) -> None:
        if not endpoint.startswith(("https://", "http://")):
            raise ConfigurationError(f"The lineage endpoint must be an http(s) URL, not {endpoint!r}.")
        self._endpoint = endpoint
        self._timeout = timeout

    def send(self, event: dict[str, Any]) -> bool:
        """Whether the endpoint accepted ``event`` (2xx). A refusal or an unreachable endpoint is logged."""
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self._endpoint,
            data=json.dumps(event).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as answer:  # noqa: S310
                return 200 <= int(answer.status) < 300
        except urllib.error.HTTPError as exc:
            logger.warning("the lineage endpoint refused a %s event: HTTP %s", event.get("eventType"), exc.code)
        except (urllib.error.URLError, OSError) as exc:
            logger.warning("the lineage endpoint could not be reached: %s", type(exc).__name__)
        return False
