"""The soak (`make soak`, marker ``soak``): a backfill of many tenants and days, then three nightly ticks, with
faults at a low random rate, judged by the same invariants as every campaign run.

Size and rate are parameters (issue 11's numbers are the defaults): ``OMBORIGRID_SOAK_TENANTS`` (50),
``OMBORIGRID_SOAK_DAYS`` (30), ``OMBORIGRID_SOAK_RATE`` (0.002), ``OMBORIGRID_FAULT_SEED`` (11). The three nightly
ticks run on the engine's clock (the machine's), so they are three ticks of one night: the first exports
yesterday for every tenant, the others may only heal what failed and must create nothing else.

Prints: executions, state transitions, API jobs created vs days asked, the most jobs live at once (simulator) and
in flight (ledger) vs the cap, landed and failed days, faults fired by kind, wall time and the engine process's
peak memory (VmHWM; the engine, the handlers and the simulator all run in this process).
"""

from __future__ import annotations

import collections
import os
import resource
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from omborigrid_local.engine import LocalStack, count_transitions
from omborigrid_local.engine.faults import FaultInjector, Plan
from omborigrid_local.engine.queues import EventSourceFidelity
from omborigrid_local.simulator import Simulator

from ..helpers import start_stack
from ..ops_helpers import InFlightSampler, ledger_entries
from . import invariants
from .campaign import seed_from_environment
from .scenario import Scenario, fresh_run, heal, request_event, settle

CAP = 20
FIRST_DAY = date(2025, 6, 1)


def _number(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def _peak_memory_mib() -> float:
    """VmHWM of this process (the engine's), from /proc, else getrusage's maximum resident size."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(scope="module")
def soak_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("soak") / "functions.log"


@pytest.fixture(scope="module")
def soak_stack(module_simulator: Simulator, soak_log: Path) -> Iterator[LocalStack]:
    local = start_stack(
        module_simulator,
        parameters={"LookbackDays": 0, "MaxJobsInFlight": CAP},
        function_log=soak_log,
    )
    try:
        yield local
    finally:
        local.close()


@pytest.mark.soak
@pytest.mark.timeout(7200)
def test_soak_backfill_then_three_nights_under_faults(
    soak_stack: LocalStack, module_simulator: Simulator, soak_log: Path
) -> None:
    """Given N tenants x D days as one backfill, then three nightly ticks, with faults at a low random rate, then
    every invariant holds, the cap is never exceeded and every day asked for landed or failed with a reason."""
    stack, sim = soak_stack, module_simulator
    tenants, days = int(_number("OMBORIGRID_SOAK_TENANTS", 50)), int(_number("OMBORIGRID_SOAK_DAYS", 30))
    rate, seed = _number("OMBORIGRID_SOAK_RATE", 0.002), seed_from_environment(11)
    sim.reset()
    sim.configure(queue_seconds=0, processing_seconds=30, rows_per_day=50)
    run = fresh_run(Scenario(name="soak", nightly_tenants=tenants, backfill_tenants=0, zip_tenants=0))
    last = FIRST_DAY + timedelta(days=days - 1)
    run.asked = {(t, (FIRST_DAY + timedelta(days=n)).isoformat()) for t in run.tenants for n in range(days)}
    stack.set_function_environment("CreateJobFunction", {"TENANT_IDS": ",".join(run.tenants)})
    run.first_call = len(stack.recorder)
    print(f"\n[soak] {tenants} tenants x {days} days, then 3 nightly ticks; faults at {rate} (seed {seed}), cap {CAP}")
    started = time.monotonic()
    fidelity = EventSourceFidelity()
    fidelity.install()
    try:
        with (
            InFlightSampler(stack, interval=0.1) as sampler,
            FaultInjector(stack, sim, run.tenants, Plan.random(seed, rate)).armed() as record,
        ):
            run.record = record
            stack.deliver_async(
                "CreateJobFunction", request_event(run.tenants, FIRST_DAY.isoformat(), last.isoformat())
            )
            settle(stack, run, timeout=6000)
            backfill_seconds = time.monotonic() - started
            for _ in range(3):
                stack.deliver_async("CreateJobFunction", stack.scheduled_event(), source="scheduler")
                settle(stack, run, timeout=1200)
        heal(stack, run, timeout=1200)
    finally:
        fidelity.uninstall()
    wall = time.monotonic() - started

    violations = invariants.check(stack, sim, run, function_log=soak_log)
    executions = [e for e in stack.executions() if any(t in e["name"] for t in run.tenants)]
    transitions = sum(count_transitions(stack.history(e["executionArn"])) for e in executions)
    states = collections.Counter(item["state"]["S"] for t in run.tenants for item in ledger_entries(stack, t).values())
    stats = sim.stats()
    asked = len(run.asked) + tenants  # the backfill's days and one nightly day per tenant
    print(f"[soak] wall {wall:.0f} s (backfill {backfill_seconds:.0f} s); peak memory {_peak_memory_mib():.0f} MiB")
    print(f"[soak] executions {len(executions)} by status {dict(collections.Counter(e['status'] for e in executions))}")
    print(f"[soak] state transitions {transitions}")
    print(f"[soak] API jobs created {stats.jobs_created} for {asked} (tenant, day) asked")
    print(f"[soak] max live jobs at the API {stats.max_live_jobs}, in flight (ledger) {max(sampler.values)}; cap {CAP}")
    print(f"[soak] ledger days {dict(states)}; faults fired {dict(record.fired_by_kind())}")
    print(f"[soak] {len(violations)} invariant violation(s)")
    for violation in violations:
        print(f"[soak] {violation}")
    assert max(sampler.values) <= CAP
    assert stats.max_live_jobs <= CAP
    assert violations == []
