"""Hands-off operations on the local engine: what the README's Operations, Landing and Athena sections promise.

* a scheduled night after a 3-night outage lands the missed days plus yesterday, once each, and a failed day is
  requested again by the next night;
* a zip delivery lands per-table parquet under ``{prefix}/{table}/tenant=…/dt=…/`` that pyarrow reads back with
  the rows the simulator generated, also as a Hive-partitioned dataset (what the Glue tables describe);
* a 365-day backfill under MaxJobsInFlight lands 365 objects, none twice, with never more jobs live than the cap;
* every outcome event validates against its JSON schema in schemas/;
* the counts docs/cost.md prices (state transitions, invocations and their durations, AWS requests).

Each group of tests has a stack of its own (class scope: only one LocalStack may run at a time, and a class's
stack is closed before the next class starts its own). Each test names its Given/When/Then in its docstring.
"""

from __future__ import annotations

import collections
import json
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from omborigrid_local.engine import LocalStack, count_retries, count_transitions, describe_path, entered_states
from omborigrid_local.simulator import Simulator

from .helpers import created_jobs, events_for, object_keys, read_object, start_stack
from .ops_helpers import (
    InFlightSampler,
    assert_outcomes_valid,
    days_between,
    download_prefixes,
    in_flight,
    invocation_counts,
    ledger_entries,
    ledger_states,
    metering,
    wait_for_functions,
    wait_until,
)

PREFIX = "omborigrid"
TABLES = ("events", "sessions", "clients")


def yesterday_utc() -> date:
    return (datetime.now(UTC) - timedelta(days=1)).date()


def skip_if_day_changed(yesterday: date) -> None:
    """A test that computed "yesterday" before the nightly tick cannot judge the tick once midnight UTC passed."""
    if yesterday_utc() != yesterday:
        pytest.skip("midnight UTC passed while the test ran; 'yesterday' moved")


def request_range(stack: LocalStack, tenants: list[str], first: date | str, last: date | str, split: str) -> Any:
    return stack.deliver_export_requested(
        {"tenantIds": tenants, "dataDateFrom": str(first), "dataDateTo": str(last), "split": split, "force": False}
    )


def data_keys(stack: LocalStack, prefix: str) -> list[str]:
    """Landed data files under ``prefix`` (manifests, which start with an underscore, left out)."""
    return [k for k in object_keys(stack, prefix) if not k.rsplit("/", 1)[-1].startswith("_")]


def dt_of(key: str) -> str:
    return next(part[3:] for part in key.split("/") if part.startswith("dt="))


def stack_fixture(simulator: Simulator, **kwargs: Any) -> Iterator[LocalStack]:
    local = start_stack(simulator, **kwargs)
    try:
        yield local
    finally:
        local.close()


# ============================================================================================= nightly catch-up
OUTAGE_TENANT = secrets.token_hex(12)


class TestOutageCatchUp:
    """The nightly run with the default look-back window (7 days before yesterday)."""

    @pytest.fixture(scope="class")
    @classmethod
    def stack(cls, module_simulator: Simulator) -> Iterator[LocalStack]:
        yield from stack_fixture(module_simulator, parameters={"TenantIds": OUTAGE_TENANT, "LookbackDays": 7})

    def test_scheduled_night_after_three_night_outage_lands_missed_days_once(
        self, stack: LocalStack, sim: Simulator
    ) -> None:
        """Given a tenant whose nights landed up to the run of 4 days ago (every day of the look-back window older
        than the 3 days before yesterday), then 3 nights without any run, when the scheduled night comes, then
        exactly the 3 missed days plus yesterday are created and land, once each, the landed days are not
        requested again, and a second tick the same night creates nothing."""
        tenant = OUTAGE_TENANT
        yesterday = yesterday_utc()
        window = days_between(yesterday - timedelta(days=7), yesterday)
        landed_before, missed = window[:4], window[4:]
        # Before the outage: the nights' runs (one job per night). CreateJob reads the clock itself, so the
        # earlier nights are replayed as one "Export Requested" per day, which leaves the same ledger behind.
        for day in landed_before:
            request_range(stack, [tenant], day, day, "daily")
        stack.wait_for_executions(len(landed_before), timeout=30, match=tenant)
        assert set(ledger_states(stack, tenant).values()) == {"LANDED"}
        skip_if_day_changed(yesterday)

        result = stack.deliver_scheduled()

        assert result["counts"] == {"created": len(missed)}, result
        assert sorted(job["dataDateFrom"] for job in created_jobs(result)) == [d.isoformat() for d in missed]
        executions = stack.wait_for_executions(len(window), timeout=30, match=tenant)
        assert [e["status"] for e in executions] == ["SUCCEEDED"] * len(window)
        expected_keys = {f"{tenant}/{d}/{d}": 1 for d in window}
        assert sim.stats().jobs_created_by_key == expected_keys  # one job per day over the whole story
        keys = data_keys(stack, f"{PREFIX}/tenant={tenant}/")
        assert sorted(dt_of(k) for k in keys) == [d.isoformat() for d in window], keys
        states = ledger_states(stack, tenant)
        assert states == {f"{d}/{d}": "LANDED" for d in window}
        events = events_for(stack, tenant)
        assert sorted(e["detail"]["dataDateFrom"] for e in events) == [d.isoformat() for d in window]
        assert {e["detail-type"] for e in events} == {"Export Completed"}
        assert assert_outcomes_valid(events) == len(window)

        again = stack.deliver_scheduled()

        assert again["counts"] == {}, again
        assert sim.stats().jobs_created_by_key == expected_keys
        assert len(stack.wait_for_executions(len(window), timeout=10, match=tenant)) == len(window)
        assert data_keys(stack, f"{PREFIX}/tenant={tenant}/") == keys
        assert stack.failed_deliveries == []


