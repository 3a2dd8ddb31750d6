"""The scenarios of the fault campaigns, driven on the local engine, and how a run is settled.

A scenario is what one night and a small backfill ask of the pipeline: the nightly tick for the nightly tenants
(parquet deliveries), an "Export Requested" backfill of a few days for another tenant, and a zip delivery for a
third. Each run uses fresh tenants (the nightly ones are set in CreateJob's ``TENANT_IDS`` for the run), so runs
on one stack never share ledger entries, keys, executions or events.

Both triggers are asynchronous invocations of CreateJob, as on AWS (EventBridge Scheduler and the rule invoke
Lambda with ``InvocationType=Event``): a failed attempt is retried twice by Lambda, then dead-lettered.

Settling (after the faults): the job queue is polled until empty (the event source mapping's later polls, with
SQS redelivery; :mod:`omborigrid_local.engine.queues`), the executions and the rule deliveries finish; then time
passes: every entry still in a transient state is aged past its stale window (its timestamps moved back an hour,
which is all the ledger reads of time), the next nightly tick runs and everything settles again.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from omborigrid_local.engine import LocalStack
from omborigrid_local.engine.faults import FaultInjector, Plan, Record
from omborigrid_local.engine.queues import EventSourceFidelity, poll_until_empty
from omborigrid_local.simulator import Simulator

from ..ops_helpers import ledger_entries

TRANSIENT_STATES = frozenset({"PENDING", "REQUESTING", "QUEUED"})
#: Longer than the ledger's stale window (20 min) and the lost-execution window (30 min).
AGED_BY = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Scenario:
    """How many tenants and days one run asks for."""

    name: str = "night+backfill+zip"
    nightly_tenants: int = 2
    backfill_tenants: int = 1
    backfill_days: int = 2
    zip_tenants: int = 1
    zip_days: int = 1
    first_backfill_day: str = "2026-10-01"


@dataclass(slots=True)
class Run:
    """One run of a scenario: its tenants, what it asked for explicitly, and what the injector recorded."""

    scenario: Scenario
    nightly: list[str]
    backfill: list[str]
    zipped: list[str]
    #: (tenant, day) asked explicitly (the nightly days are read from the ledger).
    asked: set[tuple[str, str]] = field(default_factory=set)
    record: Record = field(default_factory=Record)
    first_call: int = 0
    log_offset: int = 0
    started: float = field(default_factory=time.monotonic)
    settle_errors: list[str] = field(default_factory=list)

    @property
    def tenants(self) -> list[str]:
        return [*self.nightly, *self.backfill, *self.zipped]


def fresh_run(scenario: Scenario) -> Run:
    tenants = [secrets.token_hex(12) for _ in range(scenario.nightly_tenants + scenario.backfill_tenants)]
    zipped = [secrets.token_hex(12) for _ in range(scenario.zip_tenants)]
    return Run(scenario, tenants[: scenario.nightly_tenants], tenants[scenario.nightly_tenants :], zipped)


def _days(first: str, count: int) -> list[str]:
    start = datetime.fromisoformat(first).date()
    return [(start + timedelta(days=n)).isoformat() for n in range(count)]


def request_event(tenants: list[str], first: str, last: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": secrets.token_hex(16),
        "detail-type": "Export Requested",
        "source": "omborigrid.export",
        "account": "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "eu-west-1",
        "resources": [],
        "detail": {"tenantIds": tenants, "dataDateFrom": first, "dataDateTo": last, "split": "daily", "force": False},
    }


def run_scenario(
    stack: LocalStack, sim: Simulator, run: Run, plan: Plan, *, timeout: float = 120, function_log: Any = None
) -> Run:
    """Play the scenario with ``plan``'s faults, then settle it (without faults: the next night is healthy)."""
    run.first_call = len(stack.recorder)
    run.log_offset = function_log.stat().st_size if function_log is not None and function_log.exists() else 0
    stack.set_function_environment("CreateJobFunction", {"TENANT_IDS": ",".join(run.nightly)})
    injector = FaultInjector(stack, sim, run.tenants, plan)
    fidelity = EventSourceFidelity()
    fidelity.install()
    try:
        with injector.armed() as record:
            run.record = record
            sim.configure(delivery="parquet")
            stack.deliver_async("CreateJobFunction", stack.scheduled_event(), source="scheduler")
            settle(stack, run, timeout)
            if run.backfill:
                days = _days(run.scenario.first_backfill_day, run.scenario.backfill_days)
                run.asked |= {(t, d) for t in run.backfill for d in days}
                stack.deliver_async("CreateJobFunction", request_event(run.backfill, days[0], days[-1]))
                settle(stack, run, timeout)
            if run.zipped:
                sim.configure(delivery="zip")
                days = _days(run.scenario.first_backfill_day, run.scenario.zip_days)
                run.asked |= {(t, d) for t in run.zipped for d in days}
                stack.deliver_async("CreateJobFunction", request_event(run.zipped, days[0], days[-1]))
                settle(stack, run, timeout)
                sim.configure(delivery="parquet")
        heal(stack, run, timeout)
    finally:
        fidelity.uninstall()
        sim.configure(delivery="parquet")
    return run


