"""The stack's own event bus: "Export Requested" arrives there, outcomes go out there, and its policy decides who
may put events (evaluated with the bus policy as SAM translates the template, see test_least_privilege.py).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest

from omborigrid_local.engine import LocalStack
from omborigrid_local.engine.iam import Principal, Request, Statement, evaluate
from omborigrid_local.simulator import Simulator

from .helpers import DAY, events_for, start_stack

ACCOUNT = "123456789012"
REQUESTER = f"arn:aws:iam::{ACCOUNT}:role/data-engineers"
PUT_ANYWHERE = {"Effect": "Allow", "Action": "events:*", "Resource": "*"}


@pytest.fixture(scope="module")
def stack(module_simulator: Simulator) -> Iterator[LocalStack]:
    local = start_stack(module_simulator, parameters={"RequesterPrincipalArns": REQUESTER})
    try:
        yield local
    finally:
        local.close()


def administrator(arn: str) -> Principal:
    """A principal whose own IAM policy allows every EventBridge action anywhere (an account administrator)."""
    return Principal(arn, arn, [Statement.parse(PUT_ANYWHERE, source="admin", resource_policy=False)], [])


def put(stack: LocalStack, principal: Principal, detail_type: str) -> tuple[bool, str]:
    bus_arn = f"arn:aws:events:{stack.region}:{ACCOUNT}:event-bus/{stack.event_bus}"
    context = (("events:detail-type", (detail_type,)), ("events:source", ("omborigrid.export",)))
    decision = evaluate(principal, Request("events:PutEvents", bus_arn, context), stack.policies().resource_policies)
    return decision.allowed, decision.denied_by.source if decision.denied_by else ""


def test_outputs_name_the_stack_bus(stack: LocalStack) -> None:
    assert stack.outputs["EventBusName"] == f"{stack.stack_name}-export"
    assert stack.outputs["EventBusArn"].endswith(f":event-bus/{stack.stack_name}-export")


def test_only_the_listed_requesters_may_request(stack: LocalStack) -> None:
    """Given RequesterPrincipalArns names one role, then only it may put "Export Requested" on the bus: another
    administrator of the same account and any principal of another account are denied by the bus policy."""
    assert put(stack, administrator(REQUESTER), "Export Requested") == (True, "")
    other_admin = administrator(f"arn:aws:iam::{ACCOUNT}:role/Admin")
    assert put(stack, other_admin, "Export Requested") == (False, "ExportEventBus#OnlyTheStacksRequesters")
    outsider = administrator("arn:aws:iam::999999999999:role/Admin")
    assert put(stack, outsider, "Export Requested") == (False, "ExportEventBus#OnlyTheStacksRequesters")


def test_only_the_state_machine_announces_outcomes(stack: LocalStack) -> None:
    """Given the listed requester, when it puts an "Export Failed" (which would mark a day failed), then the bus
    denies it; the state machine's own role may put it."""
    assert put(stack, administrator(REQUESTER), "Export Failed") == (
        False,
        "ExportEventBus#OnlyTheStateMachineAnnouncesOutcomes",
    )
    state_machine = stack.policies().principals["ExportStateMachine"]
    assert put(stack, state_machine, "Export Failed") == (True, "")
    assert put(stack, state_machine, "Export Completed") == (True, "")


@pytest.mark.parametrize("detail_type", ["Schema Changed", "Export Anomalous"])
def test_only_download_announces_the_lakes_signals(stack: LocalStack, detail_type: str) -> None:
    """Given the listed requester and the state machine, when they put a lake signal, then the bus denies it; the
    Download function's role (which reads the landed data) may put it, and nothing else."""
    principals = stack.policies().principals
    download = principals["DownloadFunction"]
    assert put(stack, download, detail_type) == (True, "")
    assert put(stack, administrator(REQUESTER), detail_type) == (
        False,
        "ExportEventBus#OnlyDownloadAnnouncesLakeSignals",
    )
    assert put(stack, principals["ExportStateMachine"], detail_type) == (
        False,
        "ExportEventBus#OnlyDownloadAnnouncesLakeSignals",
    )
    assert put(stack, download, "Export Failed") == (False, "ExportEventBus#OnlyTheStateMachineAnnouncesOutcomes")


def test_export_requested_on_the_stack_bus_reaches_create_job(stack: LocalStack, sim: Simulator) -> None:
    """Given an "Export Requested" event put on the stack's bus (as the CLI's request does), then the rule on that
    bus delivers it to CreateJob, the export lands, and "Export Completed" goes out on the same bus."""
    tenant = secrets.token_hex(12)
    detail = {"tenantIds": [tenant], "dataDateFrom": DAY, "dataDateTo": DAY, "split": "daily", "force": False}
    entry = {
        "Source": "omborigrid.export",
        "DetailType": "Export Requested",
        "Detail": json.dumps(detail),
        "EventBusName": stack.event_bus,
    }

    response = stack.client("events").put_events(Entries=[entry])

    assert response["FailedEntryCount"] == 0
    [execution] = stack.wait_for_executions(1, timeout=60, match=tenant)
    assert execution["status"] == "SUCCEEDED"
    assert [e["detail-type"] for e in events_for(stack, tenant)] == ["Export Completed"]


def test_export_requested_on_the_default_bus_is_ignored(stack: LocalStack) -> None:
    """Given the same event on the default bus, then no rule of the stack sees it."""
    tenant = secrets.token_hex(12)
    detail = {"tenantIds": [tenant], "dataDateFrom": DAY, "dataDateTo": DAY, "split": "daily", "force": False}
    deliveries = len(stack.deliveries)

    stack.client("events").put_events(
        Entries=[{"Source": "omborigrid.export", "DetailType": "Export Requested", "Detail": json.dumps(detail)}]
    )

    stack.wait_for_executions(0, timeout=10)
    assert len(stack.deliveries) == deliveries
    assert stack.executions(tenant) == []