RETRY_TENANT = secrets.token_hex(12)


class TestFailedDayIsRetried:
    """The nightly run with a look-back window of 1 day: yesterday and the day before."""

    @pytest.fixture(scope="class")
    @classmethod
    def stack(cls, module_simulator: Simulator) -> Iterator[LocalStack]:
        yield from stack_fixture(module_simulator, parameters={"TenantIds": RETRY_TENANT, "LookbackDays": 1})

    def test_failed_day_in_window_is_requested_again_once(self, stack: LocalStack, sim: Simulator) -> None:
        """Given the day before yesterday failed at the API (its "Export Failed" event marked the ledger FAILED),
        when the scheduled night comes, then that day is requested again with yesterday, both land, and a second
        tick creates nothing; the "Export Failed" event validates against its schema."""
        tenant = RETRY_TENANT
        yesterday = yesterday_utc()
        before = yesterday - timedelta(days=1)
        sim.configure(final_status="failed")
        [failed_job] = created_jobs(request_range(stack, [tenant], before, before, "daily"))
        [failed] = stack.wait_for_executions(1, timeout=30, match=tenant)
        assert failed["status"] == "FAILED"
        assert ledger_states(stack, tenant) == {f"{before}/{before}": "FAILED"}
        [failure] = events_for(stack, tenant)
        assert (failure["detail-type"], failure["detail"]["jobId"]) == ("Export Failed", failed_job["jobId"])
        assert failure["detail"]["executionId"] == failed["executionArn"]
        sim.configure(final_status="done")
        skip_if_day_changed(yesterday)

        result = stack.deliver_scheduled()

        assert sorted(j["dataDateFrom"] for j in created_jobs(result)) == [before.isoformat(), yesterday.isoformat()]
        executions = stack.wait_for_executions(3, timeout=30, match=tenant)
        assert sorted(e["status"] for e in executions) == ["FAILED", "SUCCEEDED", "SUCCEEDED"]
        assert sim.stats().jobs_created_by_key == {
            f"{tenant}/{before}/{before}": 2,
            f"{tenant}/{yesterday}/{yesterday}": 1,
        }
        assert ledger_states(stack, tenant) == {f"{d}/{d}": "LANDED" for d in (before, yesterday)}
        keys = data_keys(stack, f"{PREFIX}/tenant={tenant}/")
        assert sorted(dt_of(k) for k in keys) == [before.isoformat(), yesterday.isoformat()]
        events = events_for(stack, tenant)
        assert [e["detail-type"] for e in events].count("Export Completed") == 2
        assert assert_outcomes_valid(events) == 3

        again = stack.deliver_scheduled()

        assert again["counts"] == {}, again
        assert sum(sim.stats().jobs_created_by_key.values()) == 3
        assert stack.failed_deliveries == []


