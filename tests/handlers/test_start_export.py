"""StartExport's handler, called directly: one execution per job, and a bad record fails alone."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.start_export import app
from omborigrid_export.errors import ConfigurationError, InvalidInput
from omborigrid_export.executions import execution_arn
from omborigrid_export.state import JobRef
from tests.conftest import TENANT

from .conftest import EnvSetter, Resources, StubContext

JOB = {
    "jobId": "65f1c0ffee0123456789abcd",
    "tenantId": TENANT,
    "dataDateFrom": "2026-03-01",
    "dataDateTo": "2026-03-01",
}


def record(message_id: str, body: Any) -> dict[str, Any]:
    return {"messageId": message_id, "body": body, "eventSource": "aws:sqs"}


def test_given_a_job_message_then_its_execution_starts_with_the_deterministic_name(
    function_env: EnvSetter, aws: Resources, context: StubContext
) -> None:
    function_env("StartExportFunction")

    assert app.lambda_handler({"Records": [record("m1", json.dumps({**JOB, "force": False}))]}, context) == {
        "batchItemFailures": []
    }

    ref = JobRef.from_message(json.dumps(JOB))
    [execution] = aws.executions()
    assert execution["name"] == ref.execution_name()
    assert execution["executionArn"] == execution_arn(aws.state_machine_arn, ref)
    started = aws.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])
    assert json.loads(started["input"]) == ref.execution_input()


def test_given_a_redelivered_message_then_no_second_execution(
    function_env: EnvSetter, aws: Resources, context: StubContext
) -> None:
    function_env("StartExportFunction")
    batch = {"Records": [record("m1", json.dumps(JOB))]}
    app.lambda_handler(batch, context)

    assert app.lambda_handler(batch, context) == {"batchItemFailures": []}
    assert len(aws.executions()) == 1


def test_given_bad_records_among_good_ones_then_only_the_bad_fail_and_the_rest_start(
    function_env: EnvSetter, aws: Resources, context: StubContext
) -> None:
    function_env("StartExportFunction")
    other = {**JOB, "jobId": "65f1c0ffee0123456789abce"}
    batch = {
        "Records": [
            record("good-1", json.dumps(JOB)),
            record("dict-body", JOB),  # a body that is not text
            record("not-json", "{jobId"),
            record("array", "[1, 2]"),
            record("bad-tenant", json.dumps({**JOB, "tenantId": "../x"})),
            record("good-2", json.dumps(other)),
        ]
    }

    result = app.lambda_handler(batch, context)

    assert result == {
        "batchItemFailures": [
            {"itemIdentifier": "dict-body"},
            {"itemIdentifier": "not-json"},
            {"itemIdentifier": "array"},
            {"itemIdentifier": "bad-tenant"},
        ]
    }
    assert sorted(e["name"] for e in aws.executions()) == sorted(
        JobRef.from_message(json.dumps(j)).execution_name() for j in (JOB, other)
    )


@pytest.mark.parametrize("event", [[], "Records", None, {"Records": "m1"}, {}])
def test_given_an_event_that_is_not_an_sqs_batch_then_invalid_input(
    function_env: EnvSetter, aws: Resources, context: StubContext, event: Any
) -> None:
    function_env("StartExportFunction")
    with pytest.raises(InvalidInput, match="not an SQS batch"):
        app.lambda_handler(event, context)
    assert aws.executions() == []


def test_given_a_missing_state_machine_setting_then_configuration_error(
    function_env: EnvSetter, aws: Resources, context: StubContext
) -> None:
    function_env("StartExportFunction", EXPORT_STATE_MACHINE_ARN=None)
    with pytest.raises(ConfigurationError, match="missing its EXPORT_STATE_MACHINE_ARN setting"):
        app.lambda_handler({"Records": [record("m1", json.dumps(JOB))]}, context)
    assert aws.executions() == []


def test_given_step_functions_refuses_then_each_record_fails_alone_with_a_typed_error(
    function_env: EnvSetter, aws: Resources, context: StubContext, caplog: pytest.LogCaptureFixture
) -> None:
    """A state machine that does not exist (a wrong ARN): every record is reported, none is lost silently."""
    missing = aws.state_machine_arn.rsplit(":", 1)[0] + ":missing"
    function_env("StartExportFunction", EXPORT_STATE_MACHINE_ARN=missing)
    batch = {"Records": [record("m1", json.dumps(JOB)), record("m2", json.dumps({**JOB, "jobId": "j2"}))]}

    result = app.lambda_handler(batch, context)

    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]}
    assert aws.executions() == []
    errors = [getattr(r, "error", "") for r in caplog.records if r.getMessage() == "could not start the export"]
    assert len(errors) == 2
    assert all(e.startswith(f"Step Functions could not start the execution of {TENANT}") for e in errors), errors
