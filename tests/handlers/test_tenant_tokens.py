"""CreateJob's handler with a token map in the secret: each tenant's own token, a rotated one, a refused one.

The simulator gives each tenant a token of its own (another tenant's token gets 403), as the Grid does.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from functions.check_status import app as check_status
from functions.create_job import app
from omborigrid_export.errors import AuthError
from omborigrid_export.state import JobRef

from .conftest import REGION, EnvSetter, Resources, StubContext

EU, US = "eu0000000000000000000001", "us0000000000000000000002"
DAY = "2026-03-01"


def requested(*tenants: str, day: str = DAY) -> dict[str, Any]:
    detail = {"tenantIds": list(tenants), "dataDateFrom": day, "dataDateTo": day}
    return {"source": "omborigrid.export", "detail-type": "Export Requested", "detail": detail}


def put_secret(aws: Resources, tokens: dict[str, str]) -> None:
    value = json.dumps({"tenants": {tenant: {"token": token} for tenant, token in tokens.items()}})
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(SecretId=aws.secret, SecretString=value)


def capture_failed_events() -> str:
    sqs, events = boto3.client("sqs", region_name=REGION), boto3.client("events", region_name=REGION)
    url: str = sqs.create_queue(QueueName="failed-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="failed", EventPattern=json.dumps({"detail-type": ["Export Failed"]}))
    events.put_targets(Rule="failed", Targets=[{"Id": "q", "Arn": arn}])
    return url


def test_given_a_token_per_tenant_then_each_job_is_created_with_its_tenants_token(
    function_env: EnvSetter, aws: Resources, context: StubContext, simulator: Any
) -> None:
    simulator.configure(tenant_tokens={EU: "tok-eu", US: "tok-us"})
    put_secret(aws, {EU: "tok-eu", US: "tok-us"})
    function_env("CreateJobFunction")

    result = app.lambda_handler(requested(EU, US), context)

    assert result["counts"] == {"created": 2}
    assert sorted(j["tenantId"] for j in simulator.jobs()) == [EU, US]
    assert simulator.stats().by_status.get("403") is None


def test_given_a_token_rotated_after_it_was_cached_then_one_refusal_rereads_the_secret_and_the_job_is_created(
    function_env: EnvSetter, aws: Resources, context: StubContext, simulator: Any
) -> None:
    simulator.configure(tenant_tokens={EU: "tok-eu"})
    put_secret(aws, {EU: "tok-eu"})
    function_env("CreateJobFunction")
    app.lambda_handler(requested(EU), context)  # the map is cached now
    simulator.configure(tenant_tokens={EU: "tok-eu-rotated"})
    put_secret(aws, {EU: "tok-eu-rotated"})
    simulator.reset_stats()

    result = app.lambda_handler(requested(EU, day="2026-03-02"), context)

    assert result["counts"] == {"created": 1}, result
    assert simulator.stats().by_status.get("401") == 1  # the cached token, once; then the re-read one worked


def test_given_a_refused_token_then_its_day_fails_with_auth_error_an_event_names_the_tenant_and_the_run_succeeds(
    function_env: EnvSetter, aws: Resources, context: StubContext, simulator: Any
) -> None:
    simulator.configure(tenant_tokens={EU: "tok-eu", US: "tok-us"}, expired_tokens=["tok-us"])
    put_secret(aws, {EU: "tok-eu", US: "tok-us"})
    queue = capture_failed_events()
    function_env("CreateJobFunction")

    result = app.lambda_handler(requested(EU, US), context)

    assert result["counts"] == {"created": 1, "failed": 1}
    [refused] = [j for j in result["jobs"] if j["outcome"] == "failed"]
    assert (refused["tenantId"], refused["error"]) == (US, "AuthError")
    assert simulator.stats().by_status.get("401") == 2  # one POST, one after re-reading the secret
    states = {i["tenantId"]["S"]: (i["state"]["S"], i.get("error", {}).get("S", "")) for i in aws.ledger_items()}
    assert states[EU] == ("QUEUED", "")
    assert states[US][0] == "FAILED"
    assert states[US][1].startswith("AuthError: The OmboriGrid API at ")
    messages = boto3.client("sqs", region_name=REGION).receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
    [event] = [json.loads(m["Body"]) for m in messages["Messages"]]
    assert event["source"] == "omborigrid.export"
    assert (event["detail"]["tenantId"], event["detail"]["error"], event["detail"]["jobId"]) == (US, "AuthError", None)
    assert event["detail"]["message"].startswith(f"Tenant {US}: The OmboriGrid API at ")
    assert "tok-us" not in json.dumps(event)


def test_given_a_token_revoked_while_its_job_runs_then_the_status_check_names_the_tenant_and_lands_on_its_host(
    function_env: EnvSetter, aws: Resources, context: StubContext, simulator: Any
) -> None:
    simulator.configure(tenant_tokens={EU: "tok-eu"})
    put_secret(aws, {EU: "tok-eu"})
    function_env("CreateJobFunction")
    app.lambda_handler(requested(EU), context)
    [message] = aws.queued_messages()
    state = {
        **JobRef.from_message(message).execution_input(),
        "poll": {"attempt": 0, "waitSeconds": 1, "maxWaitSeconds": 2, "maxAttempts": 5, "maxTotalSeconds": 100},
    }
    simulator.configure(expired_tokens=["tok-eu"])
    function_env("CheckStatusFunction")

    with pytest.raises(AuthError) as caught:
        check_status.lambda_handler(state, context)

    assert str(caught.value).startswith(f"Tenant {EU}: The OmboriGrid API at ")
    assert "tok-eu" not in str(caught.value)
    simulator.configure(expired_tokens=[])
    assert check_status.lambda_handler(state, context)["job"]["jobId"] == state["job"]["jobId"]
