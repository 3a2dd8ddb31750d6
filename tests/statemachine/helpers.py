"""Helpers of the state machine tier: the real ASL on the local engine, the real handlers and layer, the
simulator on loopback.

Time: the simulator runs TIME_SCALE simulated seconds per real second and the engine waits WAIT_SCALE real
seconds per ASL second (1/TIME_SCALE), so both clocks agree: a job taking an hour finishes after about
3.6 real seconds, during which the state machine's 60…600 s waits elapse at the same pace.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest

from omborigrid_local.engine import LocalStack
from omborigrid_local.simulator import Simulator, SimulatorConfig

TIME_SCALE = 1000.0
WAIT_SCALE = 1 / TIME_SCALE

#: A date far from "today", for ad-hoc requests (the nightly path uses yesterday).
DAY = "2026-11-01"

#: Lines the least-privilege test leaves for the end of the run's output (conftest.py prints them).
LEAST_PRIVILEGE_LINES = pytest.StashKey[list[str]]()
#: Tests, calls and (principal, action, resource) pairs conftest.py's guard checked after each test.
GUARDED = pytest.StashKey[dict[str, int]]()


def fresh_config(**knobs: Any) -> SimulatorConfig:
    return SimulatorConfig(**{"time_scale": TIME_SCALE, **knobs})


def start_stack(simulator: Simulator, **kwargs: Any) -> LocalStack:
    """A LocalStack on the module's simulator. Handler logs stay on stdout, where pytest captures them."""
    logging.getLogger("omborigrid_local.engine").setLevel(logging.INFO)
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    kwargs.setdefault("wait_scale", WAIT_SCALE)
    stack = LocalStack(api_url=simulator.base_url, token=simulator.token, **kwargs)
    return stack.start()


def object_keys(stack: LocalStack, prefix: str = "") -> list[str]:
    s3 = stack.client("s3")
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return sorted(keys)


def read_object(stack: LocalStack, key: str) -> bytes:
    body: bytes = stack.client("s3").get_object(Bucket=stack.bucket, Key=key)["Body"].read()
    return body


def events_for(stack: LocalStack, tenant_id: str) -> list[dict[str, Any]]:
    return [e for e in stack.outcome_events() if e.get("detail", {}).get("tenantId") == tenant_id]


def ledger_item(stack: LocalStack, tenant_id: str, day: str) -> dict[str, Any]:
    item: dict[str, Any] = stack.client("dynamodb").get_item(
        TableName=stack.table_name,
        Key={"tenantId": {"S": tenant_id}, "dataRange": {"S": f"{day}/{day}"}},
        ConsistentRead=True,
    )["Item"]
    return item


def request_day(stack: LocalStack, tenant_id: str, day: str = DAY) -> dict[str, Any]:
    """An "Export Requested" event for one tenant and day, delivered to CreateJob."""
    result: dict[str, Any] = stack.deliver_export_requested(
        {"tenantIds": [tenant_id], "dataDateFrom": day, "dataDateTo": day, "split": "daily", "force": False}
    )
    return result


def created_jobs(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The jobs a CreateJob run created at the API (its result also lists what it planned or skipped)."""
    return [job for job in result["jobs"] if job["outcome"] == "created"]
