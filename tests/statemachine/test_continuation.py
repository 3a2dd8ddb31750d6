"""A file too big for one Download invocation continues in the next ones (checkpoint + HTTP Range).

The Download function keeps DEADLINE_MARGIN_SECONDS (5 s) plus twice its slowest part in hand before starting a
part. With 5 MiB parts served at 5 MiB/s (about 1 s each), one part at a time (TransferConcurrency 1) and a
budget of 7 s per invocation (DOWNLOAD_TIME_BUDGET_SECONDS), each invocation lands one part and returns a
checkpoint: a 21 MiB file takes five invocations.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from omborigrid_local.engine import LocalStack, describe_path, entered_states, state_inputs
from omborigrid_local.simulator import Simulator

from .helpers import DAY, created_jobs, events_for, object_keys, read_object, request_day, start_stack

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def stack(module_simulator: Simulator) -> Iterator[LocalStack]:
    local = start_stack(
        module_simulator,
        parameters={"PartSizeMiB": 5, "TransferConcurrency": 1},
        environment={"DOWNLOAD_TIME_BUDGET_SECONDS": "7"},
    )
    try:
        yield local
    finally:
        local.close()


def test_big_file_lands_across_continuations(stack: LocalStack, sim: Simulator, tenant: str) -> None:
    """Given a 21 MiB delivery at 5 MiB/s and a 7 s budget per invocation, when it is downloaded, then Download
    returns checkpoints and runs again until the object is complete, byte-identical and verified."""
    sim.configure(target_bytes=21 * MIB, bandwidth_bytes_per_sec=5 * MIB, url_ttl_seconds=10 * 86400.0)
    sim.expected_rows(tenant, DAY, DAY)  # generate the delivery up front; the job would otherwise wait for it

    [job] = created_jobs(request_day(stack, tenant))

    [execution] = stack.wait_for_executions(1, timeout=60, match=tenant)
    assert execution["status"] == "SUCCEEDED"
    history = stack.history(execution["executionArn"])
    states = entered_states(history)
    print("\n" + describe_path(states))
    downloads = states.count("Download Export")
    assert downloads >= 4, describe_path(states)
    checkpoints = [s["transfer"]["checkpoint"] for s in state_inputs(history, "Download Export") if "transfer" in s]
    assert len(checkpoints) == downloads - 1
    assert all(c is not None for c in checkpoints)
    [event] = events_for(stack, tenant)
    manifest = event["detail"]
    assert event["detail-type"] == "Export Completed"
    source = sim.job_file(job["jobId"])
    assert source is not None
    expected = source.read_bytes()
    assert len(expected) >= 20 * MIB
    assert manifest["bytes"] == len(expected)
    assert read_object(stack, manifest["key"]) == expected
    assert object_keys(stack, f"omborigrid/tenant={tenant}/") == sorted([manifest["key"], manifest["manifestKey"]])
    ranges = [r for r in sim.stats().download_ranges if r is not None]
    assert len(ranges) >= downloads
    assert stack.client("s3").list_multipart_uploads(Bucket=stack.bucket).get("Uploads", []) == []
