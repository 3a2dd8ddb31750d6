"""Many tenants in one CreateJob run: a tenant's share of the cap, a refused token, a paused tenant.

The ledger runs on moto's in-process DynamoDB (``mock_aws`` patches botocore; no socket is opened); the API is a
fake that refuses the tokens of the tenants it is told to.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from omborigrid_export.createjob import Requested, Scheduled, SchedulePolicy, Services, create_jobs
from omborigrid_export.ledger import EntryState, Ledger, LedgerEntry
from omborigrid_export.models import ExportRequest
from omborigrid_export.scheduling import AdhocRequest, Outcome, dispatch_pending, plan_exports
from omborigrid_export.tenant_health import TenantHealth, TenantHealthStore, judge_night
from tests.createjob_fakes import Api, moto_ledger_table

TABLE = "export-ledger"
NOW = datetime(2026, 1, 10, 3, 0, tzinfo=UTC)


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with moto_ledger_table(monkeypatch, TABLE) as client:
        yield client


@pytest.fixture
def ledger(dynamodb: Any) -> Ledger:
    return Ledger(dynamodb, TABLE, now=lambda: NOW)


@pytest.fixture
def health(dynamodb: Any) -> TenantHealthStore:
    return TenantHealthStore(dynamodb, TABLE)


def days(tenant: str, first: int, last: int) -> list[ExportRequest]:
    return [ExportRequest(tenant, date(2025, 12, n), date(2025, 12, n)) for n in range(first, last + 1)]


# --------------------------------------------------------------------------------------- a tenant's share of the cap
def test_given_one_tenants_backfill_planned_first_when_dispatched_then_the_others_night_still_gets_slots(
    ledger: Ledger,
) -> None:
    """Given a 20-day backfill of tenant "big" planned before one night of "small", with a cap of 4 and a share of
    3, when dispatched, then "big" holds 3 slots and "small" the fourth; each tenant's counter is exact."""
    api = Api()
    plan_exports(days("big", 1, 20), ledger)
    plan_exports(days("small", 9, 9), ledger)

    outcomes = dispatch_pending(ledger, create=api, enqueue=lambda _: None, cap=4, tenant_cap=3)

    created = [o.request.tenant_id for o in outcomes if o.outcome is Outcome.CREATED]
    assert sorted(created) == ["big", "big", "big", "small"]
    assert ledger.in_flight() == 4
    assert ledger.tenants_at_cap(3) == frozenset({"big"})
    assert ledger.tenants_at_cap(1) == frozenset({"big", "small"})


def test_given_a_full_share_when_a_job_of_that_tenant_ends_then_its_slot_and_the_global_one_come_back(
    ledger: Ledger,
) -> None:
    api = Api()
    plan_exports(days("big", 1, 5), ledger)
    [first, *_] = dispatch_pending(ledger, create=api, enqueue=lambda _: None, cap=10, tenant_cap=2)
    assert ledger.in_flight() == 2
    assert first.job_id is not None

    assert ledger.mark_failed(first.request, first.job_id, "ExportFailed: the job failed")
    again = dispatch_pending(ledger, create=api, enqueue=lambda _: None, cap=10, tenant_cap=2)

    assert [o.outcome for o in again] == [Outcome.CREATED]
    assert ledger.in_flight() == 2
    assert ledger.tenants_at_cap(2) == frozenset({"big"})


# --------------------------------------------------------------------------------------- a refused token
def test_given_a_refused_token_then_one_post_its_days_failed_with_auth_error_and_the_others_go_on(
    ledger: Ledger, health: TenantHealthStore
) -> None:
    """Given three days of "revoked" and two of "fine", when the run creates jobs, then "revoked" is POSTed once,
    all three of its days are FAILED with AuthError, one "Export Failed" per day names the tenant, "fine" lands
    both jobs, and the run does not fail (a retry would only POST the refused token again)."""
    api = Api(refuse=["revoked"])
    published: list[tuple[str, dict[str, Any]]] = []
    services = Services(
        ledger=ledger,
        health=health,
        create=api,
        enqueue=lambda _: None,
        execution_status=lambda _: None,
        now=lambda: NOW,
        publish=published.extend,
    )
    policy = SchedulePolicy(
        tenants=(), zone=ZoneInfo("UTC"), lookback_days=0, max_jobs_in_flight=20, freshness_hours=36
    )
    request = AdhocRequest.from_detail(
        {"tenantIds": ["revoked", "fine"], "dataDateFrom": "2025-12-01", "dataDateTo": "2025-12-03"}
    )

    report = create_jobs(Requested(request), policy, services)

    assert [r.tenant_id for r in api.posts].count("revoked") == 1
    assert [r.tenant_id for r in api.posts].count("fine") == 3
    assert report.failure() is None
    assert len(report.refused) == 3
    revoked = ledger.entries("revoked", date(2025, 12, 1), date(2025, 12, 3))
    assert {e.state for e in revoked} == {EntryState.FAILED}
    assert all(e.error and e.error.startswith("AuthError: ") for e in revoked)
    assert {e.state for e in ledger.entries("fine", date(2025, 12, 1), date(2025, 12, 3))} == {EntryState.QUEUED}
    assert [kind for kind, _ in published] == ["Export Failed"] * 3
    details = [d for _, d in published]
    assert sorted(d["dataDateFrom"] for d in details) == ["2025-12-01", "2025-12-02", "2025-12-03"]
    assert all(d["tenantId"] == "revoked" and d["error"] == "AuthError" for d in details)
    assert all(d["message"].startswith("Tenant revoked: ") and d["jobId"] is None for d in details)
    assert ledger.in_flight() == 3


