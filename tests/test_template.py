"""template.yaml against the code it deploys: things cfn-lint cannot know.

Each test guards a mistake that would deploy cleanly and fail later: a handler that does not exist, a state machine
substitution left as ``${Name}``, a Retry on an error the code never raises, a catalog resource created with the
catalog off, an IAM grant on ``*``, a function environment other than what its settings model reads, an alarm or
dashboard looking at a metric under the wrong namespace or dimension.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
LAYER = ROOT / "layers" / "omborigrid"
SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")

#: Variables the template deliberately never sets (the functions' optional settings, and the CLI's token).
NEVER_SET = {
    "OMBORIGRID_TOKEN": "the token itself: in Lambda it comes from Secrets Manager (OMBORIGRID_TOKEN_SECRET)",
    "OMBORIGRID_ALLOW_LOCAL_URLS": "simulator and tests only: it permits http:// and private addresses",
    "DOWNLOAD_TIME_BUDGET_SECONDS": "tests and tuning only: caps an invocation below Lambda's remaining time",
}
#: Never set because setting them in AWS would be a security problem (asserted separately).
MUST_NOT_BE_SET = ("OMBORIGRID_TOKEN", "OMBORIGRID_ALLOW_LOCAL_URLS")
#: Powertools reads its own variables (service name, log level, metrics namespace); they are not our settings.
POWERTOOLS = "POWERTOOLS_"

#: (logical id, statement Sid) allowed ``Resource: "*"``, and why.
WILDCARD_RESOURCES = {
    ("ExportStateMachine", "DeliverExecutionLogs"): (
        "CloudWatch Logs' log delivery actions (logs:CreateLogDelivery, ...) have no resource-level permissions; "
        "Step Functions logging documents Resource '*'"
    ),
    ("OperationsKey", "AccountAdministersTheKey"): "a key policy's '*' is the key itself",
    ("OperationsKey", "CloudWatchAlarmsPublishToTheTopic"): "a key policy's '*' is the key itself",
    ("OperationsKey", "CloudWatchLogsEncryptTheLogGroups"): "a key policy's '*' is the key itself",
}

CATALOG_TABLES = ("events", "sessions", "clients")


# ------------------------------------------------------------------------------------------------ helpers
@cache
def template() -> dict[str, Any]:
    parsed: dict[str, Any] = yaml_parse(TEMPLATE.read_text(encoding="utf-8"))
    return parsed


def resources(kind: str | None = None) -> dict[str, dict[str, Any]]:
    found = template()["Resources"]
    return {k: v for k, v in found.items() if kind is None or v["Type"] == kind}


def functions() -> dict[str, dict[str, Any]]:
    found = resources("AWS::Serverless::Function")
    assert found, "no AWS::Serverless::Function in template.yaml"
    return found


def global_function() -> dict[str, Any]:
    result: dict[str, Any] = template().get("Globals", {}).get("Function", {})
    return result


def function_prop(logical_id: str, name: str) -> Any:
    props = functions()[logical_id]["Properties"]
    return props.get(name, global_function().get(name))


def handler_file(logical_id: str) -> tuple[Path, str]:
    code_uri = function_prop(logical_id, "CodeUri")
    handler = function_prop(logical_id, "Handler")
    assert isinstance(code_uri, str), f"{logical_id}: CodeUri is not a local folder"
    assert isinstance(handler, str), f"{logical_id}: no Handler"
    module, _, attr = handler.rpartition(".")
    return ROOT / code_uri / (module.replace(".", "/") + ".py"), attr


def environment(logical_id: str) -> dict[str, Any]:
    """The function's variables: Globals merged with its own (SAM's merge rule for maps)."""
    merged = dict(global_function().get("Environment", {}).get("Variables", {}))
    merged.update(functions()[logical_id]["Properties"].get("Environment", {}).get("Variables", {}))
    return merged


def find_in_map(value: Any) -> Any:
    if isinstance(value, dict) and "Fn::FindInMap" in value:
        name, top, second = value["Fn::FindInMap"]
        return template()["Mappings"][name][top][second]
    return value


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def references(node: Any, *, skip_if: bool = False) -> set[str]:
    """Logical ids referred to by Ref, Fn::GetAtt and Fn::Sub (``skip_if``: not inside Fn::If branches)."""
    found: set[str] = set()

    def visit(n: Any) -> None:
        if isinstance(n, dict):
            if skip_if and "Fn::If" in n:
                return
            if isinstance(n.get("Ref"), str):
                found.add(n["Ref"])
            att = n.get("Fn::GetAtt")
            if isinstance(att, list) and att:
                found.add(str(att[0]))
            elif isinstance(att, str):
                found.add(att.split(".")[0])
            sub = n.get("Fn::Sub")
            text = sub[0] if isinstance(sub, list) else sub
            local = set(sub[1]) if isinstance(sub, list) and len(sub) > 1 else set()
            if isinstance(text, str):
                found.update(v.split(".")[0] for v in SUB_VARIABLE.findall(text) if v.split(".")[0] not in local)
            for value in n.values():
                visit(value)
        elif isinstance(n, list):
            for value in n:
                visit(value)

    visit(node)
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def asl() -> tuple[str, dict[str, Any]]:
    machine = resources("AWS::Serverless::StateMachine")["ExportStateMachine"]["Properties"]
    path = ROOT / machine["DefinitionUri"]
    text = path.read_text(encoding="utf-8")
    return text, json.loads(text)


# ------------------------------------------------------------------------------------------------ functions
@pytest.mark.parametrize("logical_id", sorted(resources("AWS::Serverless::Function")))
def test_every_function_handler_exists(logical_id: str) -> None:
    path, attr = handler_file(logical_id)
    assert path.is_file(), f"{logical_id}: handler module {path.relative_to(ROOT)} does not exist"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    assert attr in defined, f"{logical_id}: {path.relative_to(ROOT)} defines no {attr}()"


# ------------------------------------------------------------------------------------------------ state machine
def test_definition_substitutions_match_the_asl() -> None:
    text, _ = asl()
    used = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", text))
    machine = resources("AWS::Serverless::StateMachine")["ExportStateMachine"]["Properties"]
    provided = set(machine.get("DefinitionSubstitutions", {}))
    assert used - provided == set(), f"used in the ASL but not substituted: {sorted(used - provided)}"
    assert provided - used == set(), f"substituted but never used in the ASL: {sorted(provided - used)}"


def test_asl_error_names_are_library_errors() -> None:
    from omborigrid_export import errors

    classes = {name for name, obj in inspect.getmembers(errors, inspect.isclass) if issubclass(obj, BaseException)}
    _, definition = asl()
    named: set[str] = set()
    for node in walk(definition):
        if isinstance(node, dict):
            for clause in node.get("Retry", []) + node.get("Catch", []):
                named.update(clause.get("ErrorEquals", []))
    assert named, "the ASL has no Retry or Catch"
    # States.* and Lambda.* are Step Functions' names; Sandbox.Timedout and Runtime.ExitError are the error
    # types Lambda itself reports for a timed-out or crashed invocation.
    aws_defined = {"Sandbox.Timedout", "Runtime.ExitError"}
    custom = {n for n in named if not n.startswith(("States.", "Lambda.")) and n not in aws_defined}
    assert custom - classes == set(), f"ASL errors that omborigrid_export.errors does not define: {custom - classes}"


def library_errors() -> dict[str, type[BaseException]]:
    from omborigrid_export import errors

    return {
        name: obj
        for name, obj in inspect.getmembers(errors, inspect.isclass)
        if issubclass(obj, errors.OmboriGridExportError) and obj is not errors.OmboriGridExportError
    }


#: The Lambda tasks of the ASL and the retryable errors of ours that their function cannot raise, with why.
CANNOT_RAISE = {
    "Check Export Status": {
        "TransferFailed": "it moves no bytes",
        "DownloadUrlExpired": "it never follows the download URL",
        "LedgerUnavailable": "it does not use the ledger",
        "StepFunctionsUnavailable": "it does not call Step Functions",
        "QueueUnavailable": "it does not send to the job queue",
        "GarbledResponse": "Exporter.check turns it into a counted poll (PollState.after_garbled), not an error",
    },
    "Download Export": {
        "StepFunctionsUnavailable": "it does not call Step Functions",
        "QueueUnavailable": "it does not send to the job queue",
    },
}


#: What Step Functions' docs ask every Lambda task to retry (transient failures of the Lambda service itself).
LAMBDA_SERVICE_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}


def test_asl_retries_exactly_the_retryable_errors_each_task_can_raise() -> None:
    """Retry lists are checked against the errors' ``retryable`` flags both ways, so neither can drift."""
    ours = library_errors()
    retryable = {name for name, cls in ours.items() if getattr(cls, "retryable", False)}
    _, definition = asl()
    tasks = {n: s for n, s in definition["States"].items() if s.get("Resource") == "arn:aws:states:::lambda:invoke"}
    assert set(tasks) == set(CANNOT_RAISE)
    for name, state in tasks.items():
        retried = {e for clause in state["Retry"] for e in clause["ErrorEquals"] if e in ours}
        assert retried <= retryable, f"{name} retries errors that say retrying will not help: {retried - retryable}"
        expected = retryable - set(CANNOT_RAISE[name])
        assert retried == expected, f"{name}: retryable errors it may raise but never retries: {expected - retried}"
        assert set(CANNOT_RAISE[name]) <= retryable, f"{name}: CANNOT_RAISE lists errors that are not retryable"
        lambda_errors = {e for clause in state["Retry"] for e in clause["ErrorEquals"] if e.startswith("Lambda.")}
        assert lambda_errors >= LAMBDA_SERVICE_ERRORS, f"{name} does not retry {LAMBDA_SERVICE_ERRORS - lambda_errors}"
        [typed] = [c for c in state["Catch"] if "States.ALL" not in c["ErrorEquals"]]
        caught = set(typed["ErrorEquals"])
        # Raised only before an execution exists (CreateJob, StartExport): no task of the ASL meets them.
        missing = set(ours) - caught - {n for n in ours if n.startswith(("StepFunctions", "Queue"))}
        assert missing == set(), f"{name}: errors of ours that would reach the generic failure path: {missing}"
        assert typed["Next"] == "Describe Typed Failure"


