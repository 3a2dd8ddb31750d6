"""``omborigrid-export request`` and ``status`` against moto's server (real HTTP, fake account)."""

from __future__ import annotations

import json
import uuid
from datetime import date

import boto3
import pytest

from omborigrid_export.lake_facts import LakeFacts
from omborigrid_export.lake_signals import observe
from omborigrid_export.ledger import Ledger
from omborigrid_export.models import ExportRequest
from omborigrid_export.scheduling import plan_exports
from omborigrid_export.volume import VolumeRule
from omborigrid_export_cli.main import main
from tests.conftest import TENANT
from tests.lake_samples import NORMAL, RETYPED, manifest
from tests.ledger_table import create_ledger_table


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    return moto_server


def test_request_puts_a_valid_export_requested_event_on_the_bus(aws: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a rule on the bus that copies our events into a queue
    events, sqs = boto3.client("events"), boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"captured-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = f"requested-{uuid.uuid4().hex[:8]}"
    events.put_rule(
        Name=rule, EventPattern=json.dumps({"source": ["omborigrid.export"], "detail-type": ["Export Requested"]})
    )
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": queue_arn}])
    # When
    argv = ["request", "--bus", "default", "--tenant", TENANT, "--from", "2026-10-01", "--to", "2026-10-31"]
    code = main([*argv, "--force", "--json"])
    # Then
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["exports"] == 31
    messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=2).get("Messages", [])
    assert len(messages) == 1
    event = json.loads(messages[0]["Body"])
    assert event["detail-type"] == "Export Requested"
    assert event["detail"] == {
        "tenantIds": [TENANT],
        "dataDateFrom": "2026-10-01",
        "dataDateTo": "2026-10-31",
        "split": "daily",
        "force": True,
    }


