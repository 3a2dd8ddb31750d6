"""``doctor``: a preflight of a deployed stack, so a misconfiguration is found before a night fails on it.

Each check reads, never writes: the stack's outputs and parameters; the token secret (readable, and a token or a
token map that names every configured tenant); for every tenant, that its host accepts its token without creating
a job (a GET of a job id that cannot exist: 404 means the token works, 401/403 that it does not); the landing
bucket's lifecycle rule for incomplete uploads, encryption, public access block and owner; the nightly schedule's
state and time zone; the alarm topic's subscriptions; the dead-letter queues. Each problem is one sentence of what is
wrong and how to fix it. Exit 0 when every check holds, 1 otherwise; ``--json`` for machines.
"""

from __future__ import annotations

import argparse
import enum
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from omborigrid_export.api_attempts import RetryPolicy
from omborigrid_export.client import OmboriGridClient
from omborigrid_export.errors import AuthError, ConfigurationError, JobNotFound, OmboriGridExportError
from omborigrid_export.settings import is_on
from omborigrid_export.tenants import TokenMap

#: A job id no API hands out: its GET answers 404 to a good token and 401/403 to a bad one, creating nothing.
PROBE_JOB_ID = "omborigrid-export-doctor-no-such-job"
REQUIRED_OUTPUTS = ("LedgerTableName", "ExportBucketName", "TriggerDLQUrl", "ExportQueueDLQUrl", "AlarmTopicArn")
REQUIRED_PARAMETERS = ("TokenSecret", "OmboriGridApiUrl", "TenantIds", "ScheduleExpressionTimezone", "ExportPrefix")
HEALTHY_STATES = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"})
PUBLIC_ACCESS_SWITCHES = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


class Status(enum.StrEnum):
    OK = "ok"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"check": self.name, "status": str(self.status), "message": self.message}


@dataclass(frozen=True, slots=True)
class DeployedStack:
    name: str
    status: str
    outputs: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)


class Missing(Exception):
    """A check needs an output or parameter the stack does not have (reported by the stack check)."""


def describe_stack(name: str) -> DeployedStack:
    import boto3
    from botocore.exceptions import ClientError

    try:
        stack = boto3.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as exc:
        raise ConfigurationError(
            f"Cannot read stack {name!r}: {exc.response.get('Error', {}).get('Message')} "
            "(check the name, the region and your credentials)."
        ) from None
    return DeployedStack(
        name=name,
        status=str(stack.get("StackStatus", "")),
        outputs={str(o["OutputKey"]): str(o["OutputValue"]) for o in stack.get("Outputs", [])},
        parameters={
            str(p["ParameterKey"]): str(p.get("ResolvedValue", p.get("ParameterValue", "")))
            for p in stack.get("Parameters", [])
        },
    )


