"""Polling bounds: a job that never finishes ends the execution cleanly (template parameter PollMaxAttempts)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from omborigrid_local.engine import LocalStack, entered_states, state_inputs, task_failures
from omborigrid_local.simulator import Simulator

from .helpers import created_jobs, events_for, ledger_item, object_keys, request_day, start_stack

MAX_ATTEMPTS = 3


@pytest.fixture(scope="module")
def stack(module_simulator: Simulator) -> Iterator[LocalStack]:
    local = start_stack(module_simulator, parameters={"PollMaxAttempts": MAX_ATTEMPTS})
    try:
        yield local
    finally:
        local.close()


def test_job_that_never_finishes_times_out_cleanly(stack: LocalStack, sim: Simulator, tenant: str) -> None:
    """Given a job that stays "processing" forever, when PollMaxAttempts checks have seen it unfinished, then
    CheckStatus raises ExportTimedOut, the execution fails through the Catch and "Export Failed" says why."""
    sim.configure(processing_seconds=None)

    [job] = created_jobs(request_day(stack, tenant))

    [execution] = stack.wait_for_executions(1, timeout=30, match=tenant)
    assert execution["status"] == "FAILED"
    history = stack.history(execution["executionArn"])
    assert len(state_inputs(history, "Check Export Status")) == MAX_ATTEMPTS
    assert [f["error"] for f in task_failures(history)] == ["ExportTimedOut"]
    assert entered_states(history)[-2:] == ["Publish Export Failed", "Export Failed"]
    [event] = events_for(stack, tenant)
    assert event["detail-type"] == "Export Failed"
    assert event["detail"]["error"] == "ExportTimedOut"
    assert event["detail"]["jobId"] == job["jobId"]
    assert event["detail"]["executionId"] == execution["executionArn"]
    assert f"{MAX_ATTEMPTS} checks" in event["detail"]["message"]
    assert object_keys(stack, f"omborigrid/tenant={tenant}/") == []
    # The "Export Failed" event reaches CreateJob through its EventBridge rule, which records the failure, so
    # the next nightly run retries the day.
    assert ledger_item(stack, tenant, job["dataDateFrom"])["state"]["S"] == "FAILED"
