"""Fault campaigns on the local engine: one fault at a time at each boundary of the pipeline, and seeded random
campaigns of several, each run judged by the invariants (invariants.py) once it settled (scenario.py).

In `make test`: the baseline (no fault, every site enumerated), one of each fault kind at the boundaries the
pipeline's exactly-once rests on (below), and one seeded random campaign. In `make chaos` (marker ``chaos``): the
whole enumeration (campaign.py) and several seeded random campaigns.

A violation names scenario, fault and invariant, e.g. ``night+backfill+zip/DownloadFunction:s3.
CompleteMultipartUpload@t0#1-crash_after: outcome: ...``; the part after the scenario is the fault's test id:
``OMBORIGRID_FAULT=<it> pytest -k test_one_fault_from_the_environment ...`` plays it alone, and
``OMBORIGRID_FAULT_SEED=<n>`` replays a random campaign.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from omborigrid_local.engine import LocalStack
from omborigrid_local.engine.faults import FaultKind, Injection, Plan, Site
from omborigrid_local.simulator import Simulator

from .campaign import Outcome, enumerate_faults, play, seed_from_environment, summary
from .scenario import Scenario

K = FaultKind
#: One of each kind at each boundary named in issue 11 (site ids as the baseline enumerates them).
BOUNDARY_FAULTS = [
    Injection("CreateJobFunction:api.CreateJob@t0#1", K.CRASH_AFTER),
    Injection("CreateJobFunction:api.CreateJob@t0#1", K.API_LOST_CREATE),
    Injection("CreateJobFunction:api.CreateJob@t2#1", K.API_503),
    Injection("CreateJobFunction:api.CreateJob@t2#2", K.CRASH_AFTER),
    Injection("CheckStatusFunction:api.GetJob@t0#1", K.API_429),
    Injection("CheckStatusFunction:api.GetJob@t0#1", K.GARBLED_STATUS),
    Injection("DownloadFunction:download.GET@t0#1", K.DROPPED_DOWNLOAD),
    Injection("DownloadFunction:download.GET@t3#1", K.EXPIRED_URL),
    Injection("CreateJobFunction:dynamodb.TransactWriteItems@t0#1", K.CRASH_AFTER),
    Injection("CreateJobFunction:dynamodb.TransactWriteItems@t0#1", K.TRANSACTION_CANCELED),
    Injection("CreateJobFunction:sqs.SendMessage@t0#1", K.CRASH_AFTER),
    Injection("CreateJobFunction:sqs.SendMessage@t2#1", K.SERVER_ERROR),
    Injection("StartExportFunction:states.StartExecution@t0#1", K.CRASH_AFTER),
    Injection("StartExportFunction:states.StartExecution@t0#1", K.THROTTLE),
    Injection("DownloadFunction:s3.UploadPart@t0#1", K.CRASH_AFTER),
    Injection("DownloadFunction:s3.CompleteMultipartUpload@t0#1", K.CRASH_AFTER),
    Injection("DownloadFunction:s3.CompleteMultipartUpload@t0#1", K.LOST_RESPONSE),
    Injection("DownloadFunction:s3.CompleteMultipartUpload@t3#1", K.CONFLICT_409),
    Injection("DownloadFunction:s3.CompleteMultipartUpload@t2#1", K.ERROR_BODY_200),
    Injection("DownloadFunction:s3.PutObject@t0#1", K.CRASH_AFTER),
    Injection("DownloadFunction:dynamodb.PutItem@t3#1", K.CRASH_AFTER),
    Injection("DownloadFunction:s3.HeadObject@t2#1", K.SERVER_ERROR),
    Injection("DownloadFunction:dynamodb.TransactWriteItems@t0#1", K.READ_TIMEOUT),
    Injection("ExportStateMachine:events.PutEvents@t0#1", K.LOST_RESPONSE),
]
#: The random campaign of `make test`: more tenants and days, 2 % of calls failing.
RANDOM_SCENARIO = Scenario(name="random", nightly_tenants=3, backfill_tenants=1, backfill_days=4, zip_days=2)
RANDOM_RATE = 0.02
DEFAULT_SEED = 11


def judged(outcome: Outcome) -> None:
    print(
        f"\n[faults] {outcome.test_id}: fired {dict(outcome.fired)}, {len(outcome.violations)} violation(s), "
        f"{outcome.seconds:.1f} s"
    )
    assert outcome.violations == [], "\n".join(outcome.report())


@pytest.fixture(scope="module")
def baseline_sites(stack: LocalStack, module_simulator: Simulator, function_log: Path) -> list[str]:
    """The baseline run's site ids (it must keep every invariant without a fault)."""
    module_simulator.reset()
    run, outcome = play(stack, module_simulator, Plan.none(), "baseline", function_log=function_log)
    judged(outcome)
    return [site.id for site in run.record.sites]