# ------------------------------------------------------------------------------------------------ conditions
def test_catalog_resources_exist_only_with_the_catalog() -> None:
    glue = {k: v for k, v in resources().items() if v["Type"].startswith("AWS::Glue::")}
    kinds = sorted(v["Type"] for v in glue.values())
    assert kinds == ["AWS::Glue::Database"] + ["AWS::Glue::Table"] * len(CATALOG_TABLES), kinds
    for logical_id, resource in glue.items():
        assert resource.get("Condition") == "CatalogEnabled", f"{logical_id} is created with the catalog off"
    assert template()["Conditions"]["CatalogEnabled"] == {"Fn::Equals": [{"Ref": "EnableCatalog"}, "true"]}
    parameter = template()["Parameters"]["EnableCatalog"]
    assert parameter["Default"] == "false"
    assert sorted(parameter["AllowedValues"]) == ["false", "true"]
    outputs = {k for k, v in template()["Outputs"].items() if references(v["Value"]) & set(glue)}
    assert len(outputs) == 1 + len(CATALOG_TABLES), "the database and every table name are stack outputs"


def test_nothing_refers_to_a_resource_that_may_not_exist() -> None:
    """A Ref to a conditional resource from outside its condition (and outside Fn::If) fails the deployment."""
    conditional = {k: v["Condition"] for k, v in resources().items() if "Condition" in v}
    owners = {**resources(), **{f"Outputs.{k}": v for k, v in template()["Outputs"].items()}}
    problems = []
    for owner, body in owners.items():
        for target in references(body, skip_if=True) & set(conditional):
            if body.get("Condition") != conditional[target]:
                problems.append(f"{owner} -> {target} (Condition {conditional[target]})")
    assert problems == []