class Doctor:
    """The checks of one stack. ``client(service)`` makes the boto3 clients (tests point them at moto)."""

    def __init__(self, stack: DeployedStack, *, client: Callable[[str], Any], allow_local_urls: bool) -> None:
        self.stack = stack
        self._client = client
        self._allow_local_urls = allow_local_urls

    def run(self) -> list[Check]:
        checks: list[Check] = []
        for name, check in (
            ("stack", self.check_stack),
            ("secret", self.check_secret),
            ("bucket", self.check_bucket),
            ("schedule", self.check_schedule),
            ("alarms", self.check_alarm_topic),
            ("dead letters", self.check_dead_letters),
        ):
            checks.extend(_guarded(name, check))
        return checks

    # -- the checks (each yields what holds and what does not)
    def check_stack(self) -> Iterator[Check]:
        stack = self.stack
        if stack.status not in HEALTHY_STATES:
            yield _fail("stack", f"Stack {stack.name} is {stack.status}; finish or roll back its last update first.")
        missing = [o for o in REQUIRED_OUTPUTS if not stack.outputs.get(o)]
        missing += [p for p in REQUIRED_PARAMETERS if p not in stack.parameters]
        if missing:
            yield _fail(
                "stack",
                f"Stack {stack.name} lacks {', '.join(missing)}; is it an omborigrid-export stack of this version? "
                "Redeploy it with `sam deploy`.",
            )
        if not stack.parameters.get("TenantIds", "").strip():
            yield _fail("stack", "TenantIds is empty, so the nightly run exports nothing; list the tenants to export.")
        if stack.status in HEALTHY_STATES and not missing:
            yield _ok("stack", f"Stack {stack.name} is {stack.status} with its outputs and parameters.")

    def check_secret(self) -> Iterator[Check]:
        from botocore.exceptions import ClientError

        secret = self._parameter("TokenSecret")
        try:
            value = self._client("secretsmanager").get_secret_value(SecretId=secret)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            yield _fail("secret", f"The token secret {secret} cannot be read ({code}); create it or grant access.")
            return
        text = str(value.get("SecretString") or "")
        try:
            tokens = TokenMap.from_json(
                text,
                api_url=self._parameter("OmboriGridApiUrl"),
                allow_local_urls=self._allow_local_urls,
                source=f"The secret {secret}",
            )
        except ConfigurationError as exc:
            yield _fail("secret", f"{exc} Put a token, or the map the README's Tenants section shows, in it.")
            return
        yield _ok("secret", f"The secret {secret} holds {_describe(tokens)}.")
        yield from self.check_tokens(tokens)

    def check_tokens(self, tokens: TokenMap) -> Iterator[Check]:
        tenants = [t for t in self._parameter("TenantIds").split(",") if t.strip()]
        endpoints: dict[str, tuple[str, str]] = {}
        for tenant in dict.fromkeys([*tenants, *tokens.listed]):
            try:
                endpoints[tenant] = tokens.for_tenant(tenant)
            except ConfigurationError as exc:
                yield _fail("token", str(exc))
        default = tokens.default()
        if not endpoints and default is not None:
            endpoints["(default token)"] = default
        for tenant, (api_url, token) in endpoints.items():
            yield probe_token(tenant, api_url, token)

    def check_bucket(self) -> Iterator[Check]:
        from botocore.exceptions import ClientError

        bucket = self._output("ExportBucketName")
        s3 = self._client("s3")
        account = self._client("sts").get_caller_identity()["Account"]
        try:
            s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=account)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            yield _fail("bucket", f"Bucket {bucket} is not owned by account {account} or is missing ({code}).")
            return
        yield from self._lifecycle(s3, bucket)
        yield from self._encryption(s3, bucket)
        yield from self._public_access(s3, bucket)
        yield from self._ownership(s3, bucket)

    def check_schedule(self) -> Iterator[Check]:
        scheduler = self._client("scheduler")
        name = self._schedule_name(scheduler)
        if name is None:
            yield _fail("schedule", f"No nightly schedule of stack {self.stack.name} was found; redeploy the stack.")
            return
        schedule = scheduler.get_schedule(Name=name)
        zone = str(schedule.get("ScheduleExpressionTimezone") or "UTC")
        expected = self.stack.parameters.get("ScheduleExpressionTimezone", zone)
        if schedule.get("State") != "ENABLED":
            yield _fail(
                "schedule", f"The nightly schedule {name} is {schedule.get('State')}; set ScheduleState=ENABLED."
            )
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            yield _fail("schedule", f"The schedule's time zone {zone!r} is not an IANA name; fix it.")
            return
        if zone != expected:
            yield _fail(
                "schedule",
                f"The schedule runs in {zone} but ScheduleExpressionTimezone is {expected}; redeploy the stack.",
            )
        elif schedule.get("State") == "ENABLED":
            yield _ok("schedule", f"The nightly schedule is enabled ({schedule.get('ScheduleExpression')}, {zone}).")

    def check_alarm_topic(self) -> Iterator[Check]:
        topic = self._output("AlarmTopicArn")
        subscriptions = self._client("sns").list_subscriptions_by_topic(TopicArn=topic).get("Subscriptions", [])
        confirmed = [s for s in subscriptions if s.get("SubscriptionArn", "").startswith("arn:")]
        if not subscriptions:
            yield _fail("alarms", f"Nobody receives the alarms: {topic} has no subscription; set AlarmEmail.")
        elif not confirmed:
            yield _fail("alarms", "The alarm subscription waits for confirmation; click the link AWS e-mailed.")
        else:
            yield _ok("alarms", f"{len(confirmed)} confirmed subscription(s) receive the alarms.")

    def check_dead_letters(self) -> Iterator[Check]:
        sqs = self._client("sqs")
        for output, what in (
            ("TriggerDLQUrl", "trigger events (nights, requests, drains) that never completed CreateJob"),
            ("ExportQueueDLQUrl", "export jobs whose execution could not be started"),
        ):
            url = self._output(output)
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
            depth = int(attributes.get("Attributes", {}).get("ApproximateNumberOfMessages", "0"))
            if depth:
                yield _fail(
                    "dead letters",
                    f"{depth} message(s) wait in {url.rsplit('/', 1)[-1]}: {what}; read the CreateJob/StartExport "
                    "logs, fix the cause and redrive them.",
                )
            else:
                yield _ok("dead letters", f"{url.rsplit('/', 1)[-1]} is empty.")

    # -- bucket details
    def _lifecycle(self, s3: Any, bucket: str) -> Iterator[Check]:
        rules = _or_empty(lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", []))
        prefix = self.stack.parameters.get("ExportPrefix", "")
        aborting = [
            r
            for r in rules
            if r.get("Status") == "Enabled"
            and "AbortIncompleteMultipartUpload" in r
            and prefix.startswith(str(r.get("Filter", {}).get("Prefix", r.get("Prefix", ""))))
        ]
        if aborting:
            days = aborting[0]["AbortIncompleteMultipartUpload"].get("DaysAfterInitiation")
            yield _ok("bucket", f"Incomplete uploads in {bucket} are aborted after {days} days.")
        else:
            yield _fail(
                "bucket",
                f"Bucket {bucket} has no lifecycle rule aborting incomplete multipart uploads, so the parts of a "
                "crashed transfer are billed forever; add one (AbortIncompleteMultipartUpload, 7 days).",
            )

    def _encryption(self, s3: Any, bucket: str) -> Iterator[Check]:
        rules = _or_empty(
            lambda: s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"].get("Rules", [])
        )
        algorithms = [r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules]
        if any(algorithms):
            yield _ok("bucket", f"{bucket} encrypts at rest ({', '.join(a for a in algorithms if a)}).")
        else:
            yield _fail("bucket", f"Bucket {bucket} has no default encryption; turn on SSE-KMS (or SSE-S3).")

    def _public_access(self, s3: Any, bucket: str) -> Iterator[Check]:
        block = _or_empty(lambda: s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"])
        open_switches = [s for s in PUBLIC_ACCESS_SWITCHES if not (block or {}).get(s)]
        if open_switches:
            yield _fail(
                "bucket",
                f"Bucket {bucket}'s public access block leaves {', '.join(open_switches)} off, so the lake could be "
                "made public; turn all four on.",
            )
        else:
            yield _ok("bucket", f"{bucket} blocks all public access.")

    def _ownership(self, s3: Any, bucket: str) -> Iterator[Check]:
        rules = _or_empty(lambda: s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"])
        if any(r.get("ObjectOwnership") == "BucketOwnerEnforced" for r in rules):
            yield _ok("bucket", f"{bucket} owns every object written to it (ACLs disabled).")
        else:
            yield _fail(
                "bucket",
                f"Bucket {bucket} does not enforce bucket-owner ownership, so objects written by another account "
                "stay theirs; set Object Ownership to BucketOwnerEnforced.",
            )

    # -- plumbing
    def _schedule_name(self, scheduler: Any) -> str | None:
        resources = self._client("cloudformation").list_stack_resources(StackName=self.stack.name)
        for resource in resources.get("StackResourceSummaries", []):
            if resource.get("ResourceType") == "AWS::Scheduler::Schedule" and resource.get("PhysicalResourceId"):
                return str(resource["PhysicalResourceId"])
        # CloudFormation names an unnamed schedule after the stack.
        found = scheduler.list_schedules(NamePrefix=f"{self.stack.name}-").get("Schedules", [])
        return str(found[0]["Name"]) if found else None

    def _output(self, name: str) -> str:
        value = self.stack.outputs.get(name)
        if not value:
            raise Missing(name)
        return value

    def _parameter(self, name: str) -> str:
        if name not in self.stack.parameters:
            raise Missing(name)
        return self.stack.parameters[name]


def probe_token(tenant: str, api_url: str, token: str) -> Check:
    """GET a job that cannot exist with the tenant's token: 404 means the host accepts the token."""
    with OmboriGridClient(api_url, token, retry=RetryPolicy(attempts=1), read_timeout=15) as client:
        try:
            client.get_job(PROBE_JOB_ID)
        except JobNotFound:
            return _ok("token", f"The host {_host(api_url)} accepts the token of {tenant}.")
        except AuthError:
            return _fail(
                "token",
                f"The host {_host(api_url)} refuses the token of {tenant} (401/403): make a new token in that "
                "tenant's Developer tab and put it in the secret.",
            )
        except OmboriGridExportError as exc:
            return _fail("token", f"The token of {tenant} could not be checked: {exc}")
    return _ok("token", f"The host {_host(api_url)} accepts the token of {tenant}.")


def _guarded(name: str, check: Callable[[], Iterator[Check]]) -> list[Check]:
    """A check's results; one that cannot run (an output is missing, AWS refused a read) says so."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return list(check())
    except Missing as exc:
        return [_fail(name, f"Cannot check the {name}: the stack has no {exc.args[0]} (see the stack check).")]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        return [_fail(name, f"Cannot check the {name}: AWS answered {error.get('Code')} ({error.get('Message')}).")]
    except BotoCoreError as exc:
        return [_fail(name, f"Cannot check the {name}: {type(exc).__name__}.")]


def _or_empty(read: Callable[[], Any]) -> Any:
    """What a bucket read returns, or [] when S3 says that configuration does not exist."""
    from botocore.exceptions import ClientError

    try:
        return read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "").startswith(("NoSuch", "ServerSideEncryptionConfiguration")):
            return []
        if exc.response.get("Error", {}).get("Code") == "OwnershipControlsNotFoundError":
            return []
        raise


def _describe(tokens: TokenMap) -> str:
    if not tokens.listed:
        return "one token for every tenant"
    default = "a default token and " if tokens.has_default else ""
    return f"{default}tokens for {len(tokens.listed)} tenant(s)"


def _host(url: str) -> str:
    from omborigrid_export.redact import host_of

    return host_of(url)


def _ok(name: str, message: str) -> Check:
    return Check(name, Status.OK, message)


def _fail(name: str, message: str) -> Check:
    return Check(name, Status.FAIL, message)


# ------------------------------------------------------------------------------------------------ the command
def add_parser(sub: Any) -> None:
    doctor = sub.add_parser("doctor", help="check a deployed stack's configuration (exit 1 when something is wrong)")
    doctor.add_argument("--stack", required=True, help="the deployed stack's name")
    doctor.add_argument("--json", action="store_true")


def command_doctor(args: argparse.Namespace) -> int:
    import boto3

    stack = describe_stack(args.stack)

    def client(service: str) -> Any:
        return boto3.client(service)  # type: ignore[call-overload]

    allow_local = is_on(os.environ.get("OMBORIGRID_ALLOW_LOCAL_URLS", ""))
    doctor = Doctor(stack, client=client, allow_local_urls=allow_local)
    checks = doctor.run()
    problems = [c for c in checks if c.status is Status.FAIL]
    if args.json:
        print(json.dumps({"stack": stack.name, "healthy": not problems, "checks": [c.to_dict() for c in checks]}))
    else:
        print(render(stack.name, checks), end="")
    return 0 if not problems else 1


def render(stack: str, checks: list[Check]) -> str:
    problems = sum(c.status is Status.FAIL for c in checks)
    lines = [f"doctor: stack {stack}"]
    lines += [f"  {'ok  ' if c.status is Status.OK else 'FAIL'}  {c.name:<12} {c.message}" for c in checks]
    lines.append("all checks hold" if not problems else f"{problems} problem(s) found")
    return "\n".join(lines) + "\n"