# ============================================================================================= archives per table
class TestArchiveDeliveries:
    """Zip deliveries (one parquet member per table and day) with the default ArchiveKeyTemplate."""

    @pytest.fixture(scope="class")
    @classmethod
    def stack(cls, module_simulator: Simulator) -> Iterator[LocalStack]:
        yield from stack_fixture(module_simulator)

    def test_zip_delivery_lands_per_table_parquet(self, stack: LocalStack, sim: Simulator, tenant: str) -> None:
        """Given a zip delivery of two days in one job (split "none"), when it lands, then each member lands under
        {prefix}/{table}/tenant=…/dt=…/, pyarrow reads it back with the simulator's rows for that table (summed
        over the days), each member holds only its own day and tenant, the staged archive is gone, and the
        "Export Completed" event lists every member and validates against its schema."""
        sim.configure(delivery="zip")
        first, last = "2026-11-01", "2026-11-02"

        [job] = created_jobs(request_range(stack, [tenant], first, last, "none"))

        [execution] = stack.wait_for_executions(1, timeout=30, match=tenant)
        assert execution["status"] == "SUCCEEDED"
        [event] = events_for(stack, tenant)
        assert event["detail-type"] == "Export Completed"
        assert assert_outcomes_valid([event]) == 1
        manifest = event["detail"]
        assert (manifest["jobId"], manifest["contentKind"], manifest["skippedMembers"]) == (job["jobId"], "zip", [])
        members = {(f["table"], f["dataDate"]): f for f in manifest["files"]}
        assert len(members) == len(manifest["files"]) == 6
        assert set(members) == {(t, d) for t in TABLES for d in (first, last)}
        for (table, day), member in members.items():
            assert member["key"] == f"{PREFIX}/{table}/tenant={tenant}/dt={day}/part-0.parquet"
            assert member["contentKind"] == "parquet"
        landed = sorted(k for k in object_keys(stack, PREFIX) if f"tenant={tenant}/" in k)
        assert landed == sorted([*(m["key"] for m in members.values()), manifest["manifestKey"]])
        assert manifest["manifestKey"].startswith(f"{PREFIX}/")
        assert json.loads(read_object(stack, manifest["manifestKey"])) == manifest
        assert object_keys(stack, f"{PREFIX}/_staging/") == []
        assert ledger_states(stack, tenant) == {f"{first}/{last}": "LANDED"}

        rows: collections.Counter[str] = collections.Counter()
        for (table, day), member in members.items():
            body = read_object(stack, member["key"])
            assert len(body) == member["bytes"]
            data = pq.read_table(pa.BufferReader(body))
            assert data.num_rows > 0, member["key"]
            assert pc.unique(data["tenantId"]).to_pylist() == [tenant]
            if table == "events":
                days = pc.unique(pc.strftime(data["eventTime"], format="%Y-%m-%d")).to_pylist()
                assert days == [day], member["key"]
            rows[table] += data.num_rows
        assert dict(rows) == sim.expected_rows(tenant, first, last)

    def test_landed_tables_read_back_as_hive_partitioned_dataset(
        self, stack: LocalStack, sim: Simulator, tmp_path: Path
    ) -> None:
        """Given zip deliveries for two tenants and two days (one job per tenant and day), when the landed tables
        are read back from the local S3 as pyarrow datasets with Hive partitioning (the layout the Glue tables
        project), then every table has exactly the simulator's rows per tenant and day, the partition values
        match the rows' own tenantId, and the manifests beside the data are not read as data."""
        sim.configure(delivery="zip")
        tenants = sorted(secrets.token_hex(12) for _ in range(2))
        days = ["2026-10-30", "2026-10-31"]

        result = request_range(stack, tenants, days[0], days[-1], "daily")

        assert result["counts"] == {"created": 4}
        executions = [e for t in tenants for e in stack.wait_for_executions(2, timeout=30, match=t)]
        assert [e["status"] for e in executions] == ["SUCCEEDED"] * 4
        events = [e for t in tenants for e in events_for(stack, t)]
        assert assert_outcomes_valid(events) == 4
        root = tmp_path / "lake"
        downloaded = download_prefixes(stack, [f"{PREFIX}/{t}/tenant={n}/" for t in TABLES for n in tenants], root)
        assert sum(p.name.startswith("_") for p in downloaded) == 4  # a manifest per job, beside its first member

        partitioning = ds.partitioning(pa.schema([("tenant", pa.string()), ("dt", pa.string())]), flavor="hive")
        for table in TABLES:
            dataset = ds.dataset(root / PREFIX / table, format="parquet", partitioning=partitioning)
            assert len(dataset.files) == 4, dataset.files
            assert not any(Path(f).name.startswith("_") for f in dataset.files)
            data = dataset.to_table()
            assert pc.all(pc.equal(data["tenant"], data["tenantId"])).as_py()
            counted = data.group_by(["tenant", "dt"]).aggregate([([], "count_all")]).to_pylist()
            got = {(r["tenant"], r["dt"]): r["count_all"] for r in counted}
            expected = {(t, d): sim.expected_rows(t, d, d)[table] for t in tenants for d in days}
            assert got == expected, table


# ============================================================================================= what cost.md prices
COST_TENANT = secrets.token_hex(12)


