"""CheckStatus and Download, called directly as the state machine calls them: a job created by CreateJob is
polled until done and landed, and bad states fail with a typed error before anything happens."""

from __future__ import annotations

import json
import time
from datetime import date
from typing import Any

import pytest

from functions.check_status import app as check_status
from functions.create_job import app as create_job
from functions.download import app as download
from omborigrid_export.errors import ConfigurationError, InvalidApiResponse, InvalidInput, UnexpectedFailure
from omborigrid_export.lake_facts import LakeFacts
from omborigrid_export.state import JobRef
from tests.conftest import TENANT

from .conftest import EnvSetter, Resources, StubContext

DAY = "2026-03-02"
POLL = {"attempt": 0, "waitSeconds": 1, "maxWaitSeconds": 2, "maxAttempts": 200, "maxTotalSeconds": 100000}


def created_state(function_env: EnvSetter, aws: Resources, context: StubContext) -> dict[str, Any]:
    """The execution input StartExport would give the state machine, with "Prepare Polling"'s poll added."""
    function_env("CreateJobFunction")
    event = {
        "source": "omborigrid.export",
        "detail-type": "Export Requested",
        "detail": {"tenantIds": [TENANT], "dataDateFrom": DAY, "dataDateTo": DAY},
    }
    create_job.lambda_handler(event, context)
    [message] = aws.queued_messages()
    return {**JobRef.from_message(message).execution_input(), "poll": dict(POLL)}


def poll_until_done(state: dict[str, Any], context: StubContext, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = check_status.lambda_handler(state, context)
        if state["job"]["status"] == "done":
            return state
        time.sleep(0.05)
    raise AssertionError(f"the job was not done within {timeout} s: {state['job']}")


def test_given_a_created_job_then_it_is_polled_until_done_and_landed_byte_identical(
    function_env: EnvSetter, aws: Resources, context: StubContext, simulator: Any
) -> None:
    state = created_state(function_env, aws, context)
    function_env("CheckStatusFunction")

    done = poll_until_done(state, context)

    assert done["poll"]["attempt"] >= 1
    assert done["job"]["jobId"] == state["job"]["jobId"]
    assert "downloadUrl" not in json.dumps(done)
    function_env("DownloadFunction")

    result = download.lambda_handler(done, context)

    transfer = result["transfer"]
    assert transfer["complete"] is True
    manifest = transfer["manifest"]
    key = f"omborigrid/tenant={TENANT}/dt={DAY}/{manifest['sourceFilename']}"
    assert manifest["key"] == key
    landed = aws.client("s3").get_object(Bucket=aws.bucket, Key=key)["Body"].read()
    source = simulator.job_file(state["job"]["jobId"])
    assert source is not None
    assert landed == source.read_bytes()
    [item] = aws.ledger_items()
    assert (item["state"]["S"], item["key"]["S"]) == ("LANDED", key)


@pytest.mark.parametrize("event", [[], "job", 3, None])
@pytest.mark.parametrize("handler", [check_status, download], ids=["check_status", "download"])
def test_given_a_non_object_state_then_invalid_input(
    function_env: EnvSetter, aws: Resources, context: StubContext, handler: Any, event: Any
) -> None:
    function_env("DownloadFunction" if handler is download else "CheckStatusFunction")
    with pytest.raises(InvalidInput, match="something other than an object"):
        handler.lambda_handler(event, context)
    assert aws.client("s3").list_objects_v2(Bucket=aws.bucket).get("KeyCount") == 0


@pytest.mark.parametrize(
    ("state", "match"),
    [
        ({"force": False}, "no 'job' object"),
        ({"job": {"jobId": "a/b", "tenantId": TENANT, "dataDateFrom": DAY, "dataDateTo": DAY}}, "job id"),
        ({"job": {"jobId": "j1", "tenantId": TENANT, "dataDateFrom": DAY, "dataDateTo": DAY}}, "no 'poll'"),
    ],
)
def test_given_a_bad_check_status_state_then_invalid_input_without_calling_the_api(
    function_env: EnvSetter, aws: Resources, context: StubContext, simulator: Any, state: Any, match: str
) -> None:
    function_env("CheckStatusFunction")
    before = simulator.stats().requests
    with pytest.raises(InvalidInput, match=match):
        check_status.lambda_handler(state, context)
    assert simulator.stats().requests == before


def test_given_a_download_without_its_bucket_then_configuration_error_before_the_api_is_asked(
    function_env: EnvSetter, aws: Resources, context: StubContext, simulator: Any
) -> None:
    state = created_state(function_env, aws, context)
    function_env("DownloadFunction", EXPORT_BUCKET=None)
    before = simulator.stats().requests
    with pytest.raises(ConfigurationError, match="missing its EXPORT_BUCKET setting"):
        download.lambda_handler(state, context)
    assert simulator.stats().requests == before


def test_given_an_unexpected_failure_then_a_typed_error_with_a_sentence_and_no_traceback(
    function_env: EnvSetter, aws: Resources
) -> None:
    """A context that is not a Lambda context makes Powertools fail with AttributeError: the boundary turns it
    into UnexpectedFailure, the name the state machine catches, whose message is one line."""
    function_env("CheckStatusFunction")
    with pytest.raises(UnexpectedFailure, match=r"^The function failed unexpectedly \(AttributeError: ") as caught:
        check_status.lambda_handler({"job": {}}, object())
    assert "\n" not in str(caught.value)
    assert "Traceback" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_given_garbled_status_answers_then_each_costs_one_check_and_the_limit_in_a_row_fails_the_export(
    function_env: EnvSetter, aws: Resources, context: StubContext, simulator: Any
) -> None:
    state = created_state(function_env, aws, context)
    function_env("CheckStatusFunction")
    simulator.configure(garbled_status=2)

    first = check_status.lambda_handler(state, context)
    second = check_status.lambda_handler(first, context)

    # Unreadable answers leave the job as last seen ("Is Export Ready" then waits) and are counted.
    assert first["job"] == state["job"]
    assert (first["poll"]["attempt"], first["poll"]["garbledInARow"]) == (1, 1)
    assert second["poll"]["garbledInARow"] == 2
    recovered = check_status.lambda_handler(second, context)
    assert recovered["poll"]["garbledInARow"] == 0
    assert recovered["job"]["status"] in ("queued", "processing", "done")

    simulator.configure(garbled_status=3)
    with pytest.raises(InvalidApiResponse, match="3 status answers in a row"):
        check_status.lambda_handler(
            check_status.lambda_handler(check_status.lambda_handler(recovered, context), context), context
        )


def test_given_a_landing_then_download_keeps_its_facts_beside_the_ledger_entry(
    function_env: EnvSetter, aws: Resources, context: StubContext
) -> None:
    done = poll_until_done(created_state(function_env, aws, context), context)
    function_env("DownloadFunction")

    manifest = download.lambda_handler(done, context)["transfer"]["manifest"]

    facts = LakeFacts(aws.client("dynamodb"), aws.table).between(TENANT, date(2026, 3, 2), date(2026, 3, 2))
    assert [(f.table, f.day.isoformat(), f.bytes, f.files, f.job_id) for f in facts] == [
        ("export", DAY, manifest["bytes"], 1, manifest["jobId"])
    ]
    assert facts[0].manifest_key == manifest["manifestKey"]
