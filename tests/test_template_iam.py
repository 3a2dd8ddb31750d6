"""Template checks of the IAM parameters that the least-privilege test (tests/statemachine) cannot vary: the
parameters are fixed per local stack."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"


def parameter(name: str) -> dict[str, Any]:
    parameters: dict[str, Any] = yaml_parse(TEMPLATE.read_text(encoding="utf-8"))["Parameters"]
    return dict(parameters[name])


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("omborigrid/api-token", True),
        ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:omborigrid/api-token-AbC123", True),
        # Without its 6-character suffix an ARN would match no policy resource: refused at deploy time.
        ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:omborigrid/api-token", False),
        ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:", False),
    ],
)
def test_token_secret_refuses_an_arn_without_its_suffix(value: str, accepted: bool) -> None:
    assert bool(re.fullmatch(parameter("TokenSecret")["AllowedPattern"], value)) is accepted


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("BucketKmsKeyArn", "", True),
        ("BucketKmsKeyArn", "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", True),
        ("BucketKmsKeyArn", "arn:aws:kms:eu-west-1:123456789012:alias/lake", False),
        ("ExpectedBucketOwner", "", True),
        ("ExpectedBucketOwner", "123456789012", True),
        ("ExpectedBucketOwner", "12345678901", False),
    ],
)
def test_bucket_parameters_accept_only_what_the_grants_can_use(name: str, value: str, accepted: bool) -> None:
    assert bool(re.fullmatch(parameter(name)["AllowedPattern"], value)) is accepted


def test_requesters_default_to_the_account() -> None:
    requesters = parameter("RequesterPrincipalArns")
    assert (requesters["Type"], requesters["Default"]) == ("CommaDelimitedList", "")


def resources() -> dict[str, Any]:
    parsed: dict[str, Any] = yaml_parse(TEMPLATE.read_text(encoding="utf-8"))["Resources"]
    return parsed


def test_the_state_machine_invokes_exactly_its_two_functions() -> None:
    policies = resources()["ExportStateMachine"]["Properties"]["Policies"]
    statements = [s for p in policies for s in p.get("Statement", [])]
    [invoke] = [s for s in statements if s["Action"] == "lambda:InvokeFunction"]
    assert invoke["Resource"] == [
        {"Fn::GetAtt": ["CheckStatusFunction", "Arn"]},
        {"Fn::GetAtt": ["DownloadFunction", "Arn"]},
    ]
    # No SAM policy template with a wildcard resource (LambdaInvokePolicy grants function:<name>*).
    assert not [p for p in policies if "LambdaInvokePolicy" in p or "EventBridgePutEventsPolicy" in p]


def test_no_function_holds_a_whole_crud_policy() -> None:
    for name, resource in resources().items():
        if resource["Type"] == "AWS::Serverless::Function":
            policies = resource["Properties"].get("Policies", [])
            assert not [p for p in policies if "DynamoDBCrudPolicy" in p or "S3CrudPolicy" in p], name


def test_the_logs_key_serves_only_the_stacks_log_groups() -> None:
    key_policy = resources()["OperationsKey"]["Properties"]["KeyPolicy"]["Statement"]
    [logs] = [s for s in key_policy if s["Sid"] == "CloudWatchLogsEncryptTheLogGroups"]
    arns = logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    assert [a["Fn::Sub"].split(":log-group:")[1] for a in arns] == [
        "/aws/lambda/${AWS::StackName}/*",
        "/aws/vendedlogs/states/${AWS::StackName}-export",
    ]
    names = [
        r["Properties"]["LogGroupName"]["Fn::Sub"] for r in resources().values() if r["Type"] == "AWS::Logs::LogGroup"
    ]
    assert names
    assert all(
        n.startswith("/aws/lambda/${AWS::StackName}/") or n == arns[1]["Fn::Sub"].split(":log-group:")[1] for n in names
    )
