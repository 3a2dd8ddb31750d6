"""The invariants every fault-campaign run must leave true once it settled (see scenario.py for settling).

1. ``outcome``: every (tenant, day) asked for is LANDED — exactly one data object (one per archive member),
   byte-identical to what the simulator served, and one manifest that names them all — or FAILED, with an
   "Export Failed" event saying why and nothing under any final key.
2. ``creates``: the API saw one create per (tenant, day), plus one per "Export Failed" (the next night asks
   again) and one per create whose outcome the pipeline could not know (its job id never reached the ledger);
   a job that did not land is never downloaded.
3. ``announced``: every landed day has an "Export Completed" event; duplicates carry the same manifest (the one
   in S3), so the job id and manifest key consumers deduplicate on are stable.
4. ``in_flight``: the ledger's counters of jobs in flight (the cap's and each tenant's) are back to 0.
5. ``transient``: no entry of the run is PENDING, REQUESTING or QUEUED (every stale window passed, the next
   night ran).
6. ``multipart``: no multipart upload is open under a key of the run's tenants (every execution ended).
7. ``secrets``: no output of the run (events, ledger, objects, call parameters, histories, function logs)
   carries the API token or a value of a presigned download URL's query.
8. ``settled``: the run settled within its time.

A violation is one line: the invariant's name, then what is wrong (the caller prefixes scenario and fault).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from omborigrid_local.engine import LocalStack
from omborigrid_local.simulator import Simulator

from ..helpers import object_keys, read_object
from ..ops_helpers import ledger_entries
from ..outputs import output_channels
from .scenario import TRANSIENT_STATES, Run

INVARIANTS = ("outcome", "creates", "announced", "in_flight", "transient", "multipart", "secrets", "settled")


def check(stack: LocalStack, sim: Simulator, run: Run, *, function_log: Path | None = None) -> list[str]:
    """Every violation of the invariants by this run (empty when it kept them all)."""
    facts = _Facts.gather(stack, sim, run)
    violations = [f"settled: {error}" for error in run.settle_errors]
    violations += _outcomes(facts, sim)
    violations += _creates(stack, facts, run)
    violations += _announced(facts)
    violations += _in_flight(stack, run)
    violations += [
        f"transient: {tenant_day} is still {state} after its stale window and the next night"
        for tenant_day, state in sorted(facts.states.items())
        if state in TRANSIENT_STATES
    ]
    violations += _multipart(stack, run)
    violations += _secrets(stack, sim, run, facts, function_log)
    return violations


class _Facts:
    """What the run left: ledger entries, objects by (tenant, day), outcome events, the simulator's jobs."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], dict[str, Any]] = {}
        self.states: dict[str, str] = {}
        self.objects: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.staged: list[str] = []
        self.events: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.asked: set[tuple[str, str]] = set()
        self.bodies: dict[str, bytes] = {}
        self.manifests: dict[str, dict[str, Any]] = {}

    @classmethod
    def gather(cls, stack: LocalStack, sim: Simulator, run: Run) -> _Facts:
        facts = cls()
        tenants = set(run.tenants)
        for tenant in run.tenants:
            for data_range, item in ledger_entries(stack, tenant).items():
                day = data_range.split("/", 1)[0]
                facts.entries[(tenant, day)] = item
                facts.states[f"{tenant}/{day}"] = item["state"]["S"]
        facts.asked = set(run.asked) | set(facts.entries)
        for key in object_keys(stack):
            tenant = _segment(key, "tenant=")
            if tenant not in tenants:
                continue
            if "/_staging/" in f"/{key}":
                facts.staged.append(key)
            else:
                facts.objects[(tenant, _segment(key, "dt="))].append(key)
                body = read_object(stack, key)
                if _is_manifest(key):
                    facts.manifests[key] = json.loads(body)
                else:
                    facts.bodies[key] = body
        for event in stack.outcome_events():
            detail = event.get("detail", {})
            if detail.get("tenantId") in tenants:
                facts.events[(detail["tenantId"], detail.get("dataDateFrom", ""))].append(event)
        facts.jobs = {job["id"]: job for job in sim.jobs() if job.get("tenantId") in tenants}
        return facts

    def of_kind(self, tenant_day: tuple[str, str], detail_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events[tenant_day] if e["detail-type"] == detail_type]


