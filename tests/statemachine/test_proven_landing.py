"""Only a proven landing lands (issue 8), on the local engine with the real ASL, handlers and simulator.

* a forced re-export whose job changes identity midway (a later answer names another tenant) fails with
  IntegrityError: the first landing stays byte-identical and nothing appears in the other tenant's partition;
* an archive with a broken third member publishes no member at all, and the corrected delivery of the same day
  then lands whole: leftovers of the failed attempt never block it.

Each test names its Given/When/Then in its docstring.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

from omborigrid_local.engine import LocalStack, entered_states, state_inputs, task_failures
from omborigrid_local.simulator import Simulator, other_tenant_id

from .helpers import DAY, created_jobs, events_for, ledger_item, object_keys, read_object, request_day, start_stack

PREFIX = "omborigrid"
TABLES = ("events", "sessions", "clients")


@pytest.fixture(scope="module")
def stack(module_simulator: Simulator) -> Iterator[LocalStack]:
    local = start_stack(module_simulator)
    try:
        yield local
    finally:
        local.close()


def open_uploads(stack: LocalStack) -> list[dict[str, Any]]:
    uploads: list[dict[str, Any]] = stack.client("s3").list_multipart_uploads(Bucket=stack.bucket).get("Uploads", [])
    return uploads


def keys_of_tenant(stack: LocalStack, tenant: str) -> list[str]:
    """Every key anywhere in the bucket that lies in ``tenant``'s partition (data, manifests and staging)."""
    return [key for key in object_keys(stack) if f"tenant={tenant}/" in key]


def test_forced_reexport_whose_job_names_another_tenant_fails_and_keeps_the_landed_day(
    stack: LocalStack, sim: Simulator, tenant: str
) -> None:
    """Given a day landed for tenant T, when a forced re-export runs against a job whose first status check is
    truthful but whose land-time re-read names another tenant, then the execution fails with IntegrityError
    naming both tenants, the ledger day is FAILED with that reason, T's landed file and manifest are still there
    byte-identical, nothing was written under the other tenant's partition and no multipart upload is open."""
    other = other_tenant_id(tenant)
    [first_job] = created_jobs(request_day(stack, tenant))
    [first] = stack.wait_for_executions(1, timeout=30, match=tenant)
    assert first["status"] == "SUCCEEDED"
    landed_keys = object_keys(stack, f"{PREFIX}/tenant={tenant}/")
    assert len(landed_keys) == 2, landed_keys  # the file and its manifest
    landed = {key: read_object(stack, key) for key in landed_keys}
    source = sim.job_file(first_job["jobId"])
    assert source is not None
    [data_key] = [key for key in landed_keys if not key.rsplit("/", 1)[-1].startswith("_")]
    assert landed[data_key] == source.read_bytes()
    # GETs of the new job: its first status check answers truthfully, every later answer names `other`.
    sim.configure(identity_change="tenant", identity_change_after=1)

    forced = stack.deliver_export_requested(
        {"tenantIds": [tenant], "dataDateFrom": DAY, "dataDateTo": DAY, "split": "daily", "force": True}
    )

    [job] = created_jobs(forced)
    assert job["jobId"] != first_job["jobId"]
    executions = stack.wait_for_executions(2, timeout=30, match=tenant)
    [execution] = [e for e in executions if job["jobId"] in e["name"]]
    assert execution["status"] == "FAILED"
    history = stack.history(execution["executionArn"])
    checked = [state["job"] for state in state_inputs(history, "Is Export Ready")]
    assert checked[0]["tenantId"] == tenant  # the truthful answer got as far as the landing
    assert [f["error"] for f in task_failures(history)] == ["IntegrityError"]
    states = entered_states(history)
    assert states.count("Check Export Status") == 1  # the check saw the job done: the re-read before landing lied
    assert "Download Export" in states
    assert states[-2:] == ["Publish Export Failed", "Export Failed"]
    assert [e["detail-type"] for e in events_for(stack, tenant)] == ["Export Completed", "Export Failed"]
    [failed] = [e for e in events_for(stack, tenant) if e["detail-type"] == "Export Failed"]
    assert failed["detail"]["error"] == "IntegrityError"
    assert failed["detail"]["jobId"] == job["jobId"]
    message = failed["detail"]["message"]
    assert tenant in message, message
    assert other in message, message
    item = ledger_item(stack, tenant, DAY)
    assert item["state"]["S"] == "FAILED"
    assert item["jobId"]["S"] == job["jobId"]
    assert item["error"]["S"] == f"IntegrityError: {message}"[:1000]

    assert object_keys(stack, f"{PREFIX}/tenant={tenant}/") == landed_keys
    assert {key: read_object(stack, key) for key in landed_keys} == landed
    assert keys_of_tenant(stack, other) == []
    assert open_uploads(stack) == []


