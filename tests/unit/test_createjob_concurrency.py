"""Two CreateJob runs at the same moment (issue 11, "concurrency"): each (tenant, day) is created exactly once.

On AWS two invocations of CreateJob can run at once (a tick delivered twice, a tick and an "Export Requested",
two forced requests); the local engine runs one invocation at a time, so the interleavings are driven here, on
the use case, from two threads against one ledger table. Each DynamoDB call is atomic, as on the service
(:class:`~tests.createjob_fakes.SerializedCalls`); between calls the threads interleave freely, and the API's
POST is slow (it yields for a moment) so one run is mid-create while the other plans and dispatches. Every
scenario runs several rounds, each on days of its own, for different interleavings.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast
from zoneinfo import ZoneInfo

import pytest

from omborigrid_export.createjob import CreateJobReport, Requested, Scheduled, SchedulePolicy, Services, create_jobs
from omborigrid_export.ledger import EntryState, Ledger
from omborigrid_export.models import ExportRequest
from omborigrid_export.scheduling import AdhocRequest
from omborigrid_export.tenant_health import TenantHealthStore
from tests.createjob_fakes import Api, moto_ledger_table
from tests.ledger_table import SerializedCalls

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

TABLE = "export-ledger"
TENANTS = ("t1", "t2")
NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
ROUNDS = 6


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with moto_ledger_table(monkeypatch, TABLE) as client:
        yield SerializedCalls(client)


class Run:
    """The collaborators every concurrent run shares: one ledger table, one API, one queue."""

    def __init__(self, dynamodb: Any) -> None:
        client = cast("DynamoDBClient", dynamodb)
        self.ledger = Ledger(client, TABLE, now=lambda: NOW)
        self.api = Api(while_creating=lambda: time.sleep(0.01))
        self.enqueued: list[str] = []
        self.services = Services(
            ledger=self.ledger,
            health=TenantHealthStore(client, TABLE),
            create=self.api,
            enqueue=self.enqueued.append,
            execution_status=lambda _: None,
            now=lambda: NOW,
            publish=lambda _: None,
        )
        self.policy = SchedulePolicy(
            tenants=TENANTS, zone=ZoneInfo("UTC"), lookback_days=2, max_jobs_in_flight=500, freshness_hours=36
        )

    def together(self, *triggers: Scheduled | Requested) -> list[CreateJobReport]:
        """Run ``create_jobs`` once per trigger, each on a thread of its own, released at the same moment."""
        barrier = threading.Barrier(len(triggers))
        reports: list[CreateJobReport] = []
        errors: list[BaseException] = []

        def one(trigger: Scheduled | Requested) -> None:
            barrier.wait()
            try:
                reports.append(create_jobs(trigger, self.policy, self.services))
            except BaseException as exc:  # noqa: BLE001 - re-raised on the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(t,)) for t in triggers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert len(reports) == len(triggers)
        return reports

    def assert_each_once(self, asked: list[ExportRequest]) -> None:
        """One POST per (tenant, day) asked for, each job enqueued and recorded on its day's entry."""
        posts = collections.Counter(self.api.posts)
        assert {r: n for r, n in posts.items() if n != 1} == {}
        assert set(posts) == set(asked)
        # Every job is enqueued; a concurrent catch-up may enqueue one whose run has not yet marked it enqueued
        # a second time, which StartExport's deterministic execution name makes harmless (test_concurrency.py).
        assert {json.loads(body)["jobId"] for body in self.enqueued} == {f"job-{n + 1}" for n in range(len(posts))}
        recorded = {self.ledger.get(r).job_id for r in asked}  # type: ignore[union-attr]
        assert recorded == {f"job-{n}" for n in range(1, len(self.api.posts) + 1)}
        assert {self.ledger.get(r).state for r in asked} == {EntryState.QUEUED}  # type: ignore[union-attr]
        assert self.ledger.in_flight() == len(asked)


def days(tenants: tuple[str, ...], first: date, last: date) -> list[ExportRequest]:
    count = (last - first).days + 1
    return [ExportRequest(t, first + timedelta(n), first + timedelta(n)) for t in tenants for n in range(count)]


def tick(day: date) -> Scheduled:
    """A tick whose "yesterday" is ``day``."""
    return Scheduled(datetime(day.year, day.month, day.day, 2, 0, tzinfo=UTC) + timedelta(days=1))


def rounds() -> list[date]:
    """The newest day of each round, far enough apart that the rounds' windows never meet."""
    return [date(2026, 2, 20) - timedelta(days=10 * n) for n in range(ROUNDS)]


def test_given_the_same_tick_twice_at_once_then_each_tenant_and_day_is_created_once(dynamodb: Any) -> None:
    run = Run(dynamodb)
    asked: list[ExportRequest] = []
    for day in rounds():
        run.together(tick(day), tick(day))
        asked += days(TENANTS, day - timedelta(days=2), day)
        run.assert_each_once(asked)


def test_given_a_tick_and_an_overlapping_request_at_once_then_each_day_is_created_once(dynamodb: Any) -> None:
    """The tick asks for D-2..D of both tenants, the request for D-1..D+1 of t1: t1's D-1 and D are asked for
    twice at the same moment."""
    run = Run(dynamodb)
    asked: list[ExportRequest] = []
    for day in rounds():
        request = AdhocRequest.from_detail(
            {
                "tenantIds": ["t1"],
                "dataDateFrom": (day - timedelta(days=1)).isoformat(),
                "dataDateTo": (day + timedelta(days=1)).isoformat(),
            }
        )
        run.together(tick(day), Requested(request))
        asked += days(TENANTS, day - timedelta(days=2), day) + days(
            ("t1",), day + timedelta(days=1), day + timedelta(days=1)
        )
        run.assert_each_once(asked)


def one_day(day: date, *, force: bool = False) -> Requested:
    detail = {"tenantIds": ["t1"], "dataDateFrom": day.isoformat(), "dataDateTo": day.isoformat(), "force": force}
    return Requested(AdhocRequest.from_detail(detail))


def test_given_two_forced_requests_for_a_landed_day_at_once_then_one_new_job(dynamodb: Any) -> None:
    run = Run(dynamodb)
    for day in rounds():
        [request] = days(("t1",), day, day)
        run.together(one_day(day))
        first = run.ledger.get(request)
        assert first is not None
        assert first.job_id is not None
        assert run.ledger.mark_landed(request, first.job_id, "k", "m")
        before = len(run.api.posts)

        reports = run.together(one_day(day, force=True), one_day(day, force=True))

        assert run.api.posts[before:] == [request]
        assert sorted(sum(o.outcome == "created" for o in r.outcomes) for r in reports) == [0, 1]
        entry = run.ledger.get(request)
        assert entry is not None
        assert (entry.state, entry.job_id) == (EntryState.QUEUED, f"job-{len(run.api.posts)}")