def test_baseline_enumerates_every_boundary(baseline_sites: list[str]) -> None:
    """Given no fault, the scenario keeps every invariant, and it reaches every site the boundary faults name
    (so none of them can pass without firing)."""
    counts = Counter(site.split("@")[0] for site in baseline_sites)
    print(f"\n[faults] baseline: {len(baseline_sites)} sites: {dict(sorted(counts.items()))}")
    missing = sorted({i.site_id for i in BOUNDARY_FAULTS} - set(baseline_sites))
    assert missing == []


@pytest.mark.parametrize("injection", BOUNDARY_FAULTS, ids=lambda i: i.test_id)
def test_one_fault_at_a_boundary_keeps_every_invariant(
    stack: LocalStack, sim: Simulator, function_log: Path, baseline_sites: list[str], injection: Injection
) -> None:
    """Given one fault at one boundary, when the scenario runs and settles, then every invariant holds."""
    _, outcome = play(stack, sim, Plan([injection]), injection.test_id, function_log=function_log)
    assert outcome.fired == Counter({str(injection.kind): 1}), "the fault did not fire where it was planned"
    judged(outcome)


def test_seeded_random_campaign_keeps_every_invariant(stack: LocalStack, sim: Simulator, function_log: Path) -> None:
    """Given 2 % of the calls failing with random kinds (seed printed; OMBORIGRID_FAULT_SEED replays it), when a
    larger scenario runs and settles, then every invariant holds."""
    seed = seed_from_environment(DEFAULT_SEED)
    print(f"\n[faults] random campaign: seed {seed}, rate {RANDOM_RATE}")
    _, outcome = play(
        stack, sim, Plan.random(seed, RANDOM_RATE), f"seed={seed}", function_log=function_log, scenario=RANDOM_SCENARIO
    )
    assert sum(outcome.fired.values()) >= 1, "no fault fired"
    judged(outcome)


def test_one_fault_from_the_environment(stack: LocalStack, sim: Simulator, function_log: Path) -> None:
    """Replays one fault by its test id (OMBORIGRID_FAULT=<site id>-<kind>)."""
    wanted = os.environ.get("OMBORIGRID_FAULT", "")
    if not wanted:
        pytest.skip("set OMBORIGRID_FAULT=<site id>-<kind> to replay one fault")
    site_id, _, kind = wanted.rpartition("-")
    _, outcome = play(stack, sim, Plan.at(site_id, FaultKind(kind)), wanted, function_log=function_log)
    judged(outcome)


# ============================================================================================= make chaos
@pytest.mark.chaos
@pytest.mark.timeout(7200)
def test_full_enumeration_keeps_every_invariant(
    stack: LocalStack, sim: Simulator, function_log: Path, baseline_sites: list[str]
) -> None:
    """Given every (site, kind) of the enumeration (campaign.py), one per run, then no run violates an invariant."""
    injections = enumerate_faults([Site.parse(site) for site in baseline_sites])
    kinds = Counter(str(i.kind) for i in injections)
    print(f"\n[chaos] enumerated {len(injections)} scenarios by kind: {dict(sorted(kinds.items()))}")
    outcomes = []
    for injection in injections:
        sim.reset()
        _, outcome = play(stack, sim, Plan([injection]), injection.test_id, function_log=function_log)
        outcomes.append(outcome)
        if outcome.violations:
            print("\n".join(f"[chaos] {line}" for line in outcome.report()))
        if len(outcomes) % 50 == 0:
            print(f"[chaos] {len(outcomes)} of {len(injections)} run, {sum(o.seconds for o in outcomes):.0f} s")
    for line in summary(outcomes):
        print(f"[chaos] {line}")
    not_fired = [o.test_id for o in outcomes if not o.fired]
    print(f"[chaos] {len(not_fired)} planned fault(s) did not fire: {not_fired[:20]}")
    assert [line for o in outcomes for line in o.report()] == []


@pytest.mark.chaos
@pytest.mark.timeout(3600)
def test_seeded_random_campaigns_keep_every_invariant(stack: LocalStack, sim: Simulator, function_log: Path) -> None:
    """Given N seeded random campaigns (OMBORIGRID_CHAOS_CAMPAIGNS, default 5; seeds from OMBORIGRID_FAULT_SEED
    on), then none violates an invariant."""
    first = seed_from_environment(DEFAULT_SEED)
    count = int(os.environ.get("OMBORIGRID_CHAOS_CAMPAIGNS", "5"))
    outcomes = []
    for seed in range(first, first + count):
        sim.reset()
        _, outcome = play(
            stack,
            sim,
            Plan.random(seed, RANDOM_RATE),
            f"seed={seed}",
            function_log=function_log,
            scenario=RANDOM_SCENARIO,
        )
        outcomes.append(outcome)
        print(f"[chaos] seed {seed}: fired {dict(outcome.fired)}, {len(outcome.violations)} violation(s)")
    for line in summary(outcomes):
        print(f"[chaos] {line}")
    assert [line for o in outcomes for line in o.report()] == []