# ------------------------------------------------------------------------------------------------ catalog
def hive_type(arrow_type: Any) -> str:
    import pyarrow as pa

    for check, name in (
        (pa.types.is_string, "string"),
        (pa.types.is_int64, "bigint"),
        (pa.types.is_int32, "int"),
        (pa.types.is_boolean, "boolean"),
        (pa.types.is_float64, "double"),
        (pa.types.is_timestamp, "timestamp"),
    ):
        if check(arrow_type):
            return name
    raise AssertionError(f"no Athena type mapped for {arrow_type}")


def catalog_tables() -> dict[str, dict[str, Any]]:
    return {v["Properties"]["TableInput"]["Name"]: v["Properties"] for v in resources("AWS::Glue::Table").values()}


def test_catalog_tables_have_the_simulator_schemas() -> None:
    data = pytest.importorskip("omborigrid_local.simulator.data")
    tables = catalog_tables()
    assert sorted(tables) == sorted(data.TABLES)
    for name, schema in data.SCHEMAS.items():
        columns = tables[name]["TableInput"]["StorageDescriptor"]["Columns"]
        expected = [{"Name": f.name, "Type": hive_type(f.type)} for f in schema()]
        assert [{"Name": c["Name"], "Type": c["Type"]} for c in columns] == expected, name


