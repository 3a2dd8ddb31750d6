"""Campaigns: the baseline's sites, the enumeration of (site, kind) to play, and one run judged by the invariants.

The full enumeration plays every applicable kind at the first and last ordinal of each kind of call of the
baseline (the first UploadPart and the last are different moments of a transfer; the ordinals between meet the
same code in the same state), except a lost answer
(``lost_response``: the SDK sends a read again, which nobody can tell from one read) and a crash after a read
past its first ordinal (it stands where the crash before the next call does). One nightly tenant (parquet) stands
for the others and for the backfill tenant (their calls are the same code on other days); the zip tenant and the
calls about no tenant (the cap's counter, the secret) are kept.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from omborigrid_local.engine import LocalStack
from omborigrid_local.engine.faults import FaultKind, Injection, Plan, Site, kinds_for
from omborigrid_local.simulator import Simulator

from . import invariants
from .scenario import Run, Scenario, fresh_run, run_scenario

SCENARIO = Scenario(backfill_days=3)
#: The reads whose middle ordinals the full enumeration leaves out (see the module docstring).
READS = frozenset(
    {"GetItem", "Query", "HeadObject", "GetObject", "DescribeExecution", "GetJob", "GET", "GetSecretValue", "Invoke"}
)
#: Tenants of the baseline the enumeration keeps: t0 (nightly parquet; t1 and the backfill's t2 make the same
#: calls), t3 (zip), and "-" (calls about no tenant).
KEPT_TENANTS = frozenset({"t0", "t3", "-"})
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
        kept = sorted({kept[0], kept[-1]})
        for ordinal in kept:
            site = Site(principal, service, operation, tenant, ordinal)
            injections += [Injection(site.id, kind) for kind in kinds_for(site) if not _same_as_another(site, kind)]
    return injections


def _same_as_another(site: Site, kind: FaultKind) -> bool:
    """The read faults the enumeration leaves out (see the module docstring)."""
    if site.operation not in READS:
        return False
    return kind is FaultKind.LOST_RESPONSE or (kind is FaultKind.CRASH_AFTER and site.ordinal > 1)


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
