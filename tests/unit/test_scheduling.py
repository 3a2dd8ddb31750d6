"""scheduling.py: which days to export, ad-hoc request validation, and creating each job exactly once.

The ledger runs on moto's in-process DynamoDB (``mock_aws`` patches botocore; no socket is opened).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from omborigrid_export.errors import AmbiguousCreate, ApiUnavailable, ConfigurationError, InvalidInput, RequestRejected
from omborigrid_export.ledger import FAILED, LANDED, QUEUED, REQUESTING, Ledger
from omborigrid_export.models import ExportJob, ExportRequest, JobStatus
from omborigrid_export.scheduling import (
    MAX_REQUESTS_PER_EVENT,
    AdhocRequest,
    RequestOutcome,
    nightly_days,
    nightly_requests,
    queue_message,
    request_exports,
    zone,
)

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

    assert request == AdhocRequest(("t1", "t2"), date(2026, 1, 1), date(2026, 1, 3), "daily", False)


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


# --- request_exports (ledger on moto) -----------------------------------------------------------


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
        self.fail_next = False

    def __call__(self, body: str) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("the process died before the message was sent")
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
        client.create_table(
            TableName=TABLE,
            KeySchema=[
                {"AttributeName": "tenantId", "KeyType": "HASH"},
                {"AttributeName": "dataRange", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "tenantId", "AttributeType": "S"},
                {"AttributeName": "dataRange", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def ledger(dynamodb: Any, clock: Clock) -> Ledger:
    return Ledger(dynamodb, TABLE, stale_after=timedelta(minutes=20), now=clock)


DAY1 = ExportRequest("t1", date(2026, 1, 1), date(2026, 1, 1))
DAY2 = ExportRequest("t1", date(2026, 1, 2), date(2026, 1, 2))


def run(ledger: Ledger, api: FakeApi, queue: FakeQueue, *requests: ExportRequest, force: bool = False) -> list[str]:
    outcomes = request_exports(requests or (DAY1,), create=api, ledger=ledger, enqueue=queue, force=force)
    return [o.outcome for o in outcomes]


def test_given_new_days_when_requested_then_jobs_created_enqueued_and_recorded(ledger: Ledger) -> None:
    api, queue = FakeApi(), FakeQueue()

    outcomes = request_exports([DAY1, DAY2], create=api, ledger=ledger, enqueue=queue)

    assert [(o.outcome, o.job_id) for o in outcomes] == [("created", "job-1"), ("created", "job-2")]
    assert api.created == [DAY1, DAY2]
    assert [m["jobId"] for m in queue.messages] == ["job-1", "job-2"]
    assert queue.messages[0]["dataDateFrom"] == "2026-01-01"
    entry = ledger.get(DAY1)
    assert entry is not None
    assert (entry.state, entry.job_id, entry.enqueued) == (QUEUED, "job-1", True)


def test_given_same_requests_twice_when_requested_then_second_call_creates_nothing(ledger: Ledger) -> None:
    api, queue = FakeApi(), FakeQueue()
    run(ledger, api, queue, DAY1, DAY2)

    outcomes = request_exports([DAY1, DAY2], create=api, ledger=ledger, enqueue=queue)

    assert [o.outcome for o in outcomes] == ["skipped", "skipped"]
    assert [o.job_id for o in outcomes] == ["job-1", "job-2"]
    assert outcomes[0].detail == "already queued"
    assert len(api.created) == 2
    assert len(queue.messages) == 2


def test_given_create_fails_certainly_when_requested_then_claim_released_and_next_call_creates(
    ledger: Ledger,
) -> None:
    api, queue = FakeApi(), FakeQueue()
    api.failures.append(ApiUnavailable("The API kept answering 503."))

    first = request_exports([DAY1], create=api, ledger=ledger, enqueue=queue)

    assert first[0].outcome == "failed"
    assert first[0].detail == "ApiUnavailable: The API kept answering 503."
    entry = ledger.get(DAY1)
    assert entry is not None
    assert entry.state == FAILED
    assert entry.error == "ApiUnavailable: The API kept answering 503."
    assert queue.messages == []

    assert run(ledger, api, queue) == ["created"]
    assert api.created == [DAY1]
    assert [m["jobId"] for m in queue.messages] == ["job-1"]


def test_given_request_rejected_when_requested_then_other_requests_still_processed(ledger: Ledger) -> None:
    api, queue = FakeApi(), FakeQueue()
    api.failures.append(RequestRejected("dataDateTo is in the future"))

    assert run(ledger, api, queue, DAY1, DAY2) == ["failed", "created"]
    assert api.created == [DAY2]


def test_given_ambiguous_create_when_requested_then_claim_kept_until_stale(ledger: Ledger, clock: Clock) -> None:
    api, queue = FakeApi(), FakeQueue()
    api.failures.append(AmbiguousCreate("The POST timed out; the job may exist."))

    assert run(ledger, api, queue) == ["failed"]
    entry = ledger.get(DAY1)
    assert entry is not None
    assert entry.state == REQUESTING

    # A retry within the stale window must not POST again: a job may already exist.
    clock.now = T0 + timedelta(minutes=19)
    assert run(ledger, api, queue) == ["skipped"]
    assert api.created == []

    # Once the claim is stale, the day is claimed again and created.
    clock.now = T0 + timedelta(minutes=21)
    assert run(ledger, api, queue) == ["created"]
    assert api.created == [DAY1]
    assert [m["jobId"] for m in queue.messages] == ["job-1"]


def test_given_job_created_but_never_enqueued_when_requested_again_then_re_enqueued_without_new_job(
    ledger: Ledger,
) -> None:
    api, queue = FakeApi(), FakeQueue()
    queue.fail_next = True
    with pytest.raises(RuntimeError):
        run(ledger, api, queue)
    entry = ledger.get(DAY1)
    assert entry is not None
    assert (entry.state, entry.job_id, entry.enqueued) == (QUEUED, "job-1", False)

    outcomes = request_exports([DAY1], create=api, ledger=ledger, enqueue=queue)

    assert [(o.outcome, o.job_id) for o in outcomes] == [("re-enqueued", "job-1")]
    assert len(api.created) == 1
    assert [m["jobId"] for m in queue.messages] == ["job-1"]
    entry = ledger.get(DAY1)
    assert entry is not None
    assert entry.enqueued
    # And once enqueued, a third run leaves it alone.
    assert run(ledger, api, queue) == ["skipped"]
    assert len(queue.messages) == 1


def test_given_landed_day_when_forced_then_recreated(ledger: Ledger) -> None:
    api, queue = FakeApi(), FakeQueue()
    run(ledger, api, queue)
    ledger.mark_landed(DAY1, "job-1", "raw/t1/x.parquet")

    assert run(ledger, api, queue) == ["skipped"]
    assert run(ledger, api, queue, force=True) == ["created"]

    assert len(api.created) == 2
    assert queue.messages[-1] == {**queue.messages[0], "jobId": "job-2", "force": True}
    entry = ledger.get(DAY1)
    assert entry is not None
    assert (entry.state, entry.job_id) == (QUEUED, "job-2")


def test_given_queued_day_when_forced_then_not_recreated(ledger: Ledger) -> None:
    api, queue = FakeApi(), FakeQueue()
    run(ledger, api, queue)

    outcomes = request_exports([DAY1], create=api, ledger=ledger, enqueue=queue, force=True)

    assert [(o.outcome, o.job_id) for o in outcomes] == [("skipped", "job-1")]
    assert len(api.created) == 1
    assert len(queue.messages) == 1


def test_given_fresh_requesting_claim_when_forced_then_not_recreated(ledger: Ledger) -> None:
    api, queue = FakeApi(), FakeQueue()
    api.failures.append(AmbiguousCreate("timed out"))
    run(ledger, api, queue)

    assert run(ledger, api, queue, force=True) == ["skipped"]
    assert api.created == []


def test_given_outcome_when_to_dict_then_json_row() -> None:
    row = RequestOutcome(DAY2, "failed", None, "ApiUnavailable: down").to_dict()
    assert row == {
        "tenantId": "t1",
        "dataDateFrom": "2026-01-02",
        "dataDateTo": "2026-01-02",
        "outcome": "failed",
        "jobId": None,
        "detail": "ApiUnavailable: down",
    }


# --- nightly_requests (ledger on moto) ----------------------------------------------------------


def test_given_ledger_history_when_nightly_requests_then_only_missing_failed_or_unsent_days(
    ledger: Ledger,
) -> None:
    api, queue = FakeApi(), FakeQueue()
    now = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)  # yesterday = 2026-01-04; look back 3 -> 01-01..01-04
    days = [ExportRequest("t1", date(2026, 1, d), date(2026, 1, d)) for d in (1, 2, 3, 4)]
    # 01-01 landed; 01-02 failed; 01-03 created but never enqueued; 01-04 never requested.
    run(ledger, api, queue, days[0])
    ledger.mark_landed(days[0], "job-1", "k")
    api.failures.append(ApiUnavailable("down"))
    run(ledger, api, queue, days[1])
    queue.fail_next = True
    with pytest.raises(RuntimeError):
        run(ledger, api, queue, days[2])

    requests = nightly_requests(["t1", "t2"], now, zone("UTC"), 3, ledger)

    assert [(r.tenant_id, r.date_from.day) for r in requests] == [
        ("t1", 2),
        ("t1", 3),
        ("t1", 4),
        ("t2", 1),
        ("t2", 2),
        ("t2", 3),
        ("t2", 4),
    ]
    entry = ledger.get(days[0])
    assert entry is not None
    assert entry.state == LANDED
