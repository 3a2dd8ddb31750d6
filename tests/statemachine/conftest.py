"""Fixtures of the state machine tier (see helpers.py for the clocks and the shared helpers).

One LocalStack per test module (building it takes a few seconds); each test gets the simulator reset to
fresh knobs and a tenant id of its own, so ledger entries, keys, executions and events never collide. After every
test, each AWS call the stack's functions and state machine made during it must be allowed by template.yaml's
policies (test_least_privilege.py checks the other way too: no grant unused).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from omborigrid_local.engine import LocalStack
from omborigrid_local.simulator import Simulator

from .helpers import GUARDED, LEAST_PRIVILEGE_LINES, fresh_config


@pytest.fixture(scope="module")
def module_simulator(sim_cache: Path) -> Iterator[Simulator]:
    with Simulator(fresh_config(), cache_dir=sim_cache) as simulator:
        yield simulator


@pytest.fixture
def sim(module_simulator: Simulator) -> Simulator:
    """The module's simulator with every knob back at its default (and no jobs, stats or armed faults)."""
    module_simulator.reset()
    module_simulator.configure(**dataclasses.asdict(fresh_config()))
    return module_simulator


@pytest.fixture
def tenant() -> str:
    """A tenant id of its own for each test (24 hex digits, like OmboriGrid's)."""
    return secrets.token_hex(12)


@pytest.fixture(autouse=True)
def every_call_is_allowed(pytestconfig: pytest.Config) -> Iterator[None]:
    """Fails the test (in its teardown) when a call it caused is one the template's policies would refuse."""
    stack = LocalStack.running()
    first = len(stack.recorder) if stack is not None else 0
    yield
    if stack is None or LocalStack.running() is not stack:
        return
    report = stack.least_privilege(stack.recorder.since(first))
    totals = pytestconfig.stash.setdefault(GUARDED, {"tests": 0, "calls": 0, "pairs": 0})
    totals["tests"] += 1
    totals["calls"] += report.calls
    totals["pairs"] += len(report.checked)
    assert report.missing == [], report.details()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """The least-privilege figures, printed whatever the output capture (they are what `make test` must show)."""
    saved: list[str] = config.stash.get(LEAST_PRIVILEGE_LINES, [])
    lines = list(saved)
    totals = config.stash.get(GUARDED, None)
    if totals:
        lines.append(
            f"after each of {totals['tests']} tests: {totals['calls']} calls, {totals['pairs']} (principal, action, "
            "resource) pairs checked, none refused (or that test failed)"
        )
    if lines:
        terminalreporter.section("least privilege (template.yaml against the calls recorded)")
        for line in lines:
            terminalreporter.write_line(line)
