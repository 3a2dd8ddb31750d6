"""Helpers of the operations tests (test_operations.py): outcome-event schemas, ledger reads, landed-data reads,
and the meters docs/cost.md is priced from (invocation durations and the AWS calls the functions make).
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import boto3
import jsonschema

from omborigrid_local.engine import LocalStack

from .helpers import object_keys

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = {
    "Export Completed": REPO_ROOT / "schemas" / "export-completed.schema.json",
    "Export Failed": REPO_ROOT / "schemas" / "export-failed.schema.json",
    "Schema Changed": REPO_ROOT / "schemas" / "schema-changed.schema.json",
    "Export Anomalous": REPO_ROOT / "schemas" / "export-anomalous.schema.json",
}
FUNCTIONS = ("CreateJobFunction", "StartExportFunction", "CheckStatusFunction", "DownloadFunction")
#: Services whose requests are billed per request (Lambda invocations and Step Functions transitions are counted
#: apart; STS and the engine's own Lambda Invoke calls are not the functions' work).
METERED_SERVICES = frozenset({"s3", "dynamodb", "sqs", "events", "secretsmanager", "stepfunctions"})


# ----------------------------------------------------------------------------------------------- outcome events
def _validators() -> dict[str, jsonschema.protocols.Validator]:
    validators = {}
    for detail_type, path in SCHEMAS.items():
        schema = json.loads(path.read_text(encoding="utf-8"))
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        validators[detail_type] = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return validators


_VALIDATORS = _validators()


def assert_outcomes_valid(events: Iterable[dict[str, Any]]) -> int:
    """Every event is an outcome event whose detail validates against its schema in schemas/ (date formats
    checked too). Returns how many were checked."""
    checked = 0
    for event in events:
        assert event["source"] == "omborigrid.export", event
        validator = _VALIDATORS.get(event["detail-type"])
        assert validator is not None, f"not an outcome event: {event['detail-type']!r}"
        errors = sorted(validator.iter_errors(event["detail"]), key=lambda e: list(e.absolute_path))
        assert not errors, [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
        checked += 1
    return checked


# ----------------------------------------------------------------------------------------------- days and ledger
def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def ledger_entries(stack: LocalStack, tenant_id: str) -> dict[str, dict[str, Any]]:
    """Every ledger item of a tenant, by ``dataRange`` (``FROM/TO``), strongly consistent."""
    dynamodb = stack.client("dynamodb")
    items: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {
        "TableName": stack.table_name,
        "KeyConditionExpression": "tenantId = :t",
        "ExpressionAttributeValues": {":t": {"S": tenant_id}},
        "ConsistentRead": True,
    }
    while True:
        page = dynamodb.query(**kwargs)
        items.update({item["dataRange"]["S"]: item for item in page["Items"]})
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def ledger_states(stack: LocalStack, tenant_id: str) -> dict[str, str]:
    return {data_range: item["state"]["S"] for data_range, item in ledger_entries(stack, tenant_id).items()}


def in_flight(client: Any, table: str) -> int:
    """The ledger's counter of jobs in flight (the item CreateJob takes a slot of before each job)."""
    item = client.get_item(
        TableName=table,
        Key={"tenantId": {"S": "#capacity"}, "dataRange": {"S": "#jobs-in-flight"}},
        ConsistentRead=True,
    ).get("Item", {})
    return int(item.get("inFlight", {}).get("N", "0"))


class InFlightSampler:
    """Reads the in-flight counter every ``interval`` seconds on a thread of its own; ``values`` keeps them all."""

    def __init__(self, stack: LocalStack, interval: float = 0.02) -> None:
        self._client = boto3.client("dynamodb", region_name=stack.region)
        self._table = stack.table_name
        self._interval = interval
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="in-flight-sampler", daemon=True)
        self.values: list[int] = []

    def __enter__(self) -> InFlightSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.values.append(in_flight(self._client, self._table))
            self._stop.wait(self._interval)


