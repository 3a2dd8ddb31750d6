"""Campaigns: the baseline's sites, the enumeration of (site, kind) to play, and one run judged by the invariants.

The full enumeration plays every applicable kind at every write of the baseline (each ordinal: the first
UploadPart and the second are different moments of a transfer) and at the first and last of each kind of read
(a status read, a HEAD: the ordinals in between meet the same code in the same state). One nightly tenant stands
for both (their calls are the same); the backfill and zip tenants and the calls about no tenant are kept.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from omborigrid_local.engine import LocalStack
from omborigrid_local.engine.faults import Injection, Plan, Site, kinds_for
from omborigrid_local.simulator import Simulator

from . import invariants
from .scenario import Run, Scenario, fresh_run, run_scenario

SCENARIO = Scenario(backfill_days=3)
#: The reads whose middle ordinals the full enumeration leaves out (see the module docstring).
READS = frozenset(
    {"GetItem", "Query", "HeadObject", "GetObject", "DescribeExecution", "GetJob", "GET", "GetSecretValue", "Invoke"}
)
#: Tenants of the baseline the enumeration keeps: t0 (nightly; t1 makes the same calls), t2 (backfill), t3 (zip).
KEPT_TENANTS = frozenset({"t0", "t2", "t3", "-"})
SEED_VARIABLE = "OMBORIGRID_FAULT_SEED"


@dataclass(frozen=True, slots=True)
class Outcome:
    """A run judged: its id, the faults that fired (by kind), its violations and its wall time."""

    test_id: str
    fired: Counter[str]
    violations: list[str]
    seconds: float

    def report(self) -> list[str]:
        return [f"{self.test_id}: {violation}" for violation in self.violations]


def play(
    stack: LocalStack, sim: Simulator, plan: Plan, test_id: str, *, function_log: Path, scenario: Scenario = SCENARIO
) -> tuple[Run, Outcome]:
    started = time.monotonic()
    run = run_scenario(stack, sim, fresh_run(scenario), plan, function_log=function_log)
    violations = invariants.check(stack, sim, run, function_log=function_log)
    outcome = Outcome(f"{scenario.name}/{test_id}", run.record.fired_by_kind(), violations, time.monotonic() - started)
    return run, outcome


def enumerate_faults(sites: list[Site]) -> list[Injection]:
    """Every (site, kind) of the full enumeration, in a stable order."""
    ordinals: dict[tuple[str, str, str, str], list[int]] = defaultdict(list)
    for site in sites:
        if site.tenant in KEPT_TENANTS and site.principal.endswith(("Function", "StateMachine")):
            ordinals[(site.principal, site.service, site.operation, site.tenant)].append(site.ordinal)
    injections = []
    for (principal, service, operation, tenant), seen in sorted(ordinals.items()):
        kept = sorted(set(seen))
        if operation in READS:
            kept = sorted({kept[0], kept[-1]})
        for ordinal in kept:
            site = Site(principal, service, operation, tenant, ordinal)
            injections += [Injection(site.id, kind) for kind in kinds_for(site)]
    return injections


def seed_from_environment(default: int) -> int:
    value = os.environ.get(SEED_VARIABLE, "")
    return int(value) if value.strip() else default


def summary(outcomes: list[Outcome]) -> list[str]:
    """Lines for the terminal: runs, faults fired by kind, violations, time."""
    fired: Counter[str] = Counter()
    for outcome in outcomes:
        fired.update(outcome.fired)
    violations = [line for outcome in outcomes for line in outcome.report()]
    seconds = sum(o.seconds for o in outcomes)
    return [
        f"{len(outcomes)} runs in {seconds:.0f} s; faults fired by kind: {dict(sorted(fired.items()))}",
        f"{len(violations)} invariant violation(s)",
        *violations,
    ]
