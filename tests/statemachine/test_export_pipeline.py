"""The export pipeline end to end on the local engine, with the template's default polling settings.

Scheduler/EventBridge event → CreateJob → SQS → StartExport → the real ASL → CheckStatus/Download → S3,
ledger and outcome events. Each test names its Given/When/Then in its docstring.
"""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from omborigrid_local.engine import (
    LocalStack,
    count_retries,
    count_transitions,
    describe_path,
    entered_states,
    state_inputs,
    task_failures,
)
from omborigrid_local.simulator import Simulator

from .helpers import DAY, created_jobs, events_for, ledger_item, object_keys, read_object, request_day, start_stack

#: The tenant the nightly schedule exports (template parameter TenantIds).
SCHEDULED_TENANT = secrets.token_hex(12)
POLL_LOOP = ["Wait For Export", "Check Export Status", "Is Export Ready"]


@pytest.fixture(scope="module")
def stack(module_simulator: Simulator) -> Iterator[LocalStack]:
    local = start_stack(module_simulator, parameters={"TenantIds": SCHEDULED_TENANT, "LookbackDays": 0})
    try:
        yield local
    finally:
        local.close()


def only_execution(stack: LocalStack, tenant: str, timeout: float = 30) -> dict:
    executions = stack.wait_for_executions(1, timeout=timeout, match=tenant)
    assert len(executions) == 1, [e["name"] for e in executions]
    return executions[0]


def test_scheduled_export_lands_the_file_byte_identical(stack: LocalStack, sim: Simulator) -> None:
    """Given the nightly tick, when the pipeline runs, then yesterday's file lands verified with its manifest,
    an "Export Completed" event carries that manifest and the ledger says LANDED."""
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()

    result = stack.deliver_scheduled()

    assert result["counts"].get("created") == 1
    [job] = created_jobs(result)
    assert (job["tenantId"], job["dataDateFrom"], job["dataDateTo"]) == (SCHEDULED_TENANT, yesterday, yesterday)
    execution = only_execution(stack, SCHEDULED_TENANT)
    assert execution["status"] == "SUCCEEDED"
    assert job["jobId"] in execution["name"]
    states = entered_states(stack.history(execution["executionArn"]))
    assert states[0] == "Prepare Polling"
    assert states[-3:] == ["Is Download Complete", "Publish Export Completed", "Export Landed"]

    [event] = events_for(stack, SCHEDULED_TENANT)
    assert event["detail-type"] == "Export Completed"
    manifest = event["detail"]
    assert manifest["jobId"] == job["jobId"]
    expected_key = f"omborigrid/tenant={SCHEDULED_TENANT}/dt={yesterday}/{manifest['sourceFilename']}"
    assert manifest["key"] == expected_key
    assert object_keys(stack, f"omborigrid/tenant={SCHEDULED_TENANT}/") == sorted(
        [expected_key, manifest["manifestKey"]]
    )
    source = sim.job_file(job["jobId"])
    assert source is not None
    landed = read_object(stack, expected_key)
    assert landed == source.read_bytes()
    assert manifest["bytes"] == len(landed)
    assert json.loads(read_object(stack, manifest["manifestKey"])) == manifest

    assert stack.failed_deliveries == []  # rule → Lambda deliveries the outcome event caused (if any) succeeded
    item = ledger_item(stack, SCHEDULED_TENANT, yesterday)
    assert item["state"]["S"] == "LANDED"
    assert item["jobId"]["S"] == job["jobId"]
    assert item["key"]["S"] == expected_key


def test_slow_job_is_polled_with_growing_waits(stack: LocalStack, sim: Simulator, tenant: str) -> None:
    """Given a job that processes for 20 simulated minutes, when it is polled, then the waits double from
    PollInitialSeconds up to PollMaxSeconds (60, 120, 240, 480, 600…) and the export lands."""
    sim.configure(processing_seconds=1200)

    request_day(stack, tenant)

    execution = only_execution(stack, tenant)
    assert execution["status"] == "SUCCEEDED"
    history = stack.history(execution["executionArn"])
    waits = [state["poll"]["waitSeconds"] for state in state_inputs(history, "Wait For Export")]
    assert len(waits) >= 4, waits
    assert waits[0] == 60
    assert all(after == min(2 * before, 600) for before, after in itertools.pairwise(waits)), waits
    checks = [state["poll"]["attempt"] for state in state_inputs(history, "Is Export Ready")]
    assert checks == list(range(1, len(waits) + 1))
    statuses = [state["job"]["status"] for state in state_inputs(history, "Is Export Ready")]
    assert statuses[-1] == "done"
    assert set(statuses[:-1]) <= {"queued", "processing"}


def test_unknown_final_status_publishes_export_failed(stack: LocalStack, sim: Simulator, tenant: str) -> None:
    """Given a job that ends "failed" (a status the API contract does not name), when it is checked, then the
    execution fails through the Catch, and an "Export Failed" event names ExportFailed."""
    sim.configure(final_status="failed")

    request_day(stack, tenant)

    execution = only_execution(stack, tenant)
    assert execution["status"] == "FAILED"
    states = entered_states(stack.history(execution["executionArn"]))
    assert states[-2:] == ["Publish Export Failed", "Export Failed"]
    assert "Download Export" not in states
    [event] = events_for(stack, tenant)
    assert event["detail-type"] == "Export Failed"
    assert event["detail"]["error"] == "ExportFailed"
    assert event["detail"]["dataDateFrom"] == DAY
    assert "failed" in event["detail"]["message"]
    assert object_keys(stack, f"omborigrid/tenant={tenant}/") == []