def heal(stack: LocalStack, run: Run, timeout: float) -> None:
    """Time passes past every stale window, then the next night runs; everything settles. Nothing to heal (every
    entry LANDED) needs no next night: it would create nothing (test_operations.py shows a second tick does not)."""
    settle(stack, run, timeout)
    states = {item["state"]["S"] for tenant in run.tenants for item in ledger_entries(stack, tenant).values()}
    if states <= {"LANDED"}:
        return
    for _ in range(2):  # a healed entry may need one more night (a re-created job)
        aged = age_transient_entries(stack, run.tenants)
        stack.deliver_async("CreateJobFunction", stack.scheduled_event(), source="scheduler")
        stack.deliver_async("CreateJobFunction", {"trigger": "drain"}, source="drain")
        settle(stack, run, timeout)
        if not aged:
            return


def age_transient_entries(stack: LocalStack, tenants: list[str]) -> int:
    """Move the timestamps of every transient entry of these tenants back by :data:`AGED_BY`."""
    dynamodb = stack.client("dynamodb")
    aged = 0
    for tenant in tenants:
        for item in ledger_entries(stack, tenant).values():
            if item["state"]["S"] not in TRANSIENT_STATES:
                continue
            names = [n for n in ("updatedAt", "enqueuedAt", "plannedAt") if n in item]
            values = {f":{n}": {"S": (datetime.fromisoformat(item[n]["S"]) - AGED_BY).isoformat()} for n in names}
            dynamodb.update_item(
                TableName=stack.table_name,
                Key={"tenantId": item["tenantId"], "dataRange": item["dataRange"]},
                UpdateExpression="SET " + ", ".join(f"{n} = :{n}" for n in names),
                ExpressionAttributeValues=values,
            )
            aged += 1
    return aged


def settle(stack: LocalStack, run: Run, timeout: float) -> None:
    """Until nothing moves: the queue polled empty, no execution running, no rule delivery pending."""
    deadline = time.monotonic() + timeout
    sfn = stack.client("stepfunctions")
    quiet = 0
    running: list[dict[str, Any]] = []
    while quiet < 2:
        if time.monotonic() > deadline:
            names = [e["name"] for e in running_executions(sfn, stack.state_machine_arn)]
            run.settle_errors.append(f"did not settle within {timeout:.0f}s: {names} running")
            return
        moved = poll_until_empty(stack) > 0
        running = running_executions(sfn, stack.state_machine_arn)
        if moved or running or stack.deliveries_pending:
            quiet = 0
            time.sleep(0.05)
        else:
            quiet += 1


def running_executions(sfn: Any, state_machine_arn: str) -> list[dict[str, Any]]:
    """The RUNNING executions. moto's status filter reads an execution that its worker thread is still setting up
    (AttributeError inside moto); asked again a moment later, it answers."""
    for _ in range(50):
        try:
            page = sfn.list_executions(stateMachineArn=state_machine_arn, statusFilter="RUNNING", maxResults=1000)
        except AttributeError:
            time.sleep(0.02)
            continue
        executions: list[dict[str, Any]] = page["executions"]
        return executions
    raise RuntimeError("moto kept failing to list the running executions")