def _segment(key: str, prefix: str) -> str:
    return next((part[len(prefix) :] for part in key.split("/") if part.startswith(prefix)), "")


def _is_manifest(key: str) -> bool:
    return key.rsplit("/", 1)[-1].startswith("_")


def _served(sim: Simulator, job_id: str) -> list[bytes]:
    """What the simulator served for a job: the file, or each member of an archive."""
    path = sim.job_file(job_id)
    if path is None:
        return []
    body = path.read_bytes()
    if body[:2] != b"PK":
        return [body]
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return [archive.read(info) for info in archive.infolist() if not info.is_dir()]


def _outcomes(facts: _Facts, sim: Simulator) -> list[str]:
    violations = []
    if facts.staged:
        violations.append(f"outcome: staged leftovers under final prefixes' staging area: {sorted(facts.staged)}")
    for tenant, day in sorted(facts.asked):
        where = f"{tenant}/{day}"
        item = facts.entries.get((tenant, day))
        state = item["state"]["S"] if item else "(no ledger entry)"
        keys = facts.objects.get((tenant, day), [])
        if state == "LANDED":
            violations += _landed(facts, sim, where, item or {}, keys)
        elif state == "FAILED":
            failures = facts.of_kind((tenant, day), "Export Failed")
            if not any(e["detail"].get("error") and e["detail"].get("message") for e in failures):
                violations.append(f"outcome: {where} FAILED without an 'Export Failed' event saying why")
            if keys:
                violations.append(f"outcome: {where} FAILED but objects sit under final keys: {sorted(keys)}")
        elif state not in TRANSIENT_STATES:
            violations.append(f"outcome: {where} is {state}")
    return violations


def _landed(facts: _Facts, sim: Simulator, where: str, item: dict[str, Any], keys: list[str]) -> list[str]:
    manifests = [k for k in keys if _is_manifest(k)]
    data = sorted(k for k in keys if not _is_manifest(k))
    manifest_key = item.get("manifestKey", {}).get("S")
    job_id = item.get("jobId", {}).get("S", "")
    if manifests != [manifest_key]:
        return [f"outcome: {where} LANDED with manifests {manifests}, the ledger names {manifest_key}"]
    manifest = facts.manifests[manifests[0]]
    served = _served(sim, job_id)
    violations = []
    named = sorted(f["key"] for f in manifest.get("files", []))
    if named != data:
        violations.append(f"outcome: {where} manifest names {named}, under the final keys are {data}")
    if manifest.get("jobId") != job_id:
        violations.append(f"outcome: {where} manifest names job {manifest.get('jobId')}, the ledger {job_id}")
    if len(data) != len(served):
        violations.append(f"outcome: {where} has {len(data)} data object(s) for {len(served)} served")
    landed = sorted(facts.bodies.get(k, b"") for k in data)
    if landed != sorted(served):
        violations.append(f"outcome: {where} landed bytes differ from what the simulator served for {job_id}")
    return violations


def _creates(stack: LocalStack, facts: _Facts, run: Run) -> list[str]:
    """A day's jobs at the API: the landed one, one per "Export Failed" (asked again), and jobs whose id never
    reached the ledger (the create's outcome was unknown to the pipeline: the invocation died or its ledger write
    failed right after the POST). A job the ledger had recorded and that is neither landed nor failed was
    created again needlessly. Only the landed job (and failed ones) may have been downloaded."""
    violations = []
    jobs_by_day: dict[str, set[str]] = defaultdict(set)
    for job_id, job in facts.jobs.items():
        jobs_by_day[f"{job['tenantId']}/{job['dataDateFrom']}/{job['dataDateTo']}"].add(job_id)
    recorded = _recorded_job_ids(stack, run, set(facts.jobs))
    downloaded = run.record.downloaded_jobs()
    for tenant, day in sorted(facts.asked):
        key = f"{tenant}/{day}/{day}"
        item = facts.entries.get((tenant, day), {})
        current = item.get("jobId", {}).get("S")
        failed = {e["detail"].get("jobId") for e in facts.of_kind((tenant, day), "Export Failed")}
        extra = jobs_by_day[key] - {current} - failed
        again = sorted(extra & recorded)
        if again:
            violations.append(f"creates: {key}: job(s) {again} were recorded in the ledger, then created again")
        if extra & downloaded:
            violations.append(f"creates: {key}: extra job(s) {sorted(extra & downloaded)} were downloaded")
    return violations