def test_catalog_tables_project_the_landed_layout() -> None:
    from omborigrid_export.layout import DEFAULT_ARCHIVE_KEY_TEMPLATE

    archive_default = template()["Parameters"]["ArchiveKeyTemplate"]["Default"]
    assert archive_default == DEFAULT_ARCHIVE_KEY_TEMPLATE
    assert archive_default.startswith("{prefix}/{table}/tenant={tenantId}/dt={dataDateFrom}/")
    bucket = environment("DownloadFunction")["EXPORT_BUCKET"]
    for name, props in catalog_tables().items():
        table = props["TableInput"]
        assert props["DatabaseName"] == {"Ref": "CatalogDatabase"}
        assert table["TableType"] == "EXTERNAL_TABLE"
        storage = table["StorageDescriptor"]
        assert storage["InputFormat"] == "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
        assert storage["OutputFormat"] == "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
        assert storage["SerdeInfo"]["SerializationLibrary"] == (
            "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
        )
        assert [(k["Name"], k["Type"]) for k in table["PartitionKeys"]] == [("tenant", "string"), ("dt", "string")]
        location = f"s3://${{Bucket}}/${{ExportPrefix}}/{name}/"
        assert storage["Location"] == {"Fn::Sub": [location, {"Bucket": bucket}]}
        params = table["Parameters"]
        # ${!x} is Fn::Sub's escape: Glue must receive the literal ${tenant} and ${dt}.
        assert params["storage.location.template"] == {
            "Fn::Sub": [location + "tenant=${!tenant}/dt=${!dt}/", {"Bucket": bucket}]
        }
        assert {k: v for k, v in params.items() if k.startswith("projection.")} == {
            "projection.enabled": "true",
            "projection.tenant.type": "injected",
            "projection.dt.type": "date",
            "projection.dt.format": "yyyy-MM-dd",
            "projection.dt.range": "2020-01-01,NOW",
            "projection.dt.interval": "1",
            "projection.dt.interval.unit": "DAYS",
        }


# ------------------------------------------------------------------------------------------------ IAM
def statements(document: Any) -> list[dict[str, Any]]:
    return [s for s in as_list(document.get("Statement", [])) if isinstance(s, dict)]


def grants() -> Iterator[tuple[str, str, Any]]:
    """(owner, kind, policy) for every identity and resource policy in the template."""
    for logical_id, resource in resources().items():
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            for policy in as_list(props.get("Policies", [])):
                yield logical_id, "sam", policy
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield logical_id, "document", props["PolicyDocument"]
        elif kind == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                yield logical_id, "document", policy["PolicyDocument"]
            for arn in props.get("ManagedPolicyArns", []):
                yield logical_id, "managed", arn
        elif kind in ("AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"):
            yield logical_id, "document", props["PolicyDocument"]
        elif kind == "AWS::KMS::Key":
            yield logical_id, "document", props["KeyPolicy"]


