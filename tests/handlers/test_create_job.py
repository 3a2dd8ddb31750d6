"""CreateJob's handler, called directly: what lands in the ledger and the queue, and what never does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.create_job import app
from omborigrid_export.errors import ConfigurationError, InvalidInput
from tests.conftest import TENANT

from .conftest import EnvSetter, Resources, StubContext

DAY = "2026-03-01"


def requested(**detail: Any) -> dict[str, Any]:
    body = {"tenantIds": [TENANT], "dataDateFrom": DAY, "dataDateTo": DAY, **detail}
    return {"source": "omborigrid.export", "detail-type": "Export Requested", "detail": body}


def test_given_an_export_request_then_one_job_is_created_recorded_and_enqueued(
    function_env: EnvSetter, aws: Resources, context: StubContext, simulator: Any
) -> None:
    function_env("CreateJobFunction")

    result = app.lambda_handler(requested(), context)

    [job] = result["jobs"]
    assert (job["outcome"], job["tenantId"], job["dataDateFrom"]) == ("created", TENANT, DAY)
    assert result["counts"] == {"created": 1}
    assert [j["id"] for j in simulator.jobs()] == [job["jobId"]]
    [item] = aws.ledger_items()
    assert (item["state"]["S"], item["jobId"]["S"], item["dataRange"]["S"]) == ("QUEUED", job["jobId"], f"{DAY}/{DAY}")
    assert "enqueuedAt" in item
    [message] = aws.queued_messages()
    assert json.loads(message) == {
        "jobId": job["jobId"],
        "tenantId": TENANT,
        "dataDateFrom": DAY,
        "dataDateTo": DAY,
        "force": False,
    }


def test_given_the_same_request_twice_then_the_second_creates_nothing(
    function_env: EnvSetter, aws: Resources, context: StubContext, simulator: Any
) -> None:
    function_env("CreateJobFunction")
    app.lambda_handler(requested(), context)

    again = app.lambda_handler(requested(), context)

    assert again["counts"] == {"skipped": 1}
    assert len(simulator.jobs()) == 1
    assert len(aws.queued_messages()) == 1


def test_given_an_export_failed_event_then_the_day_is_failed_and_its_slot_freed(
    function_env: EnvSetter, aws: Resources, context: StubContext
) -> None:
    function_env("CreateJobFunction")
    [job] = app.lambda_handler(requested(), context)["jobs"]
    failed = {
        "source": "omborigrid.export",
        "detail-type": "Export Failed",
        "detail": {
            "jobId": job["jobId"],
            "tenantId": TENANT,
            "dataDateFrom": DAY,
            "dataDateTo": DAY,
            "error": "IntegrityError",
            "message": "The file is not parquet.",
        },
    }

    assert app.lambda_handler(failed, context) == {"counts": {}, "jobs": []}

    [item] = aws.ledger_items()
    assert item["state"]["S"] == "FAILED"
    assert item["error"]["S"] == "IntegrityError: The file is not parquet."
    capacity = aws.client("dynamodb").get_item(
        TableName=aws.table, Key={"tenantId": {"S": "#capacity"}, "dataRange": {"S": "#jobs-in-flight"}}
    )["Item"]
    assert capacity["inFlight"]["N"] == "0"


def test_given_a_schedule_tick_without_tenants_then_nothing_is_planned(
    function_env: EnvSetter, aws: Resources, context: StubContext, simulator: Any
) -> None:
    """TenantIds defaults to "" ("the nightly run exports nothing"): the tick is a no-op, not a failure."""
    function_env("CreateJobFunction", TENANT_IDS="")

    assert app.lambda_handler({"trigger": "schedule"}, context) == {"counts": {}, "jobs": [], "pausedTenants": []}
    assert aws.ledger_items() == []
    assert simulator.jobs() == []


def test_given_a_schedule_tick_then_yesterday_and_the_window_are_requested(
    function_env: EnvSetter, aws: Resources, context: StubContext, simulator: Any
) -> None:
    function_env("CreateJobFunction", TENANT_IDS=TENANT, LOOKBACK_DAYS="2")

    result = app.lambda_handler({"trigger": "schedule"}, context)

    assert result["counts"] == {"created": 3}
    assert len({j["dataDateFrom"] for j in result["jobs"]}) == 3
    assert len(simulator.jobs()) == 3
    assert len(aws.queued_messages()) == 3


@pytest.mark.parametrize("event", [[], "schedule", 7, None, {"trigger": "nightly"}, {"source": "elsewhere"}])
def test_given_an_event_that_is_no_trigger_then_invalid_input_and_nothing_written(
    function_env: EnvSetter, aws: Resources, context: StubContext, simulator: Any, event: Any
) -> None:
    function_env("CreateJobFunction")

    with pytest.raises(InvalidInput):
        app.lambda_handler(event, context)

    assert aws.ledger_items() == []
    assert simulator.jobs() == []


def test_given_a_bad_request_detail_then_invalid_input_naming_the_field(
    function_env: EnvSetter, aws: Resources, context: StubContext
) -> None:
    function_env("CreateJobFunction")
    with pytest.raises(InvalidInput, match="split must be 'daily' or 'none'"):
        app.lambda_handler(requested(split="weekly"), context)
    assert aws.ledger_items() == []


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"MAX_JOBS_IN_FLIGHT": None}, "missing its MAX_JOBS_IN_FLIGHT setting"),
        ({"MAX_JOBS_IN_FLIGHT": "lots"}, "MAX_JOBS_IN_FLIGHT must be a whole number"),
        ({"EXPORT_KEY_TEMPLATE": "{prefix}/{tenantId}{dataDateFrom}/{filename}"}, "two tenants could land"),
        ({"SCHEDULE_TIMEZONE": "Nowhere/Atlantis"}, "not a known time zone"),
    ],
)
def test_given_a_bad_setting_then_configuration_error_before_any_ledger_write_or_job(
    function_env: EnvSetter,
    aws: Resources,
    context: StubContext,
    simulator: Any,
    override: dict[str, str | None],
    match: str,
) -> None:
    function_env("CreateJobFunction", **override)

    with pytest.raises(ConfigurationError, match=match):
        app.lambda_handler(requested(), context)

    assert aws.ledger_items() == []
    assert simulator.jobs() == []
    assert aws.queued_messages() == []
