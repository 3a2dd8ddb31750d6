"""Concurrency and time on the local engine (issue 11): duplicated triggers never duplicate a job or a file.

Each scenario runs the real handlers and ASL, then checks the same invariants (:func:`assert_landed_once`):
each (tenant, day) asked for landed exactly once (one data object, byte-identical to what the simulator served,
one manifest naming it), the API saw the expected number of creates for it, the ledger says LANDED, the in-flight
counter is back to 0 and no multipart upload is left open.

The engine runs one invocation at a time (its invoker holds one lock: one ``os.environ``), so here duplicates
arrive back to back or while an execution runs; the interleavings of two CreateJob runs inside each other are
driven on the use case from threads (tests/unit/test_createjob_concurrency.py), and two Download invocations of
one job at once on the transfer against a real S3 (tests/integration/test_concurrent_download.py).

Nightly ticks use days of their own per test: the tick's scheduled time decides the day (look-back 0), so the
ledger of the module's nightly tenant never mixes two tests.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from omborigrid_local.engine import LocalStack
from omborigrid_local.simulator import Simulator

from .helpers import DAY, created_jobs, ledger_item, object_keys, read_object, request_day, start_stack
from .ops_helpers import in_flight, wait_until

#: The tenant the nightly schedule exports (template parameter TenantIds).
NIGHTLY = secrets.token_hex(12)
PREFIX = "omborigrid"


@pytest.fixture(scope="module")
def stack(module_simulator: Simulator) -> Iterator[LocalStack]:
    local = start_stack(module_simulator, parameters={"TenantIds": NIGHTLY, "LookbackDays": 0})
    try:
        yield local
    finally:
        local.close()


def today() -> date:
    return datetime.now(UTC).date()


def tick_for(day: date) -> datetime:
    """A tick scheduled at 01:00 UTC the day after ``day`` (the schedule is in UTC): it exports ``day``."""
    return datetime.combine(day + timedelta(days=1), time(1, 0), tzinfo=UTC)


def assert_landed_once(stack: LocalStack, sim: Simulator, tenant: str, day: date, *, creates: int = 1) -> str:
    """The invariants of one (tenant, day): returns the landed job's id."""
    prefix = f"{PREFIX}/tenant={tenant}/dt={day.isoformat()}/"
    keys = object_keys(stack, prefix)
    manifests = [k for k in keys if k.rsplit("/", 1)[-1].startswith("_")]
    data = [k for k in keys if k not in manifests]
    assert len(manifests) == 1, keys
    assert len(data) == 1, keys
    manifest = json.loads(read_object(stack, manifests[0]))
    assert (manifest["key"], manifest["manifestKey"]) == (data[0], manifests[0])
    source = sim.job_file(manifest["jobId"])
    assert source is not None
    assert read_object(stack, data[0]) == source.read_bytes()
    assert sim.stats().jobs_created_by_key.get(f"{tenant}/{day}/{day}", 0) == creates
    item = ledger_item(stack, tenant, day.isoformat())
    assert (item["state"]["S"], item["jobId"]["S"]) == ("LANDED", manifest["jobId"])
    assert in_flight(stack.client("dynamodb"), stack.table_name) == 0
    uploads = stack.client("s3").list_multipart_uploads(Bucket=stack.bucket).get("Uploads", [])
    assert [u["Key"] for u in uploads if u["Key"].startswith(f"{PREFIX}/tenant={tenant}/")] == []
    return str(manifest["jobId"])


def settle(stack: LocalStack, tenant: str, count: int) -> list[dict[str, Any]]:
    executions = stack.wait_for_executions(count, timeout=60, match=tenant)
    assert [e["status"] for e in executions] == ["SUCCEEDED"] * count, [e["name"] for e in executions]
    return executions


# ------------------------------------------------------------------------------------------------ time
def test_given_a_tick_retried_after_midnight_then_the_day_it_was_scheduled_for_is_exported(
    stack: LocalStack, sim: Simulator
) -> None:
    """Given a tick scheduled for 23:50 UTC yesterday whose delivery arrives now (after midnight), when CreateJob
    runs, then it exports the day before yesterday (the tick's "yesterday"), not yesterday; the schedule's own
    Input carried the time, filled in by the engine as Scheduler does."""
    scheduled = datetime.combine(today(), time(0, 0), tzinfo=UTC) - timedelta(minutes=10)
    expected = scheduled.date() - timedelta(days=1)

    result = stack.deliver_scheduled(scheduled)

    assert [(j["dataDateFrom"], j["dataDateTo"]) for j in created_jobs(result)] == [(expected.isoformat(),) * 2]
    settle(stack, f"{NIGHTLY}_{expected:%Y%m%d}", 1)
    assert_landed_once(stack, sim, NIGHTLY, expected)
    assert sim.stats().jobs_created == 1