class TestCostCounts:
    """The template's defaults (polling 60 s doubling to 600 s, transfer settings, look-back 7 days), one tenant."""

    @pytest.fixture(scope="class")
    @classmethod
    def stack(cls, module_simulator: Simulator) -> Iterator[LocalStack]:
        yield from stack_fixture(module_simulator, parameters={"TenantIds": COST_TENANT})

    def _meter_one_export(self, stack: LocalStack, start: Any, tenant: str) -> tuple[dict[str, Any], Any]:
        """Run ``start()`` (one export), metering until its drain ran; returns the meter summary and execution."""
        stack.client("sts").get_caller_identity()  # nothing to look up inside the metered window
        before = invocation_counts(stack)
        deliveries = len(stack.deliveries)
        with metering() as meter:
            result = start()
            assert result["counts"] == {"created": 1}, result
            wait_for_functions(
                stack,
                {
                    "DownloadFunction": before["DownloadFunction"] + 1,
                    "CreateJobFunction": before["CreateJobFunction"] + 2,
                },
                deliveries=deliveries + 1,
                timeout=60,
            )
        [execution] = stack.wait_for_executions(1, timeout=30, match=tenant)
        summary = meter.summary()
        summary["invocationDelta"] = {k: v - before[k] for k, v in invocation_counts(stack).items()}
        return summary, execution

    def _report(self, label: str, stack: LocalStack, summary: dict[str, Any], execution: Any) -> int:
        history = stack.history(execution["executionArn"])
        transitions = count_transitions(history)
        summary["transitions"] = transitions
        summary["retries"] = count_retries(history)
        summary["path"] = describe_path(entered_states(history))
        print(f"\n{label}: " + json.dumps(summary, indent=1))
        return transitions

    def test_nightly_export_of_an_hour_long_job(self, stack: LocalStack, sim: Simulator) -> None:
        """Given the default settings, a look-back window already landed, and a job that takes 60 simulated minutes,
        when the scheduled night runs, then one execution lands it within 40 state transitions, and the functions
        run exactly: CreateJob twice (the tick and the drain after "Export Completed"), StartExport once,
        CheckStatus once per status check, Download once. Prints the counts docs/cost.md is priced from."""
        yesterday = yesterday_utc()
        window = days_between(yesterday - timedelta(days=7), yesterday - timedelta(days=1))
        request_range(stack, [COST_TENANT], window[0], window[-1], "daily")
        stack.wait_for_executions(len(window), timeout=60, match=COST_TENANT)
        assert set(ledger_states(stack, COST_TENANT).values()) == {"LANDED"}
        sim.configure(queue_seconds=60, processing_seconds=3540)
        skip_if_day_changed(yesterday)

        summary, execution = self._meter_one_export(stack, stack.deliver_scheduled, f"{COST_TENANT}_{yesterday:%Y%m%d}")

        assert execution["status"] == "SUCCEEDED"
        transitions = self._report("nightly export, 1-hour job, defaults", stack, summary, execution)
        delta = summary["invocationDelta"]
        assert delta == {
            "CreateJobFunction": 2,
            "StartExportFunction": 1,
            "CheckStatusFunction": delta["CheckStatusFunction"],
            "DownloadFunction": 1,
        }
        # 9 checks by the schedule (1, 3, 7, 15, 25, 35, 45, 55, 65 min); handler time also advances the simulator's
        # x1000 clock, so on a busy machine the job looks done a check or more early.
        assert 5 <= delta["CheckStatusFunction"] <= 9, summary["path"]
        assert summary["retries"] == 0
        assert transitions == 3 * delta["CheckStatusFunction"] + 5  # Prepare + [Wait, Check, Choice]×n + 4 to land
        assert transitions <= 40
        assert summary["invocations"] == {k: v for k, v in delta.items() if v}
        assert summary["calls"]["events"] == {"PutEvents": 1}  # the "Export Completed" event
        assert assert_outcomes_valid(events_for(stack, COST_TENANT)) == len(window) + 1

    def test_quick_export(self, stack: LocalStack, sim: Simulator, tenant: str) -> None:
        """Given the default settings and a job done within the first wait (60 s), when one day is requested,
        then the execution takes the shortest path: 8 state transitions, one status check, one download."""
        summary, execution = self._meter_one_export(
            stack, lambda: request_range(stack, [tenant], "2026-11-05", "2026-11-05", "daily"), tenant
        )

        assert execution["status"] == "SUCCEEDED"
        transitions = self._report("quick export, defaults", stack, summary, execution)
        assert transitions == 8, summary["path"]
        assert summary["invocationDelta"] == {
            "CreateJobFunction": 2,
            "StartExportFunction": 1,
            "CheckStatusFunction": 1,
            "DownloadFunction": 1,
        }
        assert assert_outcomes_valid(events_for(stack, tenant)) == 1


