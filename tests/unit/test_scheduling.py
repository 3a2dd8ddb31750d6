"""scheduling.py: which days to export, ad-hoc request validation, and creating each job exactly once.

The ledger runs on moto's in-process DynamoDB (``mock_aws`` patches botocore; no socket is opened).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from moto import mock_aws

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

from omborigrid_export.errors import (
    AmbiguousCreate,
    ApiUnavailable,
    ConfigurationError,
    InvalidInput,
    QueueUnavailable,
    RequestRejected,
)
from omborigrid_export.executions import ExecutionStatus
from omborigrid_export.ledger import EntryState, Ledger
from omborigrid_export.models import ExportJob, ExportRequest, JobStatus, Split
from omborigrid_export.scheduling import (
    MAX_REQUESTS_PER_EVENT,
    AdhocRequest,
    Outcome,
    RequestOutcome,
    catch_up,
    dispatch_pending,
    nightly_days,
    plan_exports,
    queue_message,
    requeue_stale_claims,
    send_unsent,
    stale_tenants,
    zone,
)
from omborigrid_export.state import JobRef
from tests.ledger_table import SerializedCalls, create_ledger_table

TABLE = "export-ledger"
T0 = datetime(2026, 1, 10, 3, 0, tzinfo=UTC)


# --- zone and nightly_days ----------------------------------------------------------------------


def test_given_known_zone_when_looked_up_then_zoneinfo() -> None:
    assert zone("Europe/Stockholm").key == "Europe/Stockholm"
    assert zone("UTC").key == "UTC"


@pytest.mark.parametrize("name", ["Nowhere/Land", "", "../etc/passwd", "/etc/localtime", "Europe/"])
def test_given_unknown_zone_when_looked_up_then_configuration_error_naming_it(name: str) -> None:
    with pytest.raises(ConfigurationError, match="not a known time zone") as caught:
        zone(name)
    assert repr(name) in str(caught.value)


def test_given_utc_evening_that_is_still_yesterday_in_new_york_when_nightly_days_then_day_before() -> None:
    # 00:30Z on the 27th is 19:30 on the 26th in New York, so "yesterday" there is the 25th.
    now = datetime(2026, 11, 27, 0, 30, tzinfo=UTC)
    assert nightly_days(now, zone("America/New_York"), 0) == [date(2026, 11, 25)]
    assert nightly_days(now, zone("UTC"), 0) == [date(2026, 11, 26)]


def test_given_utc_evening_that_is_tomorrow_in_tokyo_when_nightly_days_then_today_utc() -> None:
    now = datetime(2026, 11, 26, 20, 0, tzinfo=UTC)  # 05:00 on the 27th in Tokyo
    assert nightly_days(now, zone("Asia/Tokyo"), 0) == [date(2026, 11, 26)]


def test_given_lookback_when_nightly_days_then_oldest_first_ending_yesterday() -> None:
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

    days = nightly_days(now, zone("Europe/Stockholm"), 3)

    assert days == [date(2026, 2, 26), date(2026, 2, 27), date(2026, 2, 28), date(2026, 3, 1)]


@pytest.mark.parametrize("lookback", [0, 1, 7, 366])
def test_given_lookback_count_when_nightly_days_then_that_many_plus_yesterday(lookback: int) -> None:
    days = nightly_days(T0, zone("UTC"), lookback)
    assert len(days) == lookback + 1
    assert days[-1] == date(2026, 1, 9)
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(days))


@pytest.mark.parametrize("lookback", [-1, 367])
def test_given_lookback_out_of_range_when_nightly_days_then_configuration_error(lookback: int) -> None:
    with pytest.raises(ConfigurationError, match="look-back"):
        nightly_days(T0, zone("UTC"), lookback)


# --- AdhocRequest -------------------------------------------------------------------------------


def detail(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"tenantIds": ["t1", "t2"], "dataDateFrom": "2026-01-01", "dataDateTo": "2026-01-03"}
    data.update(overrides)
    return data


def test_given_minimal_detail_when_parsed_then_daily_without_force() -> None:
    request = AdhocRequest.from_detail(detail())

    assert request == AdhocRequest(("t1", "t2"), date(2026, 1, 1), date(2026, 1, 3), Split.DAILY, False)


def test_given_daily_split_when_expanded_then_one_request_per_tenant_and_day_in_order() -> None:
    expanded = AdhocRequest.from_detail(detail()).expand()

    assert [(r.tenant_id, r.date_from.day, r.date_to.day) for r in expanded] == [
        ("t1", 1, 1),
        ("t1", 2, 2),
        ("t1", 3, 3),
        ("t2", 1, 1),
        ("t2", 2, 2),
        ("t2", 3, 3),
    ]


def test_given_no_split_when_expanded_then_one_request_per_tenant_for_the_whole_range() -> None:
    expanded = AdhocRequest.from_detail(detail(split="none", force=True)).expand()

    assert expanded == [
        ExportRequest("t1", date(2026, 1, 1), date(2026, 1, 3)),
        ExportRequest("t2", date(2026, 1, 1), date(2026, 1, 3)),
    ]


def test_given_duplicate_tenants_when_parsed_then_collapsed_keeping_first_order() -> None:
    request = AdhocRequest.from_detail(detail(tenantIds=["t2", "t1", "t2", "t1", "t3"]))

    assert request.tenants == ("t2", "t1", "t3")
    assert len(request.expand()) == 9


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (None, "no detail object"),
        ([], "no detail object"),
        (detail(tenantId="t1"), "unknown fields"),
        (detail(extra=1, other=2), r"\['extra', 'other'\]"),
        (detail(tenantIds=[]), "non-empty list"),
        (detail(tenantIds="t1"), "non-empty list"),
        (detail(tenantIds=None), "non-empty list"),
        ({"dataDateFrom": "2026-01-01", "dataDateTo": "2026-01-01"}, "non-empty list"),
        (detail(tenantIds=["t1", "../x"]), "not acceptable"),
        (detail(tenantIds=["t1", 7]), "not a string"),
        (detail(split="weekly"), "split must be"),
        (detail(split=None), "split must be"),
        (detail(force="true"), "force must be"),
        (detail(force=1), "force must be"),
        (detail(dataDateFrom="2026-01-04"), "must not be after"),
        (detail(dataDateFrom="2026-02-30"), "dataDateFrom"),
        (detail(dataDateTo=None), "dataDateTo"),
    ],
)
def test_given_invalid_detail_when_parsed_then_invalid_input(data: object, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        AdhocRequest.from_detail(data)


def test_given_too_many_daily_requests_when_parsed_then_invalid_input() -> None:
    # 137 tenants x 366 days = 50,142 > 50,000.
    data = detail(tenantIds=[f"t{i}" for i in range(137)], dataDateFrom="2024-01-01", dataDateTo="2024-12-31")
    with pytest.raises(InvalidInput, match=f"at most {MAX_REQUESTS_PER_EVENT}"):
        AdhocRequest.from_detail(data)


def test_given_same_range_without_split_when_parsed_then_within_limit() -> None:
    data = detail(
        tenantIds=[f"t{i}" for i in range(137)], dataDateFrom="2024-01-01", dataDateTo="2024-12-31", split="none"
    )
    assert len(AdhocRequest.from_detail(data).expand()) == 137


class _TooMuchWork(Exception):
    pass


def test_given_huge_daily_range_when_parsed_then_rejected_without_building_every_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 0001-01-01..9999-12-31 is 3.65 million days per tenant: far over the limit, so it should be refused
    # from arithmetic, not after building millions of objects (which exhausts a Lambda's memory).
    built = 0
    original = ExportRequest.__post_init__

    def counting(self: ExportRequest) -> None:
        nonlocal built
        built += 1
        if built > MAX_REQUESTS_PER_EVENT + 1:
            raise _TooMuchWork(f"built {built} requests before rejecting")
        original(self)

    monkeypatch.setattr(ExportRequest, "__post_init__", counting)
    with pytest.raises(InvalidInput, match="at most"):
        AdhocRequest.from_detail(detail(tenantIds=["t1"], dataDateFrom="0001-01-01", dataDateTo="9999-12-31"))


# --- queue_message ------------------------------------------------------------------------------


def test_given_request_and_job_when_queue_message_then_json_the_download_worker_reads() -> None:
    message = queue_message(ExportRequest("t1", date(2026, 1, 1), date(2026, 1, 2)), "job-9", True)
    assert json.loads(message) == {
        "jobId": "job-9",
        "tenantId": "t1",
        "dataDateFrom": "2026-01-01",
        "dataDateTo": "2026-01-02",
        "force": True,
    }


# --- planning and dispatching (ledger on moto) ---------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FakeApi:
    """Creates jobs with sequential ids; a queue of exceptions is raised first, one per call."""

    def __init__(self) -> None:
        self.created: list[ExportRequest] = []
        self.failures: list[Exception] = []

    def __call__(self, request: ExportRequest) -> ExportJob:
        if self.failures:
            raise self.failures.pop(0)
        self.created.append(request)
        return ExportJob(
            id=f"job-{len(self.created)}",
            status=JobStatus.QUEUED,
            tenant_id=request.tenant_id,
            date_from=request.date_from,
            date_to=request.date_to,
            filename=f"{request.tenant_id}.parquet",
        )


class FakeQueue:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def __call__(self, body: str) -> None:
        self.messages.append(json.loads(body))


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def dynamodb(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        create_ledger_table(client, TABLE)
        yield client


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def ledger(dynamodb: Any, clock: Clock) -> Ledger:
    return Ledger(dynamodb, TABLE, stale_after=timedelta(minutes=20), now=clock)


def day(n: int, tenant: str = "t1") -> ExportRequest:
    return ExportRequest(tenant, date(2026, 1, n), date(2026, 1, n))


def run(
    ledger: Ledger, api: FakeApi, queue: FakeQueue, *requests: ExportRequest, force: bool = False, cap: int = 20
) -> list[str]:
    planned = plan_exports(requests, ledger, force=force)
    dispatched = dispatch_pending(ledger, create=api, enqueue=queue, cap=cap)
    return [o.outcome for o in planned + dispatched]


def state_of(ledger: Ledger, request: ExportRequest) -> str | None:
    entry = ledger.get(request)
    return entry.state if entry else None


def test_given_new_days_when_planned_and_dispatched_then_jobs_created_enqueued_and_recorded(ledger: Ledger) -> None:
    api, queue = FakeApi(), FakeQueue()
    assert run(ledger, api, queue, day(1), day(2)) == ["planned", "planned", "created", "created"]
    assert api.created == [day(1), day(2)]
    assert [m["jobId"] for m in queue.messages] == ["job-1", "job-2"]
    entry = ledger.get(day(1))
    assert entry is not None
    assert (entry.state, entry.job_id, entry.enqueued) == (EntryState.QUEUED, "job-1", True)
    assert ledger.in_flight() == 2


def test_given_same_requests_twice_then_the_second_run_creates_nothing(ledger: Ledger) -> None:
    api, queue = FakeApi(), FakeQueue()
    run(ledger, api, queue, day(1), day(2))
    assert run(ledger, api, queue, day(1), day(2)) == ["skipped", "skipped"]
    assert len(api.created) == 2
    assert len(queue.messages) == 2


def test_given_a_cap_then_never_more_jobs_in_flight_and_finishing_one_frees_a_slot(ledger: Ledger) -> None:
    api, queue = FakeApi(), FakeQueue()
    outcomes = run(ledger, api, queue, *(day(n) for n in range(1, 6)), cap=2)
    assert outcomes.count("created") == 2
    assert ledger.in_flight() == 2
    assert [state_of(ledger, day(n)) for n in range(1, 6)] == [
        EntryState.QUEUED,
        EntryState.QUEUED,
        EntryState.PENDING,
        EntryState.PENDING,
        EntryState.PENDING,
    ]
    # Oldest data first; finishing one lets exactly one more through.
    assert ledger.mark_landed(day(1), "job-1", "k1", "m1") is True
    assert dispatch_pending(ledger, create=api, enqueue=queue, cap=2)[0].request == day(3)
    assert ledger.in_flight() == 2
    assert dispatch_pending(ledger, create=api, enqueue=queue, cap=2) == []


def test_given_a_duplicate_outcome_then_the_slot_is_released_once(ledger: Ledger) -> None:
    api, queue = FakeApi(), FakeQueue()
    run(ledger, api, queue, day(1), day(2))
    assert ledger.mark_landed(day(1), "job-1", "k", "m") is True
    assert ledger.mark_landed(day(1), "job-1", "k", "m") is False
    assert ledger.mark_failed(day(1), "job-1", "late failure event") is False
    assert ledger.in_flight() == 1
    assert state_of(ledger, day(1)) == EntryState.LANDED


def test_given_concurrent_dispatchers_then_the_cap_holds(dynamodb: Any, clock: Clock) -> None:
    import threading

    ledger = Ledger(cast("DynamoDBClient", SerializedCalls(dynamodb)), TABLE, now=clock)
    api, queue = FakeApi(), FakeQueue()
    plan_exports([day(n) for n in range(1, 11)], ledger)
    threads = [
        threading.Thread(target=dispatch_pending, args=(ledger,), kwargs={"create": api, "enqueue": queue, "cap": 3})
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(api.created) == 3
    assert ledger.in_flight() == 3
    assert len({r.date_from for r in api.created}) == 3


def test_given_create_fails_certainly_then_the_claim_and_slot_are_released(ledger: Ledger) -> None:
    api, queue = FakeApi(), FakeQueue()
    api.failures.append(ApiUnavailable("down"))
    assert run(ledger, api, queue, day(1)) == ["planned", "failed"]
    entry = ledger.get(day(1))
    assert entry is not None
    assert entry.state == EntryState.FAILED
    assert "ApiUnavailable" in (entry.error or "")
    assert ledger.in_flight() == 0
    assert run(ledger, api, queue, day(1)) == ["planned", "created"]


def test_given_a_rejected_request_then_the_others_still_go_through(ledger: Ledger) -> None:
    api, queue = FakeApi(), FakeQueue()
    api.failures.append(RequestRejected("bad tenant"))
    assert sorted(run(ledger, api, queue, day(1), day(2))) == ["created", "failed", "planned", "planned"]
    assert api.created == [day(2)]


def test_given_an_ambiguous_create_then_the_claim_is_kept_until_stale(ledger: Ledger, clock: Clock) -> None:
    api, queue = FakeApi(), FakeQueue()
    api.failures.append(AmbiguousCreate("read timeout"))
    assert run(ledger, api, queue, day(1)) == ["planned", "failed"]
    assert state_of(ledger, day(1)) == EntryState.REQUESTING
    assert ledger.in_flight() == 1  # the job may exist at the API: it keeps its slot
    assert run(ledger, api, queue, day(1)) == ["skipped"]
    days = [date(2026, 1, 1)]

    def heal() -> list[ExportRequest]:
        return catch_up(["t1"], days, ledger, execution_status=lambda ref: None, enqueue=queue, now=clock.now)

    clock.now += timedelta(minutes=5)
    heal()
    assert state_of(ledger, day(1)) == EntryState.REQUESTING
    clock.now += timedelta(minutes=30)
    heal()
    assert state_of(ledger, day(1)) == EntryState.PENDING
    assert ledger.in_flight() == 0
    assert [o.outcome for o in dispatch_pending(ledger, create=api, enqueue=queue, cap=5)] == ["created"]
    assert api.created == [day(1)]


def test_given_a_job_never_enqueued_then_catch_up_enqueues_it_without_a_new_job(ledger: Ledger, clock: Clock) -> None:
    api, queue = FakeApi(), FakeQueue()
    plan_exports([day(1)], ledger)
    claim = ledger.dispatch(day(1), cap=5)
    assert claim is not None
    ledger.record_job(day(1), claim, "job-x")  # the process died before enqueueing
    catch_up(["t1"], [date(2026, 1, 1)], ledger, execution_status=lambda ref: None, enqueue=queue, now=clock.now)
    assert [m["jobId"] for m in queue.messages] == ["job-x"]
    assert api.created == []
    entry = ledger.get(day(1))
    assert entry is not None
    assert entry.enqueued


def test_given_a_landed_day_when_forced_then_recreated_and_the_old_manifest_remembered(ledger: Ledger) -> None:
    api, queue = FakeApi(), FakeQueue()
    run(ledger, api, queue, day(1))
    ledger.mark_landed(day(1), "job-1", "k1", "old/_manifest.json")
    assert run(ledger, api, queue, day(1)) == ["skipped"]
    assert run(ledger, api, queue, day(1), force=True) == ["planned", "created"]
    assert queue.messages[-1]["force"] is True
    assert ledger.previous_manifest_key(day(1)) == "old/_manifest.json"


def test_given_a_queued_day_when_forced_then_not_recreated(ledger: Ledger) -> None:
    api, queue = FakeApi(), FakeQueue()
    run(ledger, api, queue, day(1))
    assert run(ledger, api, queue, day(1), force=True) == ["skipped"]
    assert len(api.created) == 1


def test_given_an_outage_then_catch_up_plans_missing_failed_and_lost_days_only(ledger: Ledger, clock: Clock) -> None:
    api, queue = FakeApi(), FakeQueue()
    # day 2: failed; day 3: queued long ago, execution failed; day 4: queued long ago, execution missing;
    # day 5: queued recently; day 6: landed; day 1 and 7: never requested.
    run(ledger, api, queue, day(2), day(3), day(4), day(6))
    ledger.mark_failed(day(2), "job-1", "boom")
    ledger.mark_landed(day(6), "job-4", "k", "m")
    clock.now += timedelta(hours=2)
    run(ledger, api, queue, day(5))
    statuses = {"job-2": ExecutionStatus.FAILED, "job-3": None, "job-5": ExecutionStatus.RUNNING}
    asked: list[str] = []

    def status(ref: JobRef) -> ExecutionStatus | None:
        asked.append(ref.job_id)
        return statuses[ref.job_id]

    days = [date(2026, 1, n) for n in range(1, 8)]
    to_plan = catch_up(["t1"], days, ledger, execution_status=status, enqueue=queue, now=clock.now)
    assert [r.date_from.day for r in to_plan] == [1, 2, 3, 4, 7]
    assert sorted(asked) == ["job-2", "job-3"]  # day 5 is too recent to suspect
    assert state_of(ledger, day(3)) == EntryState.FAILED
    assert ledger.in_flight() == 1  # only day 5 is still in flight


def test_given_landings_then_stale_tenants_are_those_without_a_recent_one(ledger: Ledger, clock: Clock) -> None:
    api, queue = FakeApi(), FakeQueue()
    run(ledger, api, queue, ExportRequest("fresh", date(2026, 1, 9), date(2026, 1, 9)))
    ledger.mark_landed(ExportRequest("fresh", date(2026, 1, 9), date(2026, 1, 9)), "job-1", "k", "m")
    assert stale_tenants(["fresh", "quiet"], ledger, now=clock.now, hours=36) == ["quiet"]
    clock.now += timedelta(hours=37)
    assert stale_tenants(["fresh", "quiet"], ledger, now=clock.now, hours=36) == ["fresh", "quiet"]


def test_given_outcome_when_to_dict_then_json_row() -> None:
    row = RequestOutcome(day(1), Outcome.CREATED, "job-1").to_dict()
    assert row == {
        "tenantId": "t1",
        "dataDateFrom": "2026-01-01",
        "dataDateTo": "2026-01-01",
        "outcome": "created",
        "jobId": "job-1",
        "detail": None,
        "error": None,
    }


# --- what the fault campaigns found (tests/statemachine/faults) ---------------------------------


class RefusingQueue(FakeQueue):
    """SQS that refuses the next ``refusals`` messages (as the SDK reports them after its retries)."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    def __call__(self, body: str) -> None:
        if self.refusals:
            self.refusals -= 1
            raise QueueUnavailable("The job queue did not take the job's message (InternalFailure).")
        super().__call__(body)