# ------------------------------------------------------------------------------------------------ duplicates
def test_given_the_same_tick_delivered_twice_back_to_back_then_one_job_one_file(
    stack: LocalStack, sim: Simulator
) -> None:
    """Given one tick (one scheduled time) delivered twice, the second while the first's execution runs, then the
    API saw one create, one execution ran and the day landed once."""
    day = today() - timedelta(days=5)

    first = stack.deliver_scheduled(tick_for(day))
    second = stack.deliver_scheduled(tick_for(day))

    assert len(created_jobs(first)) == 1
    assert created_jobs(second) == []
    settle(stack, f"{NIGHTLY}_{day:%Y%m%d}", 1)
    assert_landed_once(stack, sim, NIGHTLY, day)
    third = stack.deliver_scheduled(tick_for(day))  # and once more after it landed
    assert created_jobs(third) == []
    assert_landed_once(stack, sim, NIGHTLY, day)


@pytest.mark.parametrize("tick_first", [True, False], ids=["tick-then-request", "request-then-tick"])
def test_given_a_tick_and_an_export_requested_for_overlapping_days_then_each_day_once(
    stack: LocalStack, sim: Simulator, tick_first: bool
) -> None:
    """Given a nightly tick for day D and an "Export Requested" for D-1..D of the same tenant at the same moment
    (one right after the other, in either order), then D and D-1 are each created once and land once."""
    day = today() - timedelta(days=8 if tick_first else 11)
    request = {
        "tenantIds": [NIGHTLY],
        "dataDateFrom": (day - timedelta(days=1)).isoformat(),
        "dataDateTo": day.isoformat(),
        "split": "daily",
        "force": False,
    }
    if tick_first:
        results = [stack.deliver_scheduled(tick_for(day)), stack.deliver_export_requested(request)]
    else:
        results = [stack.deliver_export_requested(request), stack.deliver_scheduled(tick_for(day))]

    created = sorted(j["dataDateFrom"] for r in results for j in created_jobs(r))
    assert created == [(day - timedelta(days=1)).isoformat(), day.isoformat()]
    for each in (day - timedelta(days=1), day):
        settle(stack, f"{NIGHTLY}_{each:%Y%m%d}", 1)
    for each in (day - timedelta(days=1), day):
        assert_landed_once(stack, sim, NIGHTLY, each)


def test_given_two_forced_requests_for_a_landed_day_then_one_replacement(
    stack: LocalStack, sim: Simulator, tenant: str
) -> None:
    """Given a landed day, when two forced "Export Requested" for it arrive one right after the other, then one
    new job replaces the landing (two creates in all: the first landing and one replacement), one object and one
    manifest remain, naming the new job."""
    day = date.fromisoformat(DAY)
    request_day(stack, tenant)
    settle(stack, tenant, 1)
    original = assert_landed_once(stack, sim, tenant, day)
    forced = {"tenantIds": [tenant], "dataDateFrom": DAY, "dataDateTo": DAY, "split": "daily", "force": True}

    results = [stack.deliver_export_requested(forced), stack.deliver_export_requested(forced)]

    assert [len(created_jobs(r)) for r in results] == [1, 0]
    settle(stack, tenant, 2)
    replacement = assert_landed_once(stack, sim, tenant, day, creates=2)
    assert replacement != original
    assert replacement == created_jobs(results[0])[0]["jobId"]


def test_given_a_queue_message_redelivered_while_its_execution_runs_then_no_second_execution(
    stack: LocalStack, sim: Simulator, tenant: str
) -> None:
    """Given a job whose execution is waiting for a slow job, when SQS delivers its message again (a visibility
    timeout passed), then StartExport finds the execution by its deterministic name and starts none; the same
    after the export landed."""
    sim.configure(processing_seconds=3 * 3600.0)  # about 11 real seconds at the tier's time scale
    [job] = created_jobs(request_day(stack, tenant))
    body = json.dumps(
        {"jobId": job["jobId"], "tenantId": tenant, "dataDateFrom": DAY, "dataDateTo": DAY, "force": False}
    )
    wait_until(lambda: len(stack.executions(tenant)) == 1, timeout=30, interval=0.05, what="the first execution")
    starts = stack.invocations("StartExportFunction")

    stack.client("sqs").send_message(QueueUrl=stack.queue_url, MessageBody=body)
    wait_until(
        lambda: stack.invocations("StartExportFunction") > starts, timeout=30, interval=0.05, what="the redelivery"
    )

    [running] = stack.executions(tenant)
    assert running["status"] == "RUNNING"
    [execution] = settle(stack, tenant, 1)
    assert execution["executionArn"] == running["executionArn"]
    stack.client("sqs").send_message(QueueUrl=stack.queue_url, MessageBody=body)
    wait_until(
        lambda: stack.invocations("StartExportFunction") > starts + 1, timeout=30, interval=0.05, what="a late one"
    )
    assert len(settle(stack, tenant, 1)) == 1
    assert_landed_once(stack, sim, tenant, date.fromisoformat(DAY))