@pytest.mark.parametrize(
    ("kind", "complaint"),
    [
        pytest.param("crc", "does not match the zip's CRC-32", id="crc"),
        pytest.param("footer", "parquet footer is malformed", id="footer"),
    ],
)
def test_archive_with_a_broken_third_member_publishes_nothing_and_the_redelivery_lands_whole(
    stack: LocalStack, sim: Simulator, tenant: str, kind: str, complaint: str
) -> None:
    """Given a zip delivery whose third member is broken (its CRC, or its parquet footer), when it is landed,
    then the execution fails with IntegrityError, no member and no manifest exist under the final prefix and no
    multipart upload is open; when the same day is then requested again with a sound archive, every member lands
    with its manifest."""
    sim.configure(delivery="zip", archive_bad_member=3, archive_bad_member_kind=kind)

    [job] = created_jobs(request_day(stack, tenant))

    [execution] = stack.wait_for_executions(1, timeout=30, match=tenant)
    assert execution["status"] == "FAILED"
    history = stack.history(execution["executionArn"])
    assert [f["error"] for f in task_failures(history)] == ["IntegrityError"]
    [failed] = events_for(stack, tenant)
    assert (failed["detail-type"], failed["detail"]["error"]) == ("Export Failed", "IntegrityError")
    assert failed["detail"]["jobId"] == job["jobId"]
    assert complaint in failed["detail"]["message"]
    assert "Archive member 'clients/" in failed["detail"]["message"]  # which member, for a person to act on
    staging = f"{PREFIX}/_staging/tenant={tenant}/"
    # Only the staged archive remains (the bucket's lifecycle rule expires the staging area).
    [staged] = keys_of_tenant(stack, tenant)
    assert staged.startswith(f"{staging}{job['jobId']}/"), staged
    assert staged.endswith(".zip"), staged
    assert open_uploads(stack) == []
    assert ledger_item(stack, tenant, DAY)["state"]["S"] == "FAILED"
    sim.configure(archive_bad_member=None)

    [again] = created_jobs(request_day(stack, tenant))

    executions = stack.wait_for_executions(2, timeout=30, match=tenant)
    [retried] = [e for e in executions if again["jobId"] in e["name"]]
    assert retried["status"] == "SUCCEEDED"
    [completed] = [e for e in events_for(stack, tenant) if e["detail-type"] == "Export Completed"]
    manifest = completed["detail"]
    assert manifest["jobId"] == again["jobId"]
    assert manifest["skippedMembers"] == []
    members = {f["table"]: f["key"] for f in manifest["files"]}
    assert members == {table: f"{PREFIX}/{table}/tenant={tenant}/dt={DAY}/part-0.parquet" for table in TABLES}
    published = sorted(key for key in keys_of_tenant(stack, tenant) if not key.startswith(staging))
    assert published == sorted([*members.values(), manifest["manifestKey"]])
    source = sim.job_file(again["jobId"])
    assert source is not None
    with zipfile.ZipFile(source) as archive:
        for table, key in members.items():
            assert read_object(stack, key) == archive.read(f"{table}/dt={DAY}/part-0.parquet"), key
    assert object_keys(stack, staging) == [staged]  # the sound archive's staged copy was deleted once it landed
    assert open_uploads(stack) == []
    assert ledger_item(stack, tenant, DAY)["state"]["S"] == "LANDED"
