"""lineage.py: OpenLineage run events of an export, captured by a local receiver and valid against the schema.

The receiver is a real HTTP server on loopback. The schema (``tests/openlineage/run-event.schema.json``) is written
from the OpenLineage spec's documented required fields: no registry package ships the spec's JSON files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from omborigrid_export.errors import ConfigurationError, InvalidInput
from omborigrid_export.lake_facts import facts_of
from omborigrid_export.lineage import (
    LineageSender,
    complete_event,
    fail_event,
    fail_event_of,
    run_id,
    start_event,
    table_location,
)
from omborigrid_export.models import ExportRequest, JobIdentity
from tests.lake_samples import DAY1, NORMAL, manifest
from tests.lineage_receiver import Receiver, lineage_errors, lineage_receiver

NOW = datetime(2026, 2, 1, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with lineage_receiver() as server:
        yield server


def endpoint(server: Receiver) -> str:
    return server.endpoint


errors = lineage_errors


def test_an_exports_start_and_complete_reach_the_receiver_valid_and_of_one_run(receiver: Receiver) -> None:
    landed = manifest(DAY1, 1234, archive=True)
    sender = LineageSender(endpoint(receiver))
    assert sender.send(start_event(landed.identity, now=NOW)) is True
    assert sender.send(complete_event(landed, facts_of(landed), now=NOW)) is True
    start, complete = receiver.received
    assert errors(start) == errors(complete) == []
    assert [start["eventType"], complete["eventType"]] == ["START", "COMPLETE"]
    assert start["run"]["runId"] == complete["run"]["runId"] == run_id(landed.identity)
    assert complete["job"] == start["job"]
    assert complete["job"]["name"] == "export.t1"
    assert complete["run"]["facets"]["nominalTime"]["nominalStartTime"] == "2026-01-01T00:00:00Z"
    assert complete["run"]["facets"]["nominalTime"]["nominalEndTime"] == "2026-01-02T00:00:00Z"
    outputs = {o["name"]: o for o in complete["outputs"]}
    assert sorted(outputs) == ["lake/events", "lake/sessions"]
    events = outputs["lake/events"]
    assert events["namespace"] == "s3://lake-bucket"
    assert events["outputFacets"]["outputStatistics"] | {"_producer": "", "_schemaURL": ""} == {
        "_producer": "",
        "_schemaURL": "",
        "rowCount": 1234,
        "size": 2234,
        "fileCount": 1,
    }
    fields = events["facets"]["schema"]["fields"]
    assert len(fields) == len(NORMAL)
    assert {"name": "int1", "type": "INT64"} in fields


def test_a_failed_export_is_a_valid_fail_event_with_the_error(receiver: Receiver) -> None:
    identity = manifest(DAY1, 1).identity
    event = fail_event(identity, error="ExportTimedOut", message="The job did not finish in 6 hours.", now=NOW)
    assert LineageSender(endpoint(receiver)).send(event) is True
    [received] = receiver.received
    assert errors(received) == []
    assert received["eventType"] == "FAIL"
    assert received["run"]["runId"] == run_id(identity)
    assert received["run"]["facets"]["errorMessage"]["message"] == "ExportTimedOut: The job did not finish in 6 hours."


def test_the_schema_refuses_what_the_spec_requires() -> None:
    event = start_event(manifest(DAY1, 1).identity, now=NOW)
    assert errors({k: v for k, v in event.items() if k != "producer"}) == ["'producer' is a required property"]
    assert errors(event | {"run": {"runId": "not-a-uuid"}}) == ["'not-a-uuid' is not a 'uuid'"]
    broken = json.loads(json.dumps(event))
    del broken["run"]["facets"]["nominalTime"]["_producer"]
    assert errors(broken) == ["'_producer' is a required property"]


def test_unproven_landings_leave_the_row_count_out() -> None:
    landed = manifest(DAY1, None)
    [output] = complete_event(landed, facts_of(landed), now=NOW)["outputs"]
    assert "rowCount" not in output["outputFacets"]["outputStatistics"]
    assert "schema" not in output["facets"]
    assert output["name"] == "lake"


def test_a_refusing_or_absent_receiver_is_false_never_an_exception(receiver: Receiver) -> None:
    receiver.status = 500
    event = start_event(manifest(DAY1, 1).identity, now=NOW)
    assert LineageSender(endpoint(receiver)).send(event) is False
    assert LineageSender("http://127.0.0.1:9/lineage", timeout=1).send(event) is False


def test_the_endpoint_must_be_http() -> None:
    with pytest.raises(ConfigurationError, match="must be an http"):
        LineageSender("file:///etc/passwd")


@pytest.mark.parametrize(
    ("key", "location"),
    [
        ("lake/events/tenant=t1/dt=2026-01-01/part-0.parquet", "lake/events"),
        ("tenant=t1/dt=2026-01-01/e.parquet", "/"),
        ("a/b/file.parquet", "a/b"),
    ],
)
def test_table_location(key: str, location: str) -> None:
    assert table_location(key) == location


def test_an_export_failed_event_becomes_the_runs_fail() -> None:
    # The detail the state machine's "Announce Failure" puts (schemas/export-failed.schema.json).
    detail = {
        "tenantId": "621e1fc633350f0007637a0c",
        "dataDateFrom": "2026-11-01",
        "dataDateTo": "2026-11-01",
        "jobId": "65f0c0ffee0000000000abcd",
        "error": "ExportTimedOut",
        "message": "The job did not finish within the polling bounds.",
        "executionId": "arn:aws:states:eu-west-1:123456789012:execution:export:x",
    }
    schema = json.loads((Path(__file__).parents[2] / "schemas" / "export-failed.schema.json").read_text("utf-8"))
    Draft202012Validator(schema).validate(detail)
    sample = {"source": "omborigrid.export", "detail-type": "Export Failed", "detail": detail}
    event = fail_event_of(sample, now=NOW)
    assert errors(event) == []
    identity = JobIdentity(
        detail["jobId"],
        ExportRequest(
            detail["tenantId"], date.fromisoformat(detail["dataDateFrom"]), date.fromisoformat(detail["dataDateTo"])
        ),
    )
    assert event["run"]["runId"] == run_id(identity)
    assert event["run"]["facets"]["errorMessage"]["message"] == f"{detail['error']}: {detail['message']}"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"detail-type": "Export Completed", "detail": {}}, 'not an "Export Failed" event'),
        ({"detail-type": "Export Failed", "detail": "x"}, 'not an "Export Failed" event'),
        (
            {"detail-type": "Export Failed", "detail": {"tenantId": "t1", "jobId": "j"}},
            "lacks dataDateFrom, dataDateTo",
        ),
    ],
)
def test_anything_else_is_invalid_input(event: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        fail_event_of(event, now=NOW)