# --------------------------------------------------------------------------------------- pausing a broken tenant
def entry(day: int, state: EntryState, *, minute: int = 0, error: str | None = None) -> LedgerEntry:
    return LedgerEntry(
        tenant_id="t1",
        date_from=date(2026, 1, day),
        date_to=date(2026, 1, day),
        state=state,
        job_id=None,
        claim=None,
        updated_at=NOW + timedelta(minutes=minute),
        error=error,
    )


def test_given_failed_nights_then_each_new_failure_counts_once_and_the_nth_pauses() -> None:
    health = TenantHealth("t1")
    health = judge_night(health, [entry(8, EntryState.LANDED), entry(9, EntryState.FAILED)], pause_after=2, now=NOW)
    assert (health.failed_nights, health.paused) == (1, False)
    # The same failed entry seen again (a tick that ran twice): not a second night.
    assert judge_night(health, [entry(9, EntryState.FAILED)], pause_after=2, now=NOW) == health
    health = judge_night(health, [entry(9, EntryState.FAILED, minute=5, error="AuthError: x")], pause_after=2, now=NOW)
    assert (health.failed_nights, health.paused, health.paused_at, health.last_error) == (2, True, NOW, "AuthError: x")


def test_given_a_landed_newest_day_then_the_count_is_cleared_and_in_flight_leaves_it() -> None:
    counted = TenantHealth("t1", failed_nights=3, last_failure="x")
    assert judge_night(counted, [entry(9, EntryState.QUEUED)], pause_after=5, now=NOW) == counted
    assert judge_night(counted, [entry(8, EntryState.FAILED), entry(9, EntryState.LANDED)], pause_after=5, now=NOW) == (
        TenantHealth("t1")
    )


def test_given_nights_failing_with_a_refused_token_then_paused_announced_once_skipped_and_resumed_by_a_request(
    ledger: Ledger, health: TenantHealthStore
) -> None:
    """Given PAUSE_AFTER_FAILED_NIGHTS 2 and a tenant whose token is refused, when nights pass, then the third
    tick pauses it (one "Tenant Paused"), later ticks do not POST for it, and an "Export Requested" naming it
    resumes it and asks the API again; the healthy tenant is requested every night."""
    api = Api(refuse=["broken"])
    published: list[tuple[str, dict[str, Any]]] = []
    clock = [NOW]
    services = Services(
        ledger=ledger,
        health=health,
        create=api,
        enqueue=lambda _: None,
        execution_status=lambda _: None,
        now=lambda: clock[0],
        publish=published.extend,
    )
    policy = SchedulePolicy(
        tenants=("broken", "fine"),
        zone=ZoneInfo("UTC"),
        lookback_days=0,
        max_jobs_in_flight=20,
        freshness_hours=36,
        pause_after_failed_nights=2,
    )
    reports = []
    for night in range(4):
        clock[0] = NOW + timedelta(days=night)
        reports.append(create_jobs(Scheduled(), policy, services))

    assert [r.paused_tenants for r in reports] == [(), (), ("broken",), ("broken",)]
    assert [r.newly_paused for r in reports] == [(), (), ("broken",), ()]
    assert [r.tenant_id for r in api.posts].count("broken") == 2
    assert [r.tenant_id for r in api.posts].count("fine") == 4
    [paused] = [d for kind, d in published if kind == "Tenant Paused"]
    assert (paused["tenantId"], paused["failedNights"], paused["pauseAfterFailedNights"]) == ("broken", 2, 2)
    assert paused["lastError"].startswith("AuthError: ")
    assert "omborigrid-export retry" in paused["message"]

    api.refuse.clear()
    retry = AdhocRequest.from_detail(
        {"tenantIds": ["broken"], "dataDateFrom": "2026-01-11", "dataDateTo": "2026-01-11"}
    )
    create_jobs(Requested(retry), policy, services)

    assert health.get("broken") == TenantHealth("broken")
    assert ledger.get(retry.expand()[0]) is not None
    assert ledger.get(retry.expand()[0]).state is EntryState.QUEUED  # type: ignore[union-attr]
    clock[0] = NOW + timedelta(days=4)
    assert create_jobs(Scheduled(), policy, services).paused_tenants == ()
