"""The nightly run's day comes from the tick's scheduled time, not from the clock (issue 11, "time").

Scheduler retries a failed tick for up to an hour (the schedule's ``MaximumEventAgeInSeconds``) and every retry
carries the same ``<aws.scheduler.scheduled-time>``; a retry that arrives after midnight must export the day the
tick was for. The ledger runs on moto's in-process DynamoDB; the API is a fake that records each create.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from omborigrid_export.createjob import (
    SCHEDULE_CLOCK_SKEW,
    Scheduled,
    SchedulePolicy,
    Services,
    create_jobs,
    parse_trigger,
)
from omborigrid_export.errors import InvalidInput
from omborigrid_export.ledger import Ledger
from omborigrid_export.tenant_health import TenantHealthStore
from tests.createjob_fakes import Api, moto_ledger_table

TABLE = "export-ledger"
#: The tick was scheduled for 23:30 UTC on 9 January; its retry runs at 00:20 on the 10th.
SCHEDULED = datetime(2026, 1, 9, 23, 30, tzinfo=UTC)
AFTER_MIDNIGHT = datetime(2026, 1, 10, 0, 20, tzinfo=UTC)


def tick(scheduled_time: str | None) -> dict[str, Any]:
    event: dict[str, Any] = {"trigger": "schedule"}
    if scheduled_time is not None:
        event["scheduledTime"] = scheduled_time
    return event


# ----------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-09T23:30:00Z", SCHEDULED),
        ("2026-01-09T23:30:00+00:00", SCHEDULED),
        ("2026-01-09T23:30:00.000Z", SCHEDULED),
    ],
)
def test_given_a_tick_with_a_utc_scheduled_time_when_parsed_then_that_time(text: str, expected: datetime) -> None:
    parsed = parse_trigger(tick(text))
    assert parsed == Scheduled(expected)
    assert isinstance(parsed, Scheduled)
    assert parsed.scheduled_time is not None
    assert parsed.scheduled_time.utcoffset() == timedelta(0)


def test_given_a_tick_without_a_scheduled_time_when_parsed_then_none() -> None:
    assert parse_trigger(tick(None)) == Scheduled(None)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("<aws.scheduler.scheduled-time>", "unreplaced placeholder"),
        ("yesterday", "not an ISO 8601 time in UTC"),
        ("2026-01-09", "not an ISO 8601 time in UTC"),
        ("2026-01-09T23:30:00", "not an ISO 8601 time in UTC"),
        ("2026-01-09T23:30:00+01:00", "not an ISO 8601 time in UTC"),
        ("2026-13-09T23:30:00Z", "not an ISO 8601 time in UTC"),
        (1767997800, "not int"),
        ("x" * 500, "x" * 40 + r"\.\.\."),
    ],
)
def test_given_a_tick_with_a_garbled_scheduled_time_when_parsed_then_invalid_input(raw: Any, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        parse_trigger(tick(raw))


# ----------------------------------------------------------------------------------------- runs
@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with moto_ledger_table(monkeypatch, TABLE) as client:
        yield client


def nightly(dynamodb: Any, now: datetime) -> tuple[Services, Api]:
    api = Api()
    services = Services(
        ledger=Ledger(dynamodb, TABLE, now=lambda: now),
        health=TenantHealthStore(dynamodb, TABLE),
        create=api,
        enqueue=lambda _: None,
        execution_status=lambda _: None,
        now=lambda: now,
        publish=lambda _: None,
    )
    return services, api


def policy(*, zone: str = "UTC", lookback: int = 0) -> SchedulePolicy:
    return SchedulePolicy(
        tenants=("t1",), zone=ZoneInfo(zone), lookback_days=lookback, max_jobs_in_flight=20, freshness_hours=36
    )


def test_given_a_retry_after_midnight_then_the_day_before_the_scheduled_time_is_exported(dynamodb: Any) -> None:
    """Given a tick scheduled for 23:30 on the 9th whose retry runs at 00:20 on the 10th (look-back 0), when the
    run plans, then it asks for the 8th, the day the tick was for; by the clock it would ask for the 9th and the
    8th would never be asked for."""
    services, api = nightly(dynamodb, AFTER_MIDNIGHT)

    report = create_jobs(Scheduled(SCHEDULED), policy(), services)

    assert [r.date_from for r in api.posts] == [date(2026, 1, 8)]
    assert [o.request.date_from for o in report.outcomes] == [date(2026, 1, 8)]


def test_given_a_time_zone_then_the_scheduled_times_local_date_decides(dynamodb: Any) -> None:
    """Given a schedule in America/New_York at 23:30 local on the 9th (04:30 UTC on the 10th), when its retry runs
    at 00:20 local on the 10th, then the day before the local scheduled date (the 8th) is exported."""
    new_york = ZoneInfo("America/New_York")
    scheduled = datetime(2026, 1, 9, 23, 30, tzinfo=new_york).astimezone(UTC)
    services, api = nightly(dynamodb, datetime(2026, 1, 10, 0, 20, tzinfo=new_york).astimezone(UTC))

    create_jobs(Scheduled(scheduled), policy(zone="America/New_York"), services)

    assert [r.date_from for r in api.posts] == [date(2026, 1, 8)]


def test_given_the_same_tick_delivered_twice_then_the_second_run_creates_nothing(dynamodb: Any) -> None:
    services, api = nightly(dynamodb, AFTER_MIDNIGHT)
    create_jobs(Scheduled(SCHEDULED), policy(lookback=2), services)

    again = create_jobs(Scheduled(SCHEDULED), policy(lookback=2), services)

    assert sorted(r.date_from for r in api.posts) == [date(2026, 1, 6), date(2026, 1, 7), date(2026, 1, 8)]
    assert again.outcomes == ()  # every day of the window is queued already: nothing to plan
    assert again.in_flight == 3


def test_given_a_tick_without_a_scheduled_time_then_the_clock_decides_and_it_is_logged(
    dynamodb: Any, caplog: pytest.LogCaptureFixture
) -> None:
    services, api = nightly(dynamodb, AFTER_MIDNIGHT)

    with caplog.at_level(logging.WARNING, logger="omborigrid_export.createjob"):
        create_jobs(Scheduled(), policy(), services)

    assert [r.date_from for r in api.posts] == [date(2026, 1, 9)]
    assert any("carries no scheduledTime" in r.getMessage() for r in caplog.records)


def test_given_a_tick_scheduled_in_the_future_beyond_the_skew_then_refused_before_anything_is_asked(
    dynamodb: Any,
) -> None:
    services, api = nightly(dynamodb, SCHEDULED)
    ahead = SCHEDULED + SCHEDULE_CLOCK_SKEW + timedelta(seconds=1)

    with pytest.raises(InvalidInput, match="has not come yet"):
        create_jobs(Scheduled(ahead), policy(), services)

    assert api.posts == []
    assert services.ledger.entries("t1", date(2026, 1, 1), date(2026, 1, 31)) == []


def test_given_a_tick_slightly_ahead_of_the_clock_then_accepted_as_clock_skew(dynamodb: Any) -> None:
    services, api = nightly(dynamodb, SCHEDULED - SCHEDULE_CLOCK_SKEW)

    create_jobs(Scheduled(SCHEDULED), policy(), services)

    assert [r.date_from for r in api.posts] == [date(2026, 1, 8)]