def test_every_grant_is_scoped() -> None:
    problems: list[str] = []
    used_exceptions: set[tuple[str, str]] = set()

    def check(owner: str, document: Any) -> None:
        for statement in statements(document):
            if statement.get("Effect") != "Allow":
                continue
            key = (owner, str(statement.get("Sid")))
            if "NotResource" in statement or "NotAction" in statement:
                problems.append(f"{key}: NotResource/NotAction")
            if "*" in as_list(statement.get("Action", [])):
                problems.append(f"{key}: Action '*'")
            if "*" in as_list(statement.get("Resource", [])):
                if key in WILDCARD_RESOURCES:
                    used_exceptions.add(key)
                else:
                    problems.append(f"{key}: Resource '*'")

    for owner, kind, policy in grants():
        if kind == "managed" or isinstance(policy, str):
            problems.append(f"{owner}: managed policy {policy!r} (not scoped to this stack)")
        elif kind == "document" or "Statement" in policy:
            check(owner, policy)
        else:  # a SAM policy template: {Name: {Parameter: value}}
            ((name, arguments),) = policy.items()
            if not arguments:
                problems.append(f"{owner}: policy template {name} takes no resource (grants on '*')")
            for value in walk(arguments):
                if value == "*" or (isinstance(value, str) and value.strip() in ("*", "arn:*")):
                    problems.append(f"{owner}: policy template {name} on '*'")
    assert problems == []
    assert used_exceptions == set(WILDCARD_RESOURCES), (
        f"listed exceptions no longer needed: {set(WILDCARD_RESOURCES) - used_exceptions}"
    )


