"""The local stack: template.yaml deployed on in-process moto, with Step Functions executing the real ASL.

How it is built (see the package docstring for the why):

1. ``mock_aws(config={"stepfunctions": {"execute_state_machine": True}})`` — moto's switch that routes the
   Step Functions API to its ASL interpreter (``StepFunctionsParserBackend``) instead of the no-op backend.
2. template.yaml is translated offline (``template.translate``); the code folders are zipped into a moto
   bucket; a Secrets Manager secret holds the API token under the ``TokenSecret`` parameter's name.
3. ``CreateStack`` on moto's CloudFormation builds the bucket, queues, table, functions (environment resolved),
   roles, event source mapping and rules.
4. Fix-ups: moto's CloudFormation ignores ``DefinitionSubstitutions`` and registers the state machine with the
   non-executing backend, so the definition is substituted here (values resolved by the stack's own resource
   map) and created again through the Step Functions API under the same name (same ARN as the functions'
   ``EXPORT_STATE_MACHINE_ARN``). Each function is mapped to its handler (:mod:`.invoker`).
5. An EventBridge rule on the stack's own bus sends ``omborigrid.export`` outcome events to a capture queue.
6. Patches for what moto does not do: rule → Lambda targets (:mod:`.eventbridge`; moto would even fail the
   PutEvents) and shortened waits (:mod:`.timing`). Scheduler schedules never fire: ``deliver_scheduled``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from .calls import Call, CallRecorder
from .eventbridge import Delivery, FailedDelivery, LambdaTargetDelivery
from .history import entered_states
from .invoker import Invoker, LocalFunction
from .least_privilege import PolicySet, Report, check, policy_set
from .needs import Where
from .template import TranslatedTemplate, parameter_names, translate, zip_folder
from .timing import TimeScaling

logger = logging.getLogger("omborigrid_local.engine")

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
DEFAULT_EVENTS_DIR = REPO_ROOT / "events"

#: Parameters the local stack sets unless the caller overrides them.
LOCAL_PARAMETERS = {"TokenSecret": "omborigrid-local/api-token"}
OUTCOME_SOURCE = "omborigrid.export"
OUTCOME_DETAIL_TYPES = ("Export Completed", "Export Failed", "Schema Changed", "Export Anomalous")


class FunctionError(Exception):
    """A function invoked through :meth:`LocalStack.invoke` answered with an error payload."""

    def __init__(self, function: str, payload: dict[str, Any]) -> None:
        self.function = function
        self.payload = payload
        self.error_type = str(payload.get("errorType", "Unknown"))
        self.error_message = str(payload.get("errorMessage", ""))
        super().__init__(f"{function} failed: {self.error_type}: {self.error_message}")


class LocalStack:
    """template.yaml on in-process moto, the real handlers and the real ASL. Use as a context manager.

    ``api_url``/``token``: the OmboriGrid API the functions call (the simulator); the token is stored in moto's
    Secrets Manager and read by the functions through Powertools Parameters, as in AWS.
    ``parameters``: template parameter overrides (strings or numbers).
    ``wait_scale``: real seconds per second of a ``Wait`` state or ``Retry`` interval (0.001: a 600 s wait
    takes 0.6 s); the history keeps the real values.
    ``environment``: extra variables for every function (after the template's and the engine's own).
    ``function_log``: a file that receives what the handlers print (their Powertools logs); None leaves it on
    the console.
    """

    _active: LocalStack | None = None
    _active_lock = threading.Lock()

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        parameters: dict[str, Any] | None = None,
        wait_scale: float = 1.0,
        environment: dict[str, str] | None = None,
        function_log: Path | None = None,
        template: Path = DEFAULT_TEMPLATE,
        events_dir: Path = DEFAULT_EVENTS_DIR,
        region: str = "eu-west-1",
        stack_name: str = "omborigrid-local",
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._token = token
        self.parameters = {**LOCAL_PARAMETERS, **{k: str(v) for k, v in (parameters or {}).items()}}
        self.environment = dict(environment or {})
        self.region = region
        self.stack_name = stack_name
        self.template_path = Path(template)
        self.events_dir = Path(events_dir)
        self._function_log = Path(function_log) if function_log is not None else None
        self._time = TimeScaling(wait_scale)
        self._wait_scale = wait_scale
        self._delivery: LambdaTargetDelivery | None = None
        self._mock: Any = None
        self._invoker: Invoker | None = None
        self._translated: TranslatedTemplate | None = None
        self._saved_env: dict[str, str] = {}
        self._clients: dict[str, Any] = {}
        self._outcomes: list[dict[str, Any]] = []
        self._log_file: Any = None
        self._account = ""
        #: Every AWS call made while the stack runs, by principal (see :mod:`.calls`).
        self.recorder = CallRecorder()
        self.outputs: dict[str, str] = {}
        self.resources: dict[str, str] = {}
        self.state_machine_arn = ""
        self.outcome_queue_url = ""
        self.skipped: list[tuple[str, str]] = []

    @classmethod
    def running(cls) -> LocalStack | None:
        """The stack running in this process, if any (one at a time)."""
        with cls._active_lock:
            return cls._active

    # ----------------------------------------------------------------- lifecycle
    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> LocalStack:
        from moto import mock_aws

        with LocalStack._active_lock:
            if LocalStack._active is not None:
                raise RuntimeError("Another LocalStack is running in this process; close it first.")
            LocalStack._active = self
        try:
            started = time.monotonic()
            self._isolate_environment()
            self.recorder.install()
            self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
            self._mock.start()
            self._deploy()
            logger.info("local stack %s ready in %.1fs", self.stack_name, time.monotonic() - started)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop running executions, remove the patches and moto, restore the environment. Idempotent."""
        try:
            if self._mock is not None:
                self._stop_executions()
                self._report_least_privilege()
        finally:
            if self._delivery is not None:
                self._delivery.uninstall()
                self._delivery = None
            if self._invoker is not None:
                self._invoker.uninstall()
                self._invoker = None
            self._time.uninstall()
            self.recorder.uninstall()
            if self._mock is not None:
                self._mock.stop()
                self._mock = None
            for key, value in self._saved_env.items():
                os.environ[key] = value
            self._saved_env.clear()
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            self._clients.clear()
            with LocalStack._active_lock:
                if LocalStack._active is self:
                    LocalStack._active = None

    # ----------------------------------------------------------------- what was built
    @property
    def bucket(self) -> str:
        return self.outputs["ExportBucketName"]

    @property
    def prefix(self) -> str:
        return self.outputs.get("ExportPrefix", "")

    @property
    def event_bus(self) -> str:
        """The stack's own event bus (its ``EventBusName`` output), where the outcome events go out."""
        return self.outputs.get("EventBusName", "default")

    @property
    def queue_url(self) -> str:
        return self.outputs["ExportQueueUrl"]

    @property
    def table_name(self) -> str:
        return self.outputs["LedgerTableName"]

    def function_name(self, logical_id: str) -> str:
        """The deployed name of a function given its logical id (``CreateJobFunction``)."""
        return self.resources[logical_id]

    def client(self, service: str) -> Any:
        """A boto3 client for this stack's region (served by the in-process moto)."""
        if service not in self._clients:
            import boto3

            self._clients[service] = boto3.client(service, region_name=self.region)  # type: ignore[call-overload]
        return self._clients[service]

    @property
    def deliveries(self) -> list[Delivery]:
        """Events the engine delivered from an EventBridge rule to a function (moto does not), oldest first."""
        return list(self._delivery.delivered) if self._delivery is not None else []

    @property
    def deliveries_pending(self) -> bool:
        """True while an asynchronous invocation (a rule's, :meth:`deliver_async`'s) waits or runs."""
        return self._delivery is not None and self._delivery.busy

    @property
    def failed_deliveries(self) -> list[FailedDelivery]:
        """Rule → Lambda deliveries whose function failed every attempt (their events went to its DLQ)."""
        return list(self._delivery.failed) if self._delivery is not None else []

    @property
    def invoker(self) -> Invoker | None:
        """The engine's stand-in for Lambda's containers (None before the stack is built)."""
        return self._invoker

    def invocations(self, logical_id: str) -> int:
        """How many times the engine ran this function's handler."""
        assert self._invoker is not None
        local = self._invoker.get(self.function_name(logical_id))
        return local.invocations if local is not None else 0

    @property
    def calls(self) -> list[Call]:
        """Every AWS call recorded since the stack started (the engine's and the test's own are ``local``)."""
        return self.recorder.since(0)

    def policies(self, template: Path | None = None) -> PolicySet:
        """The stack's roles and resource policies, as SAM translated them, resolved to this stack's names.

        ``template``: read the policies from another copy of template.yaml instead (same logical ids and
        parameters), e.g. one with a grant removed, to see the check fail.
        """
        from moto.cloudformation.parsing import clean_json

        assert self._translated is not None
        translated = self._translated.full
        if template is not None:
            translated = translate(
                template, parameters=self.parameters, region=self.region, code_bucket=f"{self.stack_name}-artifacts"
            ).full
        resource_map = self._resource_map()

        def active(logical_id: str) -> bool:
            condition = translated["Resources"][logical_id].get("Condition")
            return condition is None or bool(resource_map.lazy_condition_map[condition])

        return policy_set(translated, lambda node: clean_json(node, resource_map), active)

    def least_privilege(
        self, calls: list[Call] | None = None, *, reasons: dict[tuple[str, str], str] | None = None
    ) -> Report:
        """Check ``calls`` (default: all recorded) against the template's policies; with ``reasons``, both ways
        (see :mod:`.least_privilege`)."""
        where = Where(account=self._account_id(), region=self.region)
        return check(self.policies(), self.calls if calls is None else calls, where, reasons=reasons)

    # ----------------------------------------------------------------- driving it
    def invoke(self, function: str, event: Any) -> Any:
        """Invoke a function through the Lambda API (synchronously, as ``sam remote invoke`` would).

        ``function``: logical id or deployed name. Returns the handler's result; raises :class:`FunctionError`
        with the error payload when the handler raised.
        """
        name = self.resources.get(function, function)
        response = self.client("lambda").invoke(FunctionName=name, Payload=json.dumps(event).encode())
        payload = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            raise FunctionError(function, payload if isinstance(payload, dict) else {"errorMessage": str(payload)})
        return payload

    def deliver_scheduled(self, scheduled_time: datetime | None = None) -> Any:
        """Invoke CreateJob with what EventBridge Scheduler would send for a tick scheduled at ``scheduled_time``
        (:meth:`scheduled_event`); moto's Scheduler never fires."""
        return self.invoke("CreateJobFunction", self.scheduled_event(scheduled_time))

    def scheduled_event(self, scheduled_time: datetime | None = None) -> dict[str, Any]:
        """What EventBridge Scheduler sends CreateJob for a tick scheduled at ``scheduled_time`` (default: now, to
        the second).

        The event is the schedule's own ``Input`` from template.yaml (events/scheduled.json when no schedule has
        one) with Scheduler's context attributes filled in as Scheduler does: the scheduled time as
        ``2026-11-02T01:00:00Z``. A retry of a tick is the same call with the same time.
        """
        when = (scheduled_time or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        attributes = {
            "<aws.scheduler.scheduled-time>": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "<aws.scheduler.schedule-arn>": f"arn:aws:scheduler:{self.region}:{self._account_id()}:schedule/default/"
            f"{self.stack_name}-nightly",
            "<aws.scheduler.execution-id>": uuid.uuid4().hex[:16],
            "<aws.scheduler.attempt-number>": "1",
        }
        text = self._scheduled_input()
        for attribute, value in attributes.items():
            text = text.replace(attribute, value)
        event: dict[str, Any] = json.loads(text)
        return event

    def deliver_export_requested(self, detail: dict[str, Any]) -> Any:
        """An "Export Requested" event as the EventBridge rule would deliver it to CreateJob.

        moto's EventBridge does not deliver to Lambda targets, so the engine does; the envelope is
        events/export_requested.json with this ``detail`` and a fresh id and time.
        """
        envelope = self._sample("export_requested.json") or {
            "version": "0",
            "detail-type": "Export Requested",
            "source": OUTCOME_SOURCE,
            "resources": [],
        }
        event = {
            **envelope,
            "id": str(uuid.uuid4()),
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "account": self._account_id(),
            "region": self.region,
            "detail": detail,
        }
        return self.invoke("CreateJobFunction", event)

    def deliver_async(self, function: str, event: Any, *, source: str = "async") -> None:
        """Invoke a function asynchronously (``InvocationType=Event``), as EventBridge Scheduler and rules do: on
        the engine's delivery worker, with Lambda's two retries of a failed attempt, then the function's DLQ.
        ``source`` names the sender in :attr:`deliveries` (like a rule's name)."""
        assert self._delivery is not None
        self._delivery.submit(Delivery(source, self.resources.get(function, function), event))

    def set_function_environment(self, function: str, variables: dict[str, str]) -> None:
        """Change a function's environment as an update of its configuration would (e.g. the nightly run's
        ``TENANT_IDS``); later invocations see it."""
        assert self._invoker is not None
        local = self._invoker.get(self.resources.get(function, function))
        if local is None:
            raise KeyError(f"no function {function} in this stack")
        local.environment.update(variables)

    def executions(self, match: str | None = None) -> list[dict[str, Any]]:
        """``DescribeExecution`` of every execution of the export state machine (name containing ``match``)."""
        sfn = self.client("stepfunctions")
        arns: list[str] = []
        kwargs: dict[str, Any] = {"stateMachineArn": self.state_machine_arn, "maxResults": 1000}
        while True:
            page = sfn.list_executions(**kwargs)
            arns.extend(e["executionArn"] for e in page["executions"] if match is None or match in e["name"])
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        described = [sfn.describe_execution(executionArn=arn) for arn in arns]
        return sorted(described, key=lambda d: (d["startDate"], d["name"]))

    def wait_for_executions(
        self, count: int, timeout: float = 60.0, *, match: str | None = None
    ) -> list[dict[str, Any]]:
        """Wait until at least ``count`` executions (name containing ``match``) exist, none is RUNNING and every
        event a rule sends to a function (e.g. an outcome event → CreateJob) has been delivered.

        Returns their ``DescribeExecution`` results, oldest first; raises ``TimeoutError`` saying where each
        execution is when ``timeout`` (real seconds) passes first.
        """
        deadline = time.monotonic() + timeout
        while True:
            settled = self._delivery is None or not self._delivery.busy
            found = self.executions(match)
            if settled and len(found) >= count and all(d["status"] != "RUNNING" for d in found):
                return found
            if time.monotonic() >= deadline:
                where = [f"{d['name']}: {d['status']} in {self._current_state(d['executionArn'])}" for d in found]
                raise TimeoutError(
                    f"waited {timeout:.0f}s for {count} finished execution(s) matching {match!r}; found "
                    f"{len(found)}: {where}"
                )
            time.sleep(0.05)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        """Every ``GetExecutionHistory`` event of an execution, oldest first."""
        sfn = self.client("stepfunctions")
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
        while True:
            page = sfn.get_execution_history(**kwargs)
            events.extend(page["events"])
            if not page.get("nextToken"):
                return events
            kwargs["nextToken"] = page["nextToken"]

    def outcome_events(self) -> list[dict[str, Any]]:
        """Every outcome event ("Export Completed"/"Export Failed", and the lake's "Schema Changed"/"Export Anomalous")
        put on the stack's bus since the stack started.

        Captured by an EventBridge rule → SQS queue; each is the full event (``detail-type``, ``detail``...).
        """
        sqs = self.client("sqs")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            page = sqs.receive_message(QueueUrl=self.outcome_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = page.get("Messages", [])
            if not messages:
                break
            for message in messages:
                self._outcomes.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.outcome_queue_url, ReceiptHandle=message["ReceiptHandle"])
        return list(self._outcomes)

    # ----------------------------------------------------------------- building it
    def _isolate_environment(self) -> None:
        """Nothing in this process may reach a real endpoint or profile while the stack runs."""
        for key in list(os.environ):
            if key.startswith(("AWS_ENDPOINT_URL", "AWS_PROFILE")):
                self._saved_env[key] = os.environ.pop(key)

    def _deploy(self) -> None:
        code_bucket = f"{self.stack_name}-artifacts"
        translated = translate(
            self.template_path, parameters=self.parameters, region=self.region, code_bucket=code_bucket
        )
        unknown = sorted(set(self.parameters) - parameter_names(translated.sam))
        if unknown:
            raise ValueError(f"{self.template_path.name} has no parameter(s) {unknown}")
        self._translated = translated
        self.skipped = translated.skipped
        if translated.skipped:
            logger.info(
                "not created (moto's CloudFormation has no model for them; the engine stands in where it matters): %s",
                ", ".join(f"{name} ({kind})" for name, kind in translated.skipped),
            )

        s3 = self.client("s3")
        s3.create_bucket(Bucket=code_bucket, CreateBucketConfiguration={"LocationConstraint": self.region})
        for key, folder in translated.code_zips.items():
            s3.put_object(Bucket=code_bucket, Key=key, Body=zip_folder(folder))
        self.client("secretsmanager").create_secret(Name=self.parameters["TokenSecret"], SecretString=self._token)
        self._create_existing_bucket()

        cloudformation = self.client("cloudformation")
        cloudformation.create_stack(
            StackName=self.stack_name,
            TemplateBody=json.dumps(translated.template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(self.parameters.items())],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        stack = cloudformation.describe_stacks(StackName=self.stack_name)["Stacks"][0]
        if stack["StackStatus"] != "CREATE_COMPLETE":
            raise RuntimeError(
                f"moto could not create the stack: {stack['StackStatus']} {stack.get('StackStatusReason')}"
            )
        self.outputs = {o["OutputKey"]: str(o["OutputValue"]) for o in stack.get("Outputs", [])}
        summaries = cloudformation.list_stack_resources(StackName=self.stack_name)["StackResourceSummaries"]
        self.resources = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in summaries}

        self._create_state_machines(translated)
        self._register_functions(translated)
        self._capture_outcomes()
        self._delivery = LambdaTargetDelivery(self._invoke_async, self._dead_letter, wait_scale=self._wait_scale)
        self._delivery.install()

        from aws_lambda_powertools.utilities import parameters as powertools_parameters

        powertools_parameters.clear_caches()  # a secret cached by an earlier stack
        self._time.install()

    def _create_existing_bucket(self) -> None:
        """Stand in for the operator's own bucket when the parameters name one (``ExistingBucketName``), encrypted
        by default with ``BucketKmsKeyArn`` when given (moto's S3 reports the key on every object; it does not call
        KMS, so the key need not exist)."""
        name = self.parameters.get("ExistingBucketName")
        if not name:
            return
        s3 = self.client("s3")
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": self.region})
        key_arn = self.parameters.get("BucketKmsKeyArn")
        if key_arn:
            default = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": True}]
                },
            )

    def _create_state_machines(self, translated: TranslatedTemplate) -> None:
        """Re-create each state machine where moto executes it, with DefinitionSubstitutions applied."""
        from moto.cloudformation.parsing import clean_json

        resource_map = self._resource_map()
        sfn = self.client("stepfunctions")
        for logical_id in translated.state_machines:
            props = translated.template["Resources"][logical_id]["Properties"]
            if "DefinitionString" in props:
                definition = str(clean_json(props["DefinitionString"], resource_map))
            else:
                definition = json.dumps(clean_json(props["Definition"], resource_map))
            substitutions = clean_json(props.get("DefinitionSubstitutions", {}), resource_map)
            for name, value in substitutions.items():
                definition = definition.replace("${" + name + "}", str(value))
            arn = self.resources[logical_id]
            name = arn.rsplit(":", 1)[-1]
            role_arn = str(clean_json(props.get("RoleArn", "arn:aws:iam::123456789012:role/local"), resource_map))
            created = sfn.create_state_machine(
                name=name,
                definition=definition,
                roleArn=role_arn,
                type=str(props.get("StateMachineType", "STANDARD")),
            )
            if created["stateMachineArn"] != arn:
                raise RuntimeError(f"{logical_id}: re-created as {created['stateMachineArn']}, expected {arn}")
            logger.info("state machine %s executable (%d substitutions)", name, len(substitutions))
        self.state_machine_arn = (
            self.outputs.get("ExportStateMachineArn") or self.resources[translated.state_machines[0]]
        )
        if len(translated.state_machines) == 1:
            self.recorder.state_machine = translated.state_machines[0]

    def _register_functions(self, translated: TranslatedTemplate) -> None:
        log_sink = None
        if self._function_log is not None:
            self._log_file = self._function_log.open("a", encoding="utf-8")
            log_file = self._log_file

            def log_sink(function: str, text: str) -> None:
                log_file.writelines(f"[{function}] {line}\n" for line in text.splitlines())
                log_file.flush()

        invoker = Invoker(console_thread=threading.current_thread(), log_sink=log_sink, recorder=self.recorder)
        lambda_client = self.client("lambda")
        for logical_id, source in translated.functions.items():
            if logical_id not in self.resources:
                continue  # its Condition is false in this stack (e.g. AnnounceLineage without a LineageEndpoint)
            name = self.resources[logical_id]
            config = lambda_client.get_function_configuration(FunctionName=name)
            variables = {k: str(v) for k, v in config.get("Environment", {}).get("Variables", {}).items()}
            variables.update(
                {
                    "AWS_REGION": self.region,
                    "AWS_DEFAULT_REGION": self.region,
                    "AWS_LAMBDA_FUNCTION_NAME": name,
                    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(source.memory_mb),
                    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                    "OMBORIGRID_API_URL": self.api_url,
                    "OMBORIGRID_ALLOW_LOCAL_URLS": "1",
                    "POWERTOOLS_TRACE_DISABLED": "1",
                }
            )
            variables.setdefault("POWERTOOLS_METRICS_NAMESPACE", "OmboriGridExport")
            variables.update(self.environment)
            log_group = config.get("LoggingConfig", {}).get("LogGroup") or f"/aws/lambda/{name}"
            invoker.register(
                LocalFunction(
                    source=source,
                    name=name,
                    arn=config["FunctionArn"],
                    environment=variables,
                    log_group=log_group,
                )
            )
        invoker.install()
        self._invoker = invoker

    def _capture_outcomes(self) -> None:
        sqs = self.client("sqs")
        self.outcome_queue_url = sqs.create_queue(QueueName=f"{self.stack_name}-outcome-events")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.outcome_queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events = self.client("events")
        rule = f"{self.stack_name}-capture-outcomes"
        events.put_rule(
            Name=rule,
            EventBusName=self.event_bus,
            EventPattern=json.dumps({"source": [OUTCOME_SOURCE], "detail-type": list(OUTCOME_DETAIL_TYPES)}),
            State="ENABLED",
        )
        events.put_targets(Rule=rule, EventBusName=self.event_bus, Targets=[{"Id": "capture", "Arn": queue_arn}])

    # ----------------------------------------------------------------- helpers
    def _invoke_async(self, function_arn: str, payload: Any) -> str | None:
        """One attempt of an asynchronous invocation: None when it succeeded, else the error."""
        try:
            self.invoke(function_arn, payload)
        except FunctionError as exc:
            return f"{exc.error_type}: {exc.error_message}"
        return None

    def _dead_letter(self, function_arn: str, payload: Any) -> None:
        """Where Lambda puts an asynchronous event that failed every attempt: the function's DLQ (SQS)."""
        config = self.client("lambda").get_function_configuration(FunctionName=function_arn)
        target = config.get("DeadLetterConfig", {}).get("TargetArn", "")
        if target.split(":")[2:3] != ["sqs"]:
            logger.warning("%s has no SQS dead-letter queue; the failed event is dropped", function_arn)
            return
        sqs = self.client("sqs")
        queue_url = sqs.get_queue_url(QueueName=target.rsplit(":", 1)[-1])["QueueUrl"]
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(payload))

    def _resource_map(self) -> Any:
        """moto's view of the created stack: resolves intrinsics (``clean_json``) with its real names."""
        from moto.cloudformation.models import cloudformation_backends

        backend = cloudformation_backends[self._account_id()][self.region]
        stack = next(s for s in backend.stacks.values() if s.name == self.stack_name and s.status == "CREATE_COMPLETE")
        return stack.resource_map

    def _account_id(self) -> str:
        if not self._account:
            self._account = str(self.client("sts").get_caller_identity()["Account"])
        return self._account

    def _sample(self, filename: str) -> dict[str, Any] | None:
        path = self.events_dir / filename
        if not path.is_file():
            return None
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def _scheduled_input(self) -> str:
        """The nightly schedule's target Input as template.yaml gives it (Scheduler's placeholders unreplaced)."""
        assert self._translated is not None
        for resource in self._translated.sam.get("Resources", {}).values():
            for source in resource.get("Properties", {}).get("Events", {}).values():
                if source.get("Type") == "ScheduleV2" and "Input" in source.get("Properties", {}):
                    return str(source["Properties"]["Input"])
        path = self.events_dir / "scheduled.json"
        if path.is_file():
            return path.read_text(encoding="utf-8")
        raise FileNotFoundError(f"No ScheduleV2 in {self.template_path.name} has an Input, and {path} is missing")

    def _current_state(self, execution_arn: str) -> str:
        states = entered_states(self.history(execution_arn))
        return states[-1] if states else "(no state yet)"

    def _report_least_privilege(self) -> None:
        """Say, as the stack closes (the demo, a test run), whether any call the template would refuse was made."""
        if self._translated is None or not self.resources:
            return  # the stack was not built that far
        report = self.least_privilege()
        logger.info("least privilege: %s", report.summary())
        for missing in report.missing:
            logger.warning("the template's policies would refuse: %s", missing)

    def _stop_executions(self) -> None:
        """Abort what still runs and give the interpreter threads a bounded time to notice."""
        if not self.state_machine_arn:
            return  # the stack was not built that far
        running = [d for d in self.executions() if d["status"] == "RUNNING"]
        sfn = self.client("stepfunctions")
        for execution in running:
            logger.info("stopping execution %s (still running at close)", execution["name"])
            deadline = time.monotonic() + 2
            while True:
                try:
                    sfn.stop_execution(executionArn=execution["executionArn"], error="LocalStackClosed")
                    break
                except AttributeError:
                    # moto's worker sets up its environment in its own thread; until then it cannot be stopped.
                    if time.monotonic() > deadline:
                        logger.warning("could not stop execution %s", execution["name"])
                        break
                    time.sleep(0.05)
        if not running:
            return
        from moto.stepfunctions.parser.utils import TMP_THREADS

        deadline = time.monotonic() + 15
        for thread in list(TMP_THREADS):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        alive = [t for t in TMP_THREADS if t.is_alive()]
        if alive:
            logger.warning("%d Step Functions worker thread(s) still busy after close", len(alive))
