"""The ASL's failure path on its own: whatever Cause a caught error carries, "Export Failed" gets a sentence.

The real failure states of statemachine/export.asl.json run on moto's Step Functions engine behind one Pass
state that injects the caught error (what a Catch puts at ``$.error``); instead of putting the event, the run
ends with the "Export Failed" detail the real "Publish Export Failed" state would send.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

ASL = Path(__file__).resolve().parents[2] / "statemachine" / "export.asl.json"
FAILURE_STATES = ("Describe Typed Failure", "Read Failure Cause", "Has Failure Message", "Keep Failure Message")
JOB = {"jobId": "j1", "tenantId": "t1", "dataDateFrom": "2026-03-01", "dataDateTo": "2026-03-01"}
STACK_TRACE = '["  File \\"/var/task/app.py\\", line 1, in lambda_handler"]'


def failure_detail(error: dict[str, Any], *, caught_as: str = "Describe Typed Failure") -> dict[str, Any]:
    """Run the failure path from the state the task's Catch leads to (typed errors, or States.ALL)."""
    states = json.loads(ASL.read_text(encoding="utf-8"))["States"]
    publish = states["Publish Export Failed"]
    detail_of_event = publish["Parameters"]["Entries"][0]["Detail"]
    definition = {
        "StartAt": "Catch",
        "States": {
            "Catch": {"Type": "Pass", "Result": error, "ResultPath": "$.error", "Next": caught_as},
            **{name: states[name] for name in FAILURE_STATES},
            "Describe Other Failure": states["Describe Other Failure"],
            "Publish Export Failed": {"Type": "Pass", "Parameters": detail_of_event, "End": True},
        },
    }
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name="eu-west-1")
        machine = sfn.create_state_machine(
            name="failure-path", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/r"
        )["stateMachineArn"]
        arn = sfn.start_execution(stateMachineArn=machine, name="run", input=json.dumps({"job": JOB}))["executionArn"]
        deadline = time.monotonic() + 30
        while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            assert time.monotonic() < deadline, "the failure path did not finish"
            time.sleep(0.05)
    assert described["status"] == "SUCCEEDED", described
    result: dict[str, Any] = json.loads(described["output"])
    return result


def test_given_our_error_then_the_event_carries_its_message_only() -> None:
    cause = json.dumps({"errorMessage": "The file is not parquet.", "errorType": "IntegrityError", "stackTrace": []})
    detail = failure_detail({"Error": "IntegrityError", "Cause": cause})
    assert (detail["error"], detail["message"]) == ("IntegrityError", "The file is not parquet.")
    assert detail["tenantId"] == "t1"


@pytest.mark.parametrize(
    "cause",
    [
        "Task timed out after 900.00 seconds",
        "",
        '{"errorType": "IntegrityError", "stackTrace": ' + STACK_TRACE + "}",
        '{"errorMessage": ["not", "a", "sentence"], "stackTrace": ' + STACK_TRACE + "}",
    ],
    ids=["plain-text", "empty", "json-without-message", "message-not-text"],
)
def test_given_a_cause_that_is_not_our_json_then_a_generic_sentence_and_no_lambda_json(cause: str) -> None:
    detail = failure_detail({"Error": "IntegrityError", "Cause": cause})
    assert detail["error"] == "IntegrityError"
    assert detail["message"].startswith("A step of the export failed with IntegrityError")
    assert "stackTrace" not in json.dumps(detail)


def test_given_a_service_error_then_the_event_names_it_without_its_cause() -> None:
    lambda_json = json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": "RequestId: 1 Error: timed out"})
    states = json.loads(ASL.read_text(encoding="utf-8"))["States"]
    [other] = [c for c in states["Download Export"]["Catch"] if c["ErrorEquals"] == ["States.ALL"]]
    detail = failure_detail({"Error": "Sandbox.Timedout", "Cause": lambda_json}, caught_as=other["Next"])
    assert detail["error"] == "Sandbox.Timedout"
    assert "RequestId" not in detail["message"]
    assert "Sandbox.Timedout" in detail["message"]