# ------------------------------------------------------------------------------------------------ environment
def settings_model(logical_id: str) -> Any:
    """The settings model the function's handler reads (its module's ``SETTINGS``)."""
    path, _ = handler_file(logical_id)
    spec = importlib.util.spec_from_file_location(f"template_check_{logical_id}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SETTINGS


@pytest.mark.parametrize("logical_id", sorted(resources("AWS::Serverless::Function")))
def test_each_function_environment_is_exactly_what_its_settings_read(logical_id: str) -> None:
    model = settings_model(logical_id)
    required = {v.name for v in model.VARIABLES if v.required}
    optional = {v.name for v in model.VARIABLES if not v.required}
    ours = {n for n in environment(logical_id) if not n.startswith(POWERTOOLS)}
    assert ours == required, f"{logical_id}: set but never read {ours - required}; read but never set {required - ours}"
    assert optional <= set(NEVER_SET), f"{logical_id}: optional variables without a reason: {optional - set(NEVER_SET)}"


def test_every_parameter_default_passes_each_function_settings() -> None:
    """The template's defaults are the functions' defaults: parsed as the function would, they are valid."""
    for logical_id in functions():
        values = {}
        for name, value in environment(logical_id).items():
            if isinstance(value, dict) and "Ref" in value and value["Ref"] in template()["Parameters"]:
                values[name] = str(template()["Parameters"][value["Ref"]].get("Default", "x"))
            elif isinstance(value, str):
                values[name] = value
            else:  # a resource's name or ARN: its shape is checked elsewhere
                values[name] = {
                    "EXPORT_STATE_MACHINE_ARN": "arn:aws:states:eu-west-1:123456789012:stateMachine:export",
                    "EXPORT_BUCKET_OWNER": "123456789012",  # the deploying account (AWS::AccountId) by default
                }.get(name, "resource-name")
        values.setdefault("OMBORIGRID_TOKEN_SECRET", "secret")
        settings_model(logical_id).from_env(values)


#: The only places that read the process environment: the CLI's Settings.from_env and runtime.settings(), and
#: observability.install(), which reads the secrets in it (token, AWS keys) only to scrub them from every output.
READS_ENVIRON = {"omborigrid_export/settings.py", "omborigrid_lambda/runtime.py", "omborigrid_lambda/observability.py"}


def test_nothing_but_the_settings_reads_the_environment() -> None:
    readers = set()
    for path in [*ROOT.glob("functions/*/*.py"), *LAYER.glob("*/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and ast.unparse(node) in ("os.environ", "os.getenv", "os.environb"):
                readers.add(path.relative_to(LAYER if LAYER in path.parents else ROOT).as_posix())
    assert readers == READS_ENVIRON


def test_the_never_set_list_is_not_stale() -> None:
    optional = {v.name for f in functions() for v in settings_model(f).VARIABLES if not v.required}
    assert optional == set(NEVER_SET) - {"OMBORIGRID_TOKEN"}


def test_start_export_reports_each_failed_record_alone() -> None:
    """StartExport returns batchItemFailures; without ReportBatchItemFailures SQS would ignore them and redeliver
    (or delete) the whole batch."""
    events = functions()["StartExportFunction"]["Properties"]["Events"]
    [sqs] = [e for e in events.values() if e["Type"] == "SQS"]
    assert sqs["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_secrets_and_local_switches_are_never_in_the_environment() -> None:
    for logical_id in functions():
        assert set(environment(logical_id)) & set(MUST_NOT_BE_SET) == set(), logical_id


def test_issue_5_settings_reach_the_functions() -> None:
    assert environment("DownloadFunction")["EXPORT_ARCHIVE_KEY_TEMPLATE"] == {"Ref": "ArchiveKeyTemplate"}
    assert environment("CreateJobFunction")["FRESHNESS_HOURS"] == {"Ref": "FreshnessHours"}
    assert template()["Parameters"]["FreshnessHours"]["Default"] == 36


# ------------------------------------------------------------------------------------------------ triggers
def test_drain_rule_passes_the_outcome_event_and_dead_letters_are_allowed() -> None:
    events = functions()["CreateJobFunction"]["Properties"]["Events"]
    finished = events["ExportFinished"]
    assert finished["Type"] == "EventBridgeRule"
    props = finished["Properties"]
    assert props["Pattern"] == {"source": ["omborigrid.export"], "detail-type": ["Export Completed", "Export Failed"]}
    # The whole event goes through: an "Export Failed" marks its ledger entry (and frees its slot).
    assert "Input" not in props
    assert "InputTransformer" not in props
    assert props["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    # SAM names a rule <Function><Event>; every rule that dead-letters into the trigger DLQ must be allowed to.
    policy = resources("AWS::SQS::QueuePolicy")["TriggerDLQPolicy"]["Properties"]["PolicyDocument"]
    allowed = {ref for s in statements(policy) if s["Effect"] == "Allow" for ref in references(s.get("Condition", {}))}
    for name, event in events.items():
        if event["Type"] == "EventBridgeRule":
            dlq = event["Properties"].get("DeadLetterConfig", {}).get("Arn")
            assert dlq == {"Fn::GetAtt": ["TriggerDLQ", "Arn"]}, name
            assert f"CreateJobFunction{name}" in allowed, f"TriggerDLQPolicy does not let rule {name} dead-letter"


def test_ledger_has_the_state_index() -> None:
    table = resources("AWS::DynamoDB::Table")["LedgerTable"]["Properties"]
    [index] = [i for i in table["GlobalSecondaryIndexes"] if i["IndexName"] == "byState"]
    assert index["KeySchema"] == [
        {"AttributeName": "state", "KeyType": "HASH"},
        {"AttributeName": "updatedAt", "KeyType": "RANGE"},
    ]
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    assert types["state"] == "S"
    assert types["updatedAt"] == "S"
    # CreateJob queries the index: its DynamoDB grant must name it (the least-privilege test measures the rest).
    policies = as_list(functions()["CreateJobFunction"]["Properties"]["Policies"])
    statements = [s for p in policies if "Statement" in p for s in p["Statement"]]
    [by_state] = [s for s in statements if s.get("Sid") == "FindEntriesByState"]
    assert by_state["Resource"] == {"Fn::Sub": "${LedgerTable.Arn}/index/byState"}


# ------------------------------------------------------------------------------------------------ alarms and dashboard
def powertools() -> tuple[str, str]:
    variables = global_function()["Environment"]["Variables"]
    return find_in_map(variables["POWERTOOLS_METRICS_NAMESPACE"]), find_in_map(variables["POWERTOOLS_SERVICE_NAME"])


@cache
def emitted_metrics() -> frozenset[str]:
    names: set[str] = set()
    for path in [*ROOT.glob("functions/*/*.py"), *LAYER.glob("*/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(("add_metric", "single_metric")):
                for keyword in node.keywords:
                    if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                        names.add(str(keyword.value.value))
    return frozenset(names)


def test_every_alarm_notifies_the_topic_both_ways() -> None:
    for logical_id, alarm in resources("AWS::CloudWatch::Alarm").items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}], logical_id
        assert props["OKActions"] == [{"Ref": "AlarmTopic"}], logical_id


def test_stale_tenants_alarm_also_catches_a_missing_nightly_run() -> None:
    props = resources("AWS::CloudWatch::Alarm")["StaleTenantsAlarm"]["Properties"]
    namespace, service = powertools()
    assert find_in_map(props["Namespace"]) == namespace
    assert [(d["Name"], find_in_map(d["Value"])) for d in props["Dimensions"]] == [("service", service)]
    assert props["MetricName"] == "StaleTenants"
    assert "StaleTenants" in emitted_metrics()
    assert props["Statistic"] == "Maximum"
    assert props["Period"] == 3600
    assert props["Threshold"] == 1
    assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert props["TreatMissingData"] == "breaching"
    # Every evaluated hour must breach: one healthy report per night keeps it OK, a silent 26 h alarms.
    assert props["DatapointsToAlarm"] == props["EvaluationPeriods"]
    window = props["EvaluationPeriods"] * props["Period"]
    assert 25 * 3600 < window <= 7 * 86400, "longer than a DST night, within CloudWatch's 7-day limit"


def test_dashboard_body_is_json_and_reads_the_published_metrics() -> None:
    dashboard = resources("AWS::CloudWatch::Dashboard")["OperationsDashboard"]["Properties"]
    text, variables = dashboard["DashboardBody"]["Fn::Sub"]
    namespace, service = powertools()
    values = {name: find_in_map(value) for name, value in variables.items()}
    values = {name: value if isinstance(value, str) else f"<{name}>" for name, value in values.items()}
    values.update({"AWS::Region": "eu-west-1", "AWS::StackName": "stack"})
    unknown = set(SUB_VARIABLE.findall(text)) - set(values) - set(template()["Parameters"])
    assert unknown == set(), f"Fn::Sub variables without a value: {unknown}"
    body = json.loads(SUB_VARIABLE.sub(lambda m: values.get(m.group(1), "1"), text))
    metrics = [m for w in body["widgets"] if w["type"] == "metric" for m in w["properties"]["metrics"]]
    custom = [m for m in metrics if m[0] == namespace]
    assert custom
    assert all(m[0] in (namespace, "AWS/States", "AWS/SQS") for m in metrics)
    for metric in custom:
        assert metric[2:4] == ["service", service], metric
    shown = {m[1] for m in custom}
    assert shown - emitted_metrics() == set(), f"dashboard metrics no code publishes: {shown - emitted_metrics()}"
    expected = {"BytesLanded", "ExportsLanded", "TransferSeconds", "StatusChecks", "JobsCreated", "StaleTenants"}
    assert expected | {"JobRequestFailures"} <= shown


# ------------------------------------------------------------------------------------------------ samconfig
def test_samconfig_overrides_name_template_parameters() -> None:
    import shlex
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    overrides = {}
    for env in ("default", "prod"):
        text = config[env]["deploy"]["parameters"]["parameter_overrides"]
        overrides[env] = dict(item.split("=", 1) for item in shlex.split(text))
        unknown = set(overrides[env]) - set(template()["Parameters"])
        assert unknown == set(), f"samconfig [{env}] overrides parameters the template does not have: {unknown}"
    assert overrides["prod"].get("EnableCatalog") == "true"
    assert overrides["default"].get("EnableCatalog", "false") == "false"