def test_api_outage_beyond_client_retries_is_retried_by_the_state_machine(
    stack: LocalStack, sim: Simulator, tenant: str
) -> None:
    """Given the API answers 503 to six GETs in a row (the client's own five retries included), when the
    status is checked, then CheckStatus raises ApiUnavailable, the ASL Retry runs it again and the export lands."""
    request_day(stack, tenant)
    sim.configure(fail_next=[{"status": 503, "retry_after": 1, "count": 6, "methods": ["GET"]}])

    execution = only_execution(stack, tenant, timeout=60)

    assert execution["status"] == "SUCCEEDED"
    history = stack.history(execution["executionArn"])
    assert [f["error"] for f in task_failures(history)] == ["ApiUnavailable"]
    assert count_retries(history) == 1
    assert sim.config.fail_next == []
    assert sim.stats().by_status.get("503") == 6
    [event] = events_for(stack, tenant)
    assert event["detail-type"] == "Export Completed"


def test_wrong_file_size_is_caught_and_nothing_lands(stack: LocalStack, sim: Simulator, tenant: str) -> None:
    """Given the API promises 10 bytes more than it serves, when the file is downloaded, then Download raises
    IntegrityError (not retried), "Export Failed" says so, and nothing appears under the final key."""
    sim.configure(file_size_delta=10)

    request_day(stack, tenant)

    execution = only_execution(stack, tenant)
    assert execution["status"] == "FAILED"
    history = stack.history(execution["executionArn"])
    assert [f["error"] for f in task_failures(history)] == ["IntegrityError"]
    [event] = events_for(stack, tenant)
    assert (event["detail-type"], event["detail"]["error"]) == ("Export Failed", "IntegrityError")
    assert object_keys(stack, f"omborigrid/tenant={tenant}/") == []


def test_duplicate_queue_delivery_starts_one_execution(stack: LocalStack, sim: Simulator, tenant: str) -> None:
    """Given a job message delivered again while its execution runs and again after it ended, when StartExport
    handles each, then there is still one execution, one object and one "Export Completed" event."""
    sim.configure(processing_seconds=300)
    [job] = created_jobs(request_day(stack, tenant))
    body = json.dumps(
        {"jobId": job["jobId"], "tenantId": tenant, "dataDateFrom": DAY, "dataDateTo": DAY, "force": False}
    )
    starts_before = stack.invocations("StartExportFunction")
    sqs = stack.client("sqs")

    sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)
    assert stack.executions(tenant)[0]["status"] == "RUNNING"
    only_execution(stack, tenant)
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)

    assert stack.invocations("StartExportFunction") == starts_before + 2
    execution = only_execution(stack, tenant)
    assert execution["status"] == "SUCCEEDED"
    keys = object_keys(stack, f"omborigrid/tenant={tenant}/")
    assert len(keys) == 2, keys  # the file and its manifest
    assert [e["detail-type"] for e in events_for(stack, tenant)] == ["Export Completed"]
    assert (
        sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"
        ]["ApproximateNumberOfMessages"]
        == "0"
    )


def test_create_job_retried_creates_one_api_job(stack: LocalStack, sim: Simulator, tenant: str) -> None:
    """Given CreateJob runs twice for the same event (Lambda's async retry), then the API sees one job for
    the tenant and day, and one execution runs."""
    detail = {"tenantIds": [tenant], "dataDateFrom": DAY, "dataDateTo": DAY, "split": "daily", "force": False}

    first = stack.deliver_export_requested(detail)
    second = stack.deliver_export_requested(detail)

    [created] = created_jobs(first)
    assert second["counts"] == {"skipped": 1}
    assert second["jobs"][0]["jobId"] == created["jobId"]
    assert sim.stats().jobs_created_by_key == {f"{tenant}/{DAY}/{DAY}": 1}
    assert only_execution(stack, tenant)["status"] == "SUCCEEDED"


def test_hour_long_job_costs_few_state_transitions(stack: LocalStack, sim: Simulator, tenant: str) -> None:
    """Given a job that takes 60 simulated minutes and the default polling (60 s doubling to 600 s), then the
    execution stays within 40 state transitions (counted as StateEntered events, one per state entered; no
    Retry fired, so there are no extra billed attempts)."""
    sim.configure(queue_seconds=60, processing_seconds=3540)

    request_day(stack, tenant)

    execution = only_execution(stack, tenant, timeout=60)
    assert execution["status"] == "SUCCEEDED"
    history = stack.history(execution["executionArn"])
    transitions = count_transitions(history)
    polls = len(state_inputs(history, "Check Export Status"))
    print(f"\n1-hour job: {transitions} state transitions, {polls} status checks")
    print(describe_path(entered_states(history)))
    assert count_retries(history) == 0
    # Handler time also advances the simulator clock (x1000), so the job may look done a check or two early.
    assert polls >= 6
    assert transitions <= 40
