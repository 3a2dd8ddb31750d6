"""``omborigrid-export retry`` (and ``status``'s hint) against moto's server: real HTTP, a stack named by its outputs.

The ledger holds, for one tenant: Nov 1 landed, Nov 2 and 3 failed, Nov 4 in flight, Nov 5 and 6 missing, Nov 7
landed. A rule copies the "Export Requested" events on the bus into a queue, so each test reads what was asked.
"""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any

import boto3
import pytest

from omborigrid_export.ledger import Ledger
from omborigrid_export.models import ExportRequest
from omborigrid_export.scheduling import plan_exports
from omborigrid_export_cli.main import main
from tests.conftest import TENANT
from tests.ledger_table import create_ledger_table


def day(n: int) -> ExportRequest:
    return ExportRequest(TENANT, date(2026, 11, n), date(2026, 11, n))


@pytest.fixture
def stack(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A stack whose LedgerTableName names a filled ledger; returns (stack name, capture queue URL)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    suffix = uuid.uuid4().hex[:8]
    table = create_ledger_table(boto3.client("dynamodb"), f"ledger-{suffix}")
    ledger = Ledger(boto3.client("dynamodb"), table)
    plan_exports([day(n) for n in (1, 2, 3, 4, 7)], ledger)
    for n in (1, 2, 3, 4, 7):
        claim = ledger.dispatch(day(n), cap=10)
        assert claim is not None
        ledger.record_job(day(n), claim, f"job-{n}")
    for n in (1, 7):
        ledger.mark_landed(day(n), f"job-{n}", f"k/{n}.parquet", f"k/_{n}.manifest.json")
    for n in (2, 3):
        ledger.mark_failed(day(n), f"job-{n}", "AuthError: the token was refused")
    bus = f"bus-{suffix}"
    events, sqs = boto3.client("events"), boto3.client("sqs")
    events.create_event_bus(Name=bus)
    queue_url = sqs.create_queue(QueueName=f"asked-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name=f"asked-{suffix}",
        EventBusName=bus,
        EventPattern=json.dumps({"source": ["omborigrid.export"], "detail-type": ["Export Requested"]}),
    )
    events.put_targets(Rule=f"asked-{suffix}", EventBusName=bus, Targets=[{"Id": "q", "Arn": queue_arn}])
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {"LedgerTableName": {"Value": table}, "EventBusName": {"Value": bus}},
    }
    boto3.client("cloudformation").create_stack(StackName=f"retry-{suffix}", TemplateBody=json.dumps(template))
    return f"retry-{suffix}", queue_url


def asked(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    details: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
        if not messages:
            return sorted(details, key=lambda d: d["dataDateFrom"])
        for message in messages:
            details.append(json.loads(message["Body"])["detail"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def test_retry_asks_again_for_failed_and_missing_days_only_one_event_per_run_of_days(
    stack: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    name, queue_url = stack

    code = main(["retry", "--stack", name, "--tenant", TENANT, "--from", "2026-11-01", "--to", "2026-11-07"])

    out = capsys.readouterr().out
    assert code == 0
    assert asked(queue_url) == [
        {"tenantIds": [TENANT], "dataDateFrom": d1, "dataDateTo": d2, "split": "daily", "force": False}
        for d1, d2 in (("2026-11-02", "2026-11-03"), ("2026-11-05", "2026-11-06"))
    ]
    assert f"asking again for {TENANT} 2026-11-02..2026-11-03: requested 2 export(s)" in out
    assert f"asking again for {TENANT} 2026-11-05..2026-11-06: requested 2 export(s)" in out
    assert "skipped 2 landed day(s) (--force re-exports them)" in out
    assert "skipped 1 day(s) in flight: 2026-11-04" in out


def test_retry_with_force_also_replaces_the_landed_days_but_never_asks_for_one_in_flight(
    stack: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    name, queue_url = stack
    args = ["retry", "--stack", name, "--tenant", TENANT, "--from", "2026-11-01", "--to", "2026-11-07"]

    assert main([*args, "--force", "--json"]) == 0

    printed = json.loads(capsys.readouterr().out)
    assert printed["requested"] == [
        {"dataDateFrom": "2026-11-01", "dataDateTo": "2026-11-03"},
        {"dataDateFrom": "2026-11-05", "dataDateTo": "2026-11-07"},
    ]
    assert printed["skipInFlight"] == ["2026-11-04"]
    assert [(d["dataDateFrom"], d["force"]) for d in asked(queue_url)] == [("2026-11-01", True), ("2026-11-05", True)]


def test_retry_of_a_landed_range_asks_for_nothing(stack: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    name, queue_url = stack
    assert main(["retry", "--stack", name, "--tenant", TENANT, "--from", "2026-11-07", "--to", "2026-11-07"]) == 0
    assert f"nothing to retry for {TENANT} 2026-11-07..2026-11-07" in capsys.readouterr().out
    assert asked(queue_url) == []


def test_status_prints_the_exact_retry_command_under_a_failed_day(
    stack: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    name, _ = stack
    assert main(["status", "--stack", name, "--tenant", TENANT, "--from", "2026-11-01", "--to", "2026-11-07"]) == 1
    grid = capsys.readouterr().out
    assert "  failed 2026-11-02: AuthError: the token was refused\n" in grid
    assert (
        f"    retry: omborigrid-export retry --stack {name} --tenant {TENANT} --from 2026-11-02 --to 2026-11-02\n"
        in grid
    )


def test_retry_with_bad_dates_sends_nothing_and_exits_2(
    stack: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    name, queue_url = stack
    assert main(["retry", "--stack", name, "--tenant", TENANT, "--from", "2026-11-07", "--to", "2026-11-01"]) == 2
    assert "--from must not be after --to" in capsys.readouterr().err
    assert asked(queue_url) == []