def test_request_to_a_stack_puts_the_event_on_its_own_bus(aws: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Given a stack whose EventBusName output names its bus, when `request --stack` runs, then the event is put on
    that bus (a rule there sees it) and not on the default bus."""
    name = f"omborigrid-{uuid.uuid4().hex[:8]}"
    template = {
        "Resources": {"Bus": {"Type": "AWS::Events::EventBus", "Properties": {"Name": f"{name}-export"}}},
        "Outputs": {"EventBusName": {"Value": {"Fn::GetAtt": ["Bus", "Name"]}}},
    }
    boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))
    events, sqs = boto3.client("events"), boto3.client("sqs")
    queues = {}
    for bus in (f"{name}-export", "default"):
        url = sqs.create_queue(QueueName=f"captured-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        rule = f"requested-{uuid.uuid4().hex[:8]}"
        events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps({"detail-type": ["Export Requested"]}))
        events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
        queues[bus] = url

    code = main(["request", "--stack", name, "--tenant", TENANT, "--from", "2026-10-01", "--to", "2026-10-01"])

    assert code == 0
    assert f"on {name}-export" in capsys.readouterr().out
    [message] = sqs.receive_message(QueueUrl=queues[f"{name}-export"], WaitTimeSeconds=2)["Messages"]
    assert json.loads(message["Body"])["detail"]["dataDateFrom"] == "2026-10-01"
    assert sqs.receive_message(QueueUrl=queues["default"], WaitTimeSeconds=0).get("Messages", []) == []


def test_request_names_its_bus_or_stack(aws: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["request", "--tenant", TENANT, "--from", "2026-10-01", "--to", "2026-10-02"]) == 2
    assert "--stack" in capsys.readouterr().err


def test_request_with_bad_input_sends_nothing_and_exits_2(aws: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["request", "--bus", "default", "--tenant", "a/b", "--from", "2026-10-01", "--to", "2026-10-02"]) == 2
    assert "not acceptable" in capsys.readouterr().err


@pytest.fixture
def ledger_table(aws: str) -> str:
    return create_ledger_table(boto3.client("dynamodb"), f"ledger-{uuid.uuid4().hex[:8]}")


def day(n: int) -> ExportRequest:
    return ExportRequest(TENANT, date(2026, 11, n), date(2026, 11, n))


def fill(ledger: Ledger) -> None:
    """Nov 1 landed, Nov 2 failed, Nov 3 in flight, Nov 4 pending, Nov 5 missing."""
    from omborigrid_export.scheduling import plan_exports

    plan_exports([day(1), day(2), day(3), day(4)], ledger)
    for n, job in ((1, "job-1"), (2, "job-2"), (3, "job-3")):
        claim = ledger.dispatch(day(n), cap=10)
        assert claim is not None
        ledger.record_job(day(n), claim, job)
    ledger.mark_landed(day(1), "job-1", "k/1.parquet", "k/_1.manifest.json")
    ledger.mark_failed(day(2), "job-2", "IntegrityError: fileSize lied")


def test_status_shows_each_day_as_a_calendar_and_as_json(ledger_table: str, capsys: pytest.CaptureFixture[str]) -> None:
    fill(Ledger(boto3.client("dynamodb"), ledger_table))
    args = ["status", "--table", ledger_table, "--tenant", TENANT, "--from", "2026-11-01", "--to", "2026-11-05"]
    assert main([*args, "--json"]) == 1  # not everything landed
    report = json.loads(capsys.readouterr().out)
    states = [d["state"] for d in report["tenants"][0]["days"]]
    assert states == ["LANDED", "FAILED", "QUEUED", "PENDING", "MISSING"]
    assert report["tenants"][0]["days"][1]["error"] == "IntegrityError: fileSize lied"
    assert main(args) == 1
    grid = capsys.readouterr().out
    assert f"  2026-11 |#X~. {' ' * 26}|" in grid
    assert "failed 2026-11-02: IntegrityError: fileSize lied" in grid


def test_status_of_a_fully_landed_range_exits_0(ledger_table: str, capsys: pytest.CaptureFixture[str]) -> None:
    fill(Ledger(boto3.client("dynamodb"), ledger_table))
    assert (
        main(["status", "--table", ledger_table, "--tenant", TENANT, "--from", "2026-11-01", "--to", "2026-11-01"]) == 0
    )


def test_status_finds_the_table_from_the_stack_outputs(aws: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["status", "--stack", "no-such-stack", "--tenant", TENANT, "--from", "2026-11-01", "--to", "2026-11-01"])
        == 2
    )
    assert "Cannot read stack 'no-such-stack'" in capsys.readouterr().err


def fill_month(table: str) -> None:
    """November: 30 days landed, the 12th empty, the 20th retyped, the 25th at 5 % of the usual 1000 rows."""
    dynamodb = boto3.client("dynamodb")
    ledger, lake = Ledger(dynamodb, table), LakeFacts(dynamodb, table)
    plan_exports([day(n) for n in range(1, 31)], ledger)
    for n in range(1, 31):
        claim = ledger.dispatch(day(n), cap=40)
        assert claim is not None
        ledger.record_job(day(n), claim, f"job-{n}")
        ledger.mark_landed(day(n), f"job-{n}", f"k/{n}.parquet", f"k/_{n}.manifest.json")
        rows = {12: 0, 25: 50}.get(n, 1000)
        observe(manifest(date(2026, 11, n), rows, RETYPED if n >= 20 else NORMAL, tenant=TENANT), lake, VolumeRule())


def test_status_marks_empty_anomalous_and_schema_changed_days_and_shows_rows(
    ledger_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fill_month(ledger_table)
    args = ["status", "--table", ledger_table, "--tenant", TENANT, "--from", "2026-11-01", "--to", "2026-11-30"]
    assert main([*args, "--json"]) == 0  # an empty day is landed
    days = json.loads(capsys.readouterr().out)["tenants"][0]["days"]
    assert [d["state"] for d in days] == ["LANDED"] * 30
    assert {d["date"][8:]: d["signal"] for d in days if d["signal"]} == {
        "12": "empty",
        "20": "schemaChanged",
        "25": "anomalous",
    }
    assert [d["rows"] for d in days[10:13]] == [1000, 0, 1000]
    assert days[24]["tables"]["export"]["volume"] == "low"
    assert main([*args, "--history", "export"]) == 0
    out = capsys.readouterr().out
    assert f"  2026-11 |{'#' * 11}0{'#' * 7}%{'#' * 4}!{'#' * 5} |  28,050 rows" in out
    assert f"     rows |{'█' * 11}_{'█' * 12}▁{'█' * 5} |" in out
    assert "  empty 2026-11-12: landed with 0 rows" in out
    assert "  schema changed 2026-11-20: export (breaking)" in out
    assert "  anomalous 2026-11-25: export 50 rows (low)" in out
    assert f"  2026-11-25           50 {'█' * 2}  anomalous" in out
    assert "  2026-11-12            0   empty" in out
    assert f"  2026-11-01        1,000 {'█' * 40}" in out