def test_given_sqs_refuses_the_message_then_the_run_fails_and_the_next_run_sends_it_without_a_new_job(
    ledger: Ledger,
) -> None:
    """Found by CreateJobFunction:sqs.SendMessage@t2#1-server_error: the day of a backfill stayed QUEUED, never sent."""
    api, queue = FakeApi(), RefusingQueue(refusals=1)
    plan_exports([day(1)], ledger)
    [outcome] = dispatch_pending(ledger, create=api, enqueue=queue, cap=5)
    assert (outcome.outcome, outcome.error, outcome.job_id) == (Outcome.FAILED, "QueueUnavailable", "job-1")
    assert state_of(ledger, day(1)) == EntryState.QUEUED
    entry = ledger.get(day(1))
    assert entry is not None
    assert not entry.enqueued

    assert send_unsent(ledger, queue) == 1

    assert [m["jobId"] for m in queue.messages] == ["job-1"]
    assert api.created == [day(1)]
    entry = ledger.get(day(1))
    assert entry is not None
    assert entry.enqueued
    assert send_unsent(ledger, queue) == 0


def test_given_a_stale_claim_of_any_tenant_then_any_run_gives_it_back_to_pending(ledger: Ledger, clock: Clock) -> None:
    """Found by a random campaign (seed 11): a backfill day whose CreateJob died after the POST stayed REQUESTING,
    holding its slot, because only the nightly look-back (its own tenants) gave stale claims back."""
    plan_exports([day(1, tenant="backfill")], ledger)
    assert ledger.dispatch(day(1, tenant="backfill"), cap=5) is not None  # then the invocation died
    assert requeue_stale_claims(ledger) == 0
    assert ledger.in_flight() == 1
    clock.now += timedelta(minutes=21)

    assert requeue_stale_claims(ledger) == 1

    assert state_of(ledger, day(1, tenant="backfill")) == EntryState.PENDING
    assert ledger.in_flight() == 0