def wait_until(condition: Any, timeout: float, interval: float = 0.5, what: str = "condition") -> float:
    """Poll ``condition()`` until true; returns the seconds it took, raises TimeoutError after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what} not reached within {timeout:.0f}s")
        time.sleep(interval)
    return time.monotonic() - started


def invocation_counts(stack: LocalStack) -> dict[str, int]:
    return {name: stack.invocations(name) for name in FUNCTIONS}


def wait_for_functions(stack: LocalStack, expected: dict[str, int], deliveries: int, timeout: float) -> None:
    """Wait, without any AWS call, until each function ran at least ``expected[name]`` times in all and the engine
    made at least ``deliveries`` rule → function deliveries (an outcome event's drain of CreateJob)."""

    def reached() -> bool:
        counts = invocation_counts(stack)
        return all(counts[name] >= n for name, n in expected.items()) and len(stack.deliveries) >= deliveries

    wait_until(reached, timeout, interval=0.05, what=f"invocations {expected} and {deliveries} deliveries")


# ----------------------------------------------------------------------------------------------- landed data
def download_prefixes(stack: LocalStack, prefixes: Iterable[str], root: Path) -> list[Path]:
    """Copy every object under ``prefixes`` into ``root``, keeping the keys as paths (what a lake reader sees)."""
    s3 = stack.client("s3")
    written = []
    for prefix in prefixes:
        for key in object_keys(stack, prefix):
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read())
            written.append(path)
    return written


# ----------------------------------------------------------------------------------------------- meters
@dataclass
class Meter:
    """What the functions did while metering: invocations with their in-process durations, the AWS requests they
    made (service → operation → count), and the items their DynamoDB queries read."""

    durations: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    calls: dict[str, collections.Counter[str]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    query_items_read: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "invocations": {name: len(values) for name, values in sorted(self.durations.items())},
            "seconds": {
                name: {
                    "sum": round(sum(values), 3),
                    "mean": round(sum(values) / len(values), 3),
                    "max": round(max(values), 3),
                }
                for name, values in sorted(self.durations.items())
            },
            "calls": {service: dict(sorted(ops.items())) for service, ops in sorted(self.calls.items())},
            "dynamodbQueryItemsRead": self.query_items_read,
        }


class _DurationHandler(logging.Handler):
    """Picks up the engine invoker's debug line "<LogicalId> returned <OK|an error> in <seconds>s"."""

    def __init__(self, meter: Meter) -> None:
        super().__init__(logging.DEBUG)
        self._meter = meter

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("%s returned") and isinstance(record.args, tuple) and len(record.args) == 3:
            name, _, seconds = record.args
            self._meter.durations[str(name)].append(float(seconds))  # type: ignore[arg-type]


@contextmanager
def metering(*, exclude_threads: Iterable[threading.Thread] = ()) -> Iterator[Meter]:
    """Meter the functions while the block runs.

    Durations come from the engine's invoker log. AWS requests are counted with a botocore ``before-call`` hook on
    boto3's default session, which every handler's clients come from (they are built afresh per invocation). The
    block itself must make no AWS calls but invoking functions (the Lambda service is not counted), so wait with
    :func:`wait_for_functions`; calls from ``exclude_threads`` (a sampler) are not counted. moto's Step Functions
    interpreter makes its putEvents through boto3 too, so those are counted, as they are billed on AWS.
    """
    meter = Meter()
    invoker_log = logging.getLogger("omborigrid_local.engine.invoker")
    handler = _DurationHandler(meter)
    previous_level = invoker_log.level
    invoker_log.addHandler(handler)
    invoker_log.setLevel(logging.DEBUG)

    excluded = {thread.ident for thread in exclude_threads}

    def service_of(model: Any) -> str:
        service = str(model.service_model.endpoint_prefix)
        return "stepfunctions" if service == "states" else service

    def count(model: Any, **_: Any) -> None:
        service = service_of(model)
        if service in METERED_SERVICES and threading.get_ident() not in excluded:
            meter.calls[service][model.name] += 1

    def items_read(model: Any, parsed: Any = None, **_: Any) -> None:
        if service_of(model) == "dynamodb" and model.name == "Query" and threading.get_ident() not in excluded:
            meter.query_items_read += int((parsed or {}).get("ScannedCount", 0))

    session = boto3._get_default_session()
    unique_id = f"ops-meter-{id(meter)}"
    # botocore keeps unique ids across all events: one per registration.
    session.events.register("before-call", count, unique_id=f"{unique_id}-calls")
    session.events.register("after-call", items_read, unique_id=f"{unique_id}-items")
    try:
        yield meter
    finally:
        session.events.unregister("before-call", unique_id=f"{unique_id}-calls")
        session.events.unregister("after-call", unique_id=f"{unique_id}-items")
        invoker_log.removeHandler(handler)
        invoker_log.setLevel(previous_level)