# ============================================================================================= capped backfill
BACKFILL_CAP = 5
BACKFILL_DAYS = 365


@pytest.mark.slow
class TestBackfill:
    """A year for one tenant with MaxJobsInFlight = 5. Each job processes for 2000 simulated seconds (2 real
    seconds) and is checked once, after 2100: the 5 jobs in flight overlap at the API, so the cap is what bounds
    them, while the engine (one invocation at a time) stays the bottleneck of the wall time."""

    @pytest.fixture(scope="class")
    @classmethod
    def stack(cls, module_simulator: Simulator) -> Iterator[LocalStack]:
        yield from stack_fixture(
            module_simulator,
            parameters={"MaxJobsInFlight": BACKFILL_CAP, "PollInitialSeconds": 2100, "PollMaxSeconds": 2100},
        )

    @pytest.mark.timeout(1200)
    def test_year_backfill_lands_each_day_once_within_the_cap(
        self, stack: LocalStack, sim: Simulator, tenant: str
    ) -> None:
        """Given MaxJobsInFlight 5, when one "Export Requested" event asks for 365 days of one tenant, then CreateJob
        creates 5 jobs and leaves 360 pending; each finished export's event drains the next through the
        ExportFinished rule; 365 objects land, one job per day; the ledger's in-flight counter reaches 5, never
        exceeds it and ends at 0; the simulator never sees more than 5 jobs live at once, and the ledger
        shows 365 LANDED. Prints the wall time and the metered counts docs/cost.md prices."""
        sim.configure(queue_seconds=0, processing_seconds=2000, rows_per_day=50)
        first = date(2025, 1, 1)
        days = days_between(first, first + timedelta(days=BACKFILL_DAYS - 1))
        started = time.monotonic()

        with InFlightSampler(stack) as sampler, metering(exclude_threads=[sampler.thread]) as meter:
            result = request_range(stack, [tenant], days[0], days[-1], "daily")
            assert result["counts"] == {"created": BACKFILL_CAP, "planned": BACKFILL_DAYS - BACKFILL_CAP}
            wait_until(lambda: len(stack.deliveries) >= BACKFILL_DAYS, timeout=1000, interval=1, what="365 drains")
        elapsed = time.monotonic() - started
        executions = stack.wait_for_executions(BACKFILL_DAYS, timeout=120, match=tenant)

        stats = sim.stats()
        transitions = collections.Counter(count_transitions(stack.history(e["executionArn"])) for e in executions)
        print(
            f"\nbackfill of {BACKFILL_DAYS} days, cap {BACKFILL_CAP}: {elapsed:.0f} s wall; simulator max live "
            f"{stats.max_live_jobs}; ledger in flight max {max(sampler.values)} over {len(sampler.values)} samples; "
            f"transitions per execution {dict(transitions)}; " + json.dumps(meter.summary())
        )
        assert len(executions) == BACKFILL_DAYS
        assert {e["status"] for e in executions} == {"SUCCEEDED"}
        assert stats.jobs_created_by_key == {f"{tenant}/{d}/{d}": 1 for d in days}
        # The ledger's counter is the cap: it reaches 5 and never passes it. The simulator's live count is a
        # job's queued/processing interval (2 real seconds), so whether all 5 overlap there depends on how fast
        # one CreateJob invocation creates them on a loaded machine; it must never exceed the cap.
        assert max(sampler.values) == BACKFILL_CAP
        assert 2 <= stats.max_live_jobs <= BACKFILL_CAP
        assert in_flight(stack.client("dynamodb"), stack.table_name) == 0
        keys = data_keys(stack, f"{PREFIX}/tenant={tenant}/")
        assert len(keys) == BACKFILL_DAYS
        assert sorted(dt_of(k) for k in keys) == [d.isoformat() for d in days]
        entries = ledger_entries(stack, tenant)
        assert collections.Counter(item["state"]["S"] for item in entries.values()) == {"LANDED": BACKFILL_DAYS}
        drains = [d for d in stack.deliveries if d.rule == stack.outputs["ExportFinishedRuleName"]]
        assert len(drains) == BACKFILL_DAYS
        assert stack.failed_deliveries == []
        assert invocation_counts(stack)["CreateJobFunction"] == 1 + BACKFILL_DAYS
        events = events_for(stack, tenant)
        assert collections.Counter(e["detail-type"] for e in events) == {"Export Completed": BACKFILL_DAYS}
        assert assert_outcomes_valid(events) == BACKFILL_DAYS
