"""``omborigrid-export doctor`` against moto's server (real HTTP, fake account) and the simulator on loopback.

A deployment is built as the template would leave it (bucket, queues, topic, secret, schedule, and a stack whose
outputs and parameters name them); each misconfiguration test breaks one thing and checks that the doctor exits 1
with the sentence that names it, and that every other check still holds.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from omborigrid_export_cli.doctor import DeployedStack, Doctor, Status, describe_stack
from omborigrid_export_cli.main import main
from omborigrid_local.simulator import Simulator, SimulatorConfig

EU, US = "eu0000000000000000000001", "us0000000000000000000002"
TOKENS = {EU: "tok-eu", US: "tok-us"}


@pytest.fixture
def sim(sim_cache: Any) -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(token="tok-unused", tenant_tokens=dict(TOKENS)), cache_dir=sim_cache) as simulator:
        yield simulator


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("OMBORIGRID_ALLOW_LOCAL_URLS", "1")
    return moto_server


@dataclass
class Deployment:
    stack: str
    bucket: str
    secret: str
    schedule: str
    topic: str
    trigger_dlq: str
    export_dlq: str

    def doctor(self, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
        code = main(["doctor", "--stack", self.stack, "--json"])
        return code, json.loads(capsys.readouterr().out)


def _bucket(name: str) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_bucket_lifecycle_configuration(
        Bucket=name,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "AbortIncompleteMultipartUploads",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                }
            ]
        },
    )
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]
        },
    )
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_ownership_controls(
        Bucket=name, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    )


def deploy(sim: Simulator, *, tenants: str = f"{EU},{US}", outputs: tuple[str, ...] | None = None) -> Deployment:
    suffix = uuid.uuid4().hex[:8]
    stack = f"doctor-{suffix}"
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    bucket = f"lake-{suffix}"
    _bucket(bucket)
    secret = f"omborigrid/token-{suffix}"
    token_map = {"tenants": {EU: {"token": TOKENS[EU]}, US: {"token": TOKENS[US], "apiUrl": sim.base_url}}}
    boto3.client("secretsmanager").create_secret(Name=secret, SecretString=json.dumps(token_map))
    trigger_dlq = sqs.create_queue(QueueName=f"trigger-dlq-{suffix}")["QueueUrl"]
    export_dlq = sqs.create_queue(QueueName=f"export-dlq-{suffix}")["QueueUrl"]
    topic = sns.create_topic(Name=f"alarms-{suffix}")["TopicArn"]
    inbox = sqs.create_queue(QueueName=f"inbox-{suffix}")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn)
    schedule = f"{stack}-CreateJobFunctionNightlyExport-{suffix}"
    boto3.client("scheduler").create_schedule(
        Name=schedule,
        ScheduleExpression="cron(30 2 * * ? *)",
        ScheduleExpressionTimezone="Europe/Stockholm",
        State="ENABLED",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": inbox_arn, "RoleArn": "arn:aws:iam::123456789012:role/scheduler", "Input": "{}"},
    )
    values = {
        "LedgerTableName": f"ledger-{suffix}",
        "ExportBucketName": bucket,
        "TriggerDLQUrl": trigger_dlq,
        "ExportQueueDLQUrl": export_dlq,
        "AlarmTopicArn": topic,
    }
    parameters = {
        "TokenSecret": secret,
        "OmboriGridApiUrl": sim.base_url,
        "TenantIds": tenants,
        "ScheduleExpressionTimezone": "Europe/Stockholm",
        "ExportPrefix": "omborigrid",
    }
    template = {
        "Parameters": {name: {"Type": "String"} for name in parameters},
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {k: {"Value": v} for k, v in values.items() if outputs is None or k in outputs},
    }
    boto3.client("cloudformation").create_stack(
        StackName=stack,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    return Deployment(stack, bucket, secret, schedule, topic, trigger_dlq, export_dlq)


def problems(report: dict[str, Any]) -> list[str]:
    return [c["message"] for c in report["checks"] if c["status"] == "fail"]


def test_given_a_healthy_stack_then_every_check_holds_and_exit_0(
    aws: str, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = deploy(sim)
    jobs_before = len(sim.jobs())

    code = main(["doctor", "--stack", deployment.stack])

    text = capsys.readouterr().out
    assert code == 0, text
    assert text.rstrip().endswith("all checks hold")
    assert "FAIL" not in text
    assert f"accepts the token of {EU}" in text
    assert f"accepts the token of {US}" in text
    assert "tok-eu" not in text
    assert "tok-us" not in text
    assert len(sim.jobs()) == jobs_before  # probing a token creates nothing
    code, report = deployment.doctor(capsys)
    assert (code, report["healthy"]) == (0, True)
    assert {c["check"] for c in report["checks"]} == {
        "stack",
        "secret",
        "token",
        "bucket",
        "schedule",
        "alarms",
        "dead letters",
    }


def _expired_us_token(d: Deployment, sim: Simulator) -> None:
    sim.configure(expired_tokens=[TOKENS[US]])


def _malformed_secret(d: Deployment, sim: Simulator) -> None:
    boto3.client("secretsmanager").put_secret_value(SecretId=d.secret, SecretString='{"default": "a", "tenant": {}}')


def _no_secret(d: Deployment, sim: Simulator) -> None:
    boto3.client("secretsmanager").delete_secret(SecretId=d.secret, ForceDeleteWithoutRecovery=True)


def _no_lifecycle(d: Deployment, sim: Simulator) -> None:
    boto3.client("s3").delete_bucket_lifecycle(Bucket=d.bucket)


def _public_bucket(d: Deployment, sim: Simulator) -> None:
    boto3.client("s3").delete_public_access_block(Bucket=d.bucket)


def _no_encryption(d: Deployment, sim: Simulator) -> None:
    boto3.client("s3").delete_bucket_encryption(Bucket=d.bucket)


def _objects_owned_by_writers(d: Deployment, sim: Simulator) -> None:
    boto3.client("s3").put_bucket_ownership_controls(
        Bucket=d.bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]}
    )


def _disabled_schedule(d: Deployment, sim: Simulator) -> None:
    boto3.client("scheduler").update_schedule(
        Name=d.schedule,
        ScheduleExpression="cron(30 2 * * ? *)",
        ScheduleExpressionTimezone="Europe/Stockholm",
        State="DISABLED",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": "arn:aws:sqs:eu-west-1:123456789012:x", "RoleArn": "arn:aws:iam::123456789012:role/s"},
    )


def _schedule_in_another_zone(d: Deployment, sim: Simulator) -> None:
    boto3.client("scheduler").update_schedule(
        Name=d.schedule,
        ScheduleExpression="cron(30 2 * * ? *)",
        ScheduleExpressionTimezone="UTC",
        State="ENABLED",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": "arn:aws:sqs:eu-west-1:123456789012:x", "RoleArn": "arn:aws:iam::123456789012:role/s"},
    )


def _no_subscriber(d: Deployment, sim: Simulator) -> None:
    sns = boto3.client("sns")
    for subscription in sns.list_subscriptions_by_topic(TopicArn=d.topic)["Subscriptions"]:
        sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])


def _dead_letters(d: Deployment, sim: Simulator) -> None:
    boto3.client("sqs").send_message(QueueUrl=d.trigger_dlq, MessageBody='{"trigger": "schedule"}')


BREAKS: dict[str, tuple[Callable[[Deployment, Simulator], None], str, str]] = {
    "expired token": (_expired_us_token, "token", f"refuses the token of {US} (401/403): make a new token"),
    "malformed secret": (_malformed_secret, "secret", r"unknown field(s) ['tenant']"),
    "unreadable secret": (_no_secret, "secret", "cannot be read (ResourceNotFoundException)"),
    "no lifecycle rule": (_no_lifecycle, "bucket", "no lifecycle rule aborting incomplete multipart uploads"),
    "public access": (_public_bucket, "bucket", "public access block leaves BlockPublicAcls"),
    "no encryption": (_no_encryption, "bucket", "has no default encryption"),
    "object writer owns": (_objects_owned_by_writers, "bucket", "does not enforce bucket-owner ownership"),
    "disabled schedule": (_disabled_schedule, "schedule", "is DISABLED; set ScheduleState=ENABLED"),
    "schedule zone": (_schedule_in_another_zone, "schedule", "runs in UTC but ScheduleExpressionTimezone is"),
    "no alarm subscriber": (_no_subscriber, "alarms", "Nobody receives the alarms"),
    "dead letters": (_dead_letters, "dead letters", "1 message(s) wait in trigger-dlq-"),
}


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_given_one_misconfiguration_then_exit_1_with_the_sentence_naming_it(
    case: str, aws: str, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = deploy(sim)
    breaking, check, sentence = BREAKS[case]
    breaking(deployment, sim)

    code, report = deployment.doctor(capsys)

    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert code == 1
    assert report["healthy"] is False
    assert [c["check"] for c in failed] == [check], failed
    assert sentence in failed[0]["message"], failed[0]["message"]
    assert "tok-" not in json.dumps(report)


def test_given_a_tenant_without_a_token_then_the_sentence_names_it(
    aws: str, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    other = "ae0000000000000000000003"
    deployment = deploy(sim, tenants=f"{EU},{US},{other}")

    code, report = deployment.doctor(capsys)

    assert code == 1
    assert problems(report) == [
        f"The secret {deployment.secret} has no token for tenant {other} and no default token; add the tenant to "
        "its 'tenants' (a token made in that tenant's Developer tab)."
    ]


def test_given_a_stack_without_an_output_then_that_is_named_and_the_check_needing_it_says_why_it_cannot_run(
    aws: str, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = deploy(sim, outputs=("LedgerTableName", "ExportBucketName", "TriggerDLQUrl", "ExportQueueDLQUrl"))

    code, report = deployment.doctor(capsys)

    assert code == 1
    assert [(c["check"], c["message"][:40]) for c in report["checks"] if c["status"] == "fail"] == [
        ("stack", f"Stack {deployment.stack} lacks AlarmTopicArn; i"[:40]),
        ("alarms", "Cannot check the alarms: the stack has n"),
    ]


def test_given_an_unknown_stack_then_exit_2_with_one_sentence(aws: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--stack", "no-such-stack"]) == 2
    assert "Cannot read stack 'no-such-stack'" in capsys.readouterr().err


def test_given_no_tenants_configured_then_the_empty_nightly_run_is_named(
    aws: str, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = deploy(sim, tenants="")

    code, report = deployment.doctor(capsys)

    assert code == 1
    assert problems(report) == ["TenantIds is empty, so the nightly run exports nothing; list the tenants to export."]


def test_given_a_stack_left_by_a_failed_update_then_that_is_named(aws: str, sim: Simulator) -> None:
    deployment = deploy(sim)
    described = describe_stack(deployment.stack)
    rolled_back = DeployedStack(deployment.stack, "UPDATE_ROLLBACK_COMPLETE", described.outputs, described.parameters)

    checks = Doctor(rolled_back, client=any_client, allow_local_urls=True).check_stack()

    assert [c.message for c in checks] == [
        f"Stack {deployment.stack} is UPDATE_ROLLBACK_COMPLETE; finish or roll back its last update first."
    ]


def any_client(service: str) -> Any:
    """boto3's client for a service named at run time (what Doctor takes)."""
    return boto3.client(service)  # type: ignore[call-overload]


class PendingSubscriptions:
    """SNS as AWS answers for an e-mail subscription nobody confirmed yet (moto confirms every subscription)."""

    def list_subscriptions_by_topic(self, TopicArn: str) -> dict[str, Any]:
        return {
            "Subscriptions": [{"TopicArn": TopicArn, "Protocol": "email", "SubscriptionArn": "PendingConfirmation"}]
        }


def test_given_an_unconfirmed_alarm_subscription_then_the_confirmation_is_asked_for(aws: str, sim: Simulator) -> None:
    deployment = deploy(sim)

    def client(service: str) -> Any:
        return PendingSubscriptions() if service == "sns" else any_client(service)

    checks = list(Doctor(describe_stack(deployment.stack), client=client, allow_local_urls=True).check_alarm_topic())

    assert [(c.status, c.message) for c in checks] == [
        (Status.FAIL, "The alarm subscription waits for confirmation; click the link AWS e-mailed.")
    ]
