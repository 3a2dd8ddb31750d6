"""Fixtures of the handler tier: each ``lambda_handler(event, context)`` called directly, as Lambda would.

The function's environment is the one template.yaml gives it (same names; values pointing at the resources
below), with the Powertools variables set the way Powertools' own tests do (tracing off). AWS is moto in this
process (the ledger table as tests/ledger_table.py defines it, the queue, the state machine, the token's secret
and the bucket); the OmboriGrid API is the simulator on loopback. Every test sees fresh resources and fresh
runtime caches.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws

from omborigrid_export.layout import DEFAULT_ARCHIVE_KEY_TEMPLATE, DEFAULT_KEY_TEMPLATE
from omborigrid_lambda import runtime
from tests.ledger_table import create_ledger_table

# Powertools reads its variables when a handler module creates its Logger and Metrics, at import: set them
# before the tests import the handlers (Powertools' own test idiom).
POWERTOOLS = {
    "POWERTOOLS_SERVICE_NAME": "omborigrid-export",
    "POWERTOOLS_METRICS_NAMESPACE": "OmboriGridExport",
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_LOG_LEVEL": "INFO",
}
for _name, _value in POWERTOOLS.items():
    os.environ.setdefault(_name, _value)

REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/export-state-machine"
#: A state machine that only has to exist: moto records executions without running them here.
DEFINITION = '{"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}'


@dataclass
class StubContext:
    """The parts of the Lambda context object handlers and Powertools read."""

    function_name: str = "test-function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:test-function"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    remaining_millis: int = 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_millis


@dataclass
class Resources:
    table: str
    queue_url: str
    state_machine_arn: str
    bucket: str
    secret: str
    clients: dict[str, Any]

    def client(self, service: str) -> Any:
        return self.clients[service]

    def ledger_items(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.client("dynamodb").scan(TableName=self.table)["Items"]
        return [i for i in items if not i["tenantId"]["S"].startswith("#")]

    def queued_messages(self) -> list[str]:
        sqs = self.client("sqs")
        bodies: list[str] = []
        while True:
            got = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
            if not got.get("Messages"):
                return bodies
            for message in got["Messages"]:
                bodies.append(message["Body"])
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def executions(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.client("stepfunctions").list_executions(
            stateMachineArn=self.state_machine_arn
        )["executions"]
        return found


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, simulator: Any) -> Iterator[Resources]:
    from aws_lambda_powertools.utilities import parameters

    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        clients: dict[str, Any] = {
            s: boto3.client(s, region_name=REGION) for s in ("dynamodb", "sqs", "stepfunctions", "s3")
        }
        secret = "omborigrid-token"
        boto3.client("secretsmanager", region_name=REGION).create_secret(Name=secret, SecretString=simulator.token)
        bucket = f"lake-{uuid.uuid4().hex[:8]}"
        clients["s3"].create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        machine = clients["stepfunctions"].create_state_machine(name="export", definition=DEFINITION, roleArn=ROLE)
        resources = Resources(
            table=create_ledger_table(clients["dynamodb"], "ledger"),
            queue_url=clients["sqs"].create_queue(QueueName="export-jobs")["QueueUrl"],
            state_machine_arn=machine["stateMachineArn"],
            bucket=bucket,
            secret=secret,
            clients=clients,
        )
        runtime.reset()
        parameters.clear_caches()
        yield resources
        runtime.reset()
        parameters.clear_caches()


EnvSetter = Callable[..., dict[str, str | None]]


@pytest.fixture
def function_env(monkeypatch: pytest.MonkeyPatch, aws: Resources, simulator: Any) -> EnvSetter:
    """``function_env("DownloadFunction", LOOKBACK_DAYS="0")``: that function's environment, as deployed."""

    def set_env(function: str, **overrides: str | None) -> dict[str, str | None]:
        api = {
            "OMBORIGRID_API_URL": simulator.base_url,
            "OMBORIGRID_ALLOW_LOCAL_URLS": "1",
            "OMBORIGRID_TOKEN_SECRET": aws.secret,
            "EXPORT_PREFIX": "omborigrid",
            "EXPORT_KEY_TEMPLATE": DEFAULT_KEY_TEMPLATE,
            "EXPORT_ARCHIVE_KEY_TEMPLATE": DEFAULT_ARCHIVE_KEY_TEMPLATE,
        }
        declared = {
            "CreateJobFunction": {
                **api,
                "LEDGER_TABLE": aws.table,
                "EXPORT_QUEUE_URL": aws.queue_url,
                "EXPORT_STATE_MACHINE_ARN": aws.state_machine_arn,
                "TENANT_IDS": "",
                "SCHEDULE_TIMEZONE": "UTC",
                "LOOKBACK_DAYS": "7",
                "MAX_JOBS_IN_FLIGHT": "20",
                "FRESHNESS_HOURS": "36",
                "MAX_JOBS_IN_FLIGHT_PER_TENANT": "0",
                "PAUSE_AFTER_FAILED_NIGHTS": "5",
                "EVENT_BUS_NAME": "default",
            },
            "StartExportFunction": {"EXPORT_STATE_MACHINE_ARN": aws.state_machine_arn},
            "CheckStatusFunction": api,
            "DownloadFunction": {
                **api,
                "LEDGER_TABLE": aws.table,
                "EXPORT_BUCKET": aws.bucket,
                # moto's default account: every S3 call names it as the bucket's expected owner.
                "EXPORT_BUCKET_OWNER": "123456789012",
                # As the template's defaults set them.
                "OMBORIGRID_PROOF_STRICT": "false",
                "OMBORIGRID_PROOF_TOLERANCE_HOURS": "24",
                "OMBORIGRID_PROOF_TENANT_COLUMN": "tenantId",
                "OMBORIGRID_PROOF_EVENT_TIME_COLUMNS": "eventTime,sessionCreated,clientCreated",
                "OMBORIGRID_ARCHIVE_MAX_RATIO": "100",
                "OMBORIGRID_ARCHIVE_MAX_INFLATED_GIB": "50",
                "OMBORIGRID_PART_SIZE_MIB": "8",
                "OMBORIGRID_TRANSFER_CONCURRENCY": "4",
                "OMBORIGRID_TRANSFER_ATTEMPTS": "5",
                "EVENT_BUS_NAME": "default",
                "ANOMALY_HISTORY_DAYS": "14",
                "ANOMALY_MIN_HISTORY_DAYS": "7",
                "ANOMALY_LOW_RATIO": "0.5",
                "ANOMALY_HIGH_RATIO": "3",
                "ANOMALY_BASELINE": "all-days",
                "ANOMALY_MIN_ROWS": "100",
                "ALERT_ON_EMPTY_DAY": "false",
                "LINEAGE_ENDPOINT": "",
                "CATALOG_DATABASE": "",
                "SCHEMA_CHANGE_POLICY": "land",
            },
        }[function]
        variables: dict[str, str | None] = {**declared, **overrides}
        for name in {
            *api,
            "LEDGER_TABLE",
            "EXPORT_BUCKET",
            "EXPORT_BUCKET_OWNER",
            "EXPORT_QUEUE_URL",
            "EXPORT_STATE_MACHINE_ARN",
        }:
            monkeypatch.delenv(name, raising=False)
        for name, value in {**POWERTOOLS, **variables}.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        runtime.reset()
        return variables

    return set_env


@pytest.fixture
def context() -> StubContext:
    return StubContext()
