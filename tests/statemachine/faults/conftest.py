"""Fixtures of the fault campaigns: one stack per module, its functions' logs in a file the secret scan reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from omborigrid_local.engine import LocalStack
from omborigrid_local.simulator import Simulator

from ..helpers import start_stack

#: A cap below the scenario's concurrent jobs, so the backfill's last day waits for a drain.
CAMPAIGN_PARAMETERS = {"LookbackDays": 0, "MaxJobsInFlight": 3}


@pytest.fixture(scope="module")
def function_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fault-campaign") / "functions.log"


@pytest.fixture(scope="module")
def stack(module_simulator: Simulator, function_log: Path) -> Iterator[LocalStack]:
    local = start_stack(module_simulator, parameters=CAMPAIGN_PARAMETERS, function_log=function_log)
    try:
        yield local
    finally:
        local.close()