def _recorded_job_ids(stack: LocalStack, run: Run, job_ids: set[str]) -> set[str]:
    """Those of ``job_ids`` that some successful ledger write of CreateJob carried."""
    texts = [
        json.dumps(call.params, default=str)
        for call in stack.recorder.since(run.first_call)
        if call.principal == "CreateJobFunction" and call.service == "dynamodb" and (call.status or 500) < 300
    ]
    text = "\n".join(texts)
    return {job_id for job_id in job_ids if job_id in text}


def _announced(facts: _Facts) -> list[str]:
    violations = []
    for (tenant, day), item in sorted(facts.entries.items()):
        if item["state"]["S"] != "LANDED":
            continue
        completed = facts.of_kind((tenant, day), "Export Completed")
        manifest = facts.manifests.get(item.get("manifestKey", {}).get("S", ""))
        if not completed:
            violations.append(f"announced: {tenant}/{day} LANDED without an 'Export Completed' event")
            continue
        details = {json.dumps(e["detail"], sort_keys=True) for e in completed}
        if len(details) > 1:
            violations.append(f"announced: {tenant}/{day} announced {len(completed)} times with different details")
        if manifest is not None and json.dumps(manifest, sort_keys=True) not in details:
            violations.append(f"announced: {tenant}/{day} 'Export Completed' does not carry the manifest in S3")
    return violations


def _in_flight(stack: LocalStack, run: Run) -> list[str]:
    page = stack.client("dynamodb").query(
        TableName=stack.table_name,
        KeyConditionExpression="tenantId = :t",
        ExpressionAttributeValues={":t": {"S": "#capacity"}},
        ConsistentRead=True,
    )
    counters = {item["dataRange"]["S"]: int(item.get("inFlight", {}).get("N", "0")) for item in page["Items"]}
    own = {k: v for k, v in counters.items() if v and (not k.startswith("#tenant") or any(t in k for t in run.tenants))}
    return [f"in_flight: counter {name} is {value}, not 0" for name, value in sorted(own.items())]


def _multipart(stack: LocalStack, run: Run) -> list[str]:
    uploads = stack.client("s3").list_multipart_uploads(Bucket=stack.bucket).get("Uploads", [])
    mine = [u["Key"] for u in uploads if any(t in u["Key"] for t in run.tenants)]
    return [f"multipart: an upload is still open under {key}" for key in sorted(mine)]


def _secrets(stack: LocalStack, sim: Simulator, run: Run, facts: _Facts, function_log: Path | None) -> list[str]:
    markers = {sim.token}
    markers |= {v for r in run.record.requests for v in r.query_values if len(v) >= 12}
    pages = (
        stack.client("stepfunctions").get_paginator("list_executions").paginate(stateMachineArn=stack.state_machine_arn)
    )
    arns = [e["executionArn"] for page in pages for e in page["executions"] if any(t in e["name"] for t in run.tenants)]
    texts = output_channels(stack, run.tenants, run.first_call, arns)
    if function_log is not None and function_log.exists():
        with function_log.open("r", encoding="utf-8", errors="replace") as log:
            log.seek(run.log_offset)
            texts["function logs"] = log.read()
    return [
        f"secrets: {name} carries {'the API token' if marker == sim.token else 'a presigned URL value'}"
        for name, text in sorted(texts.items())
        for marker in sorted(markers)
        if marker in text
    ]
