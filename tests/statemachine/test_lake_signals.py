"""The lake's own signals on the local engine: a 30-day backfill of one tenant (zip deliveries: events, sessions and
clients per day) where the simulator changes ``int1``'s type from day 20, empties day 12 and drops day 25 to 5 %.

Then: one "Schema Changed" (events, breaking, int1 INT64 → string), one empty landing (day 12, "Export Completed"
with 0 rows, no alarm: AlertOnEmptyDay is off), one "Export Anomalous" (day 25, its events), no other signal;
``status`` shows it (human and ``--json``); the OpenLineage START and COMPLETE of every export reach a local
receiver and are valid.

Everything is the product: the real ASL, handlers (each landing proven by the layer's parquet prover), template
and simulator.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest

from omborigrid_export_cli.main import main
from omborigrid_local.engine import LocalStack
from omborigrid_local.simulator import Simulator
from tests.lineage_receiver import Receiver, lineage_errors, lineage_receiver

from .helpers import DAY, events_for, object_keys, read_object, request_day, start_stack
from .ops_helpers import assert_outcomes_valid, days_between, ledger_entries, wait_until

DAYS = 30
FIRST = date(2025, 3, 1)
CAP = 6


def nth(n: int) -> date:
    return FIRST + timedelta(days=n - 1)


def status_args(stack: LocalStack, tenant: str) -> list[str]:
    """``status`` of the tenant's 30 days, read from the stack's ledger."""
    return ["status", "--table", stack.table_name, "--tenant", tenant, "--from", str(nth(1)), "--to", str(nth(DAYS))]


@pytest.mark.slow
class TestThirtyDaysOfSignals:
    @pytest.fixture(scope="class")
    @classmethod
    def receiver(cls) -> Iterator[Receiver]:
        with lineage_receiver() as server:
            yield server

    @pytest.fixture(scope="class")
    @classmethod
    def stack(cls, module_simulator: Simulator, receiver: Receiver) -> Iterator[LocalStack]:
        local = start_stack(
            module_simulator,
            parameters={
                "MaxJobsInFlight": CAP,
                "PollInitialSeconds": 60,
                "PollMaxSeconds": 60,
                "LineageEndpoint": receiver.endpoint,
            },
        )
        try:
            yield local
        finally:
            local.close()

    @pytest.mark.timeout(600)
    def test_one_schema_change_one_empty_day_one_anomaly_and_lineage(
        self,
        stack: LocalStack,
        sim: Simulator,
        tenant: str,
        receiver: Receiver,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Given the simulator's signals for this tenant, when 30 days are requested at once (MaxJobsInFlight 6),
        then every day lands and exactly the three signals of the issue go out, on their days."""
        sim.configure(
            queue_seconds=0,
            processing_seconds=30,
            delivery="zip",
            rows_per_day=400,
            signals_tenant=tenant,
            schema_change_from=nth(20).isoformat(),
            schema_change="type",
            empty_day=[nth(12).isoformat()],
            volume_fraction={nth(25).isoformat(): 0.05},
        )
        days = days_between(nth(1), nth(DAYS))
        started = time.monotonic()
        stack.deliver_export_requested(
            {"tenantIds": [tenant], "dataDateFrom": str(days[0]), "dataDateTo": str(days[-1]), "split": "daily"}
        )
        wait_until(
            lambda: sum(1 for e in ledger_entries(stack, tenant).values() if e["state"]["S"] == "LANDED") >= DAYS,
            timeout=500,
            interval=1,
            what="30 days landed",
        )
        stack.wait_for_executions(DAYS, timeout=120, match=tenant)
        elapsed = time.monotonic() - started

        events = events_for(stack, tenant)
        kinds = collections.Counter(e["detail-type"] for e in events)
        with capsys.disabled():
            print(f"\n30-day backfill with signals: {elapsed:.0f} s wall; events {dict(kinds)}")
        assert kinds == {"Export Completed": DAYS, "Schema Changed": 1, "Export Anomalous": 1}
        assert assert_outcomes_valid(events) == DAYS + 2

        [changed] = [e["detail"] for e in events if e["detail-type"] == "Schema Changed"]
        # Six exports run at once, so day 21 may land before day 20: the change is announced by the first day to
        # land with the new schema, against the last earlier day landed with the old one (and only once).
        assert (changed["table"], changed["compatibility"]) == ("events", "breaking")
        assert changed["previousDataDate"] < str(nth(20)) <= changed["dataDate"]
        [retyped] = changed["diff"]["typeChanged"]
        assert (retyped["column"], retyped["before"]["physicalType"], retyped["after"]["physicalType"]) == (
            "int1",
            "INT64",
            "BYTE_ARRAY",
        )
        assert changed["diff"]["added"] == changed["diff"]["removed"] == []

        [anomalous] = [e["detail"] for e in events if e["detail-type"] == "Export Anomalous"]
        assert anomalous["dataDateFrom"] == str(nth(25))
        # The events fall to 5 %; their sessions and clients (tens of rows a day, below AnomalyMinRows) are not judged.
        [events_volume] = [t["volume"] for t in anomalous["tables"] if t["table"] == "events"]
        assert [t["table"] for t in anomalous["tables"]] == ["events"]
        assert (events_volume["verdict"], events_volume["rows"], events_volume["ratio"]) == ("low", 20, 0.05)

        completed = {e["detail"]["dataDateFrom"]: e["detail"] for e in events if e["detail-type"] == "Export Completed"}
        assert completed[str(nth(12))]["proof"]["rows"] == 0
        assert all(completed[str(d)]["proof"]["rows"] > 0 for d in days if d != nth(12))

        # status, human and --json, for the closing note.
        args = status_args(stack, tenant)
        capsys.readouterr()
        assert main([*args, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        signals = {d["date"]: d["signal"] for d in report["tenants"][0]["days"] if d["signal"]}
        assert signals == {str(nth(12)): "empty", str(nth(20)): "schemaChanged", str(nth(25)): "anomalous"}
        assert main([*args, "--history", "events"]) == 0
        human = capsys.readouterr().out
        with capsys.disabled():
            print(human)
            print(json.dumps(report["tenants"][0]["days"][11], indent=2))
        assert "  schema changed 2025-03-20: events (breaking)" in human
        assert "  empty 2025-03-12: landed with 0 rows" in human

        lineage = [e for e in receiver.received if e["job"]["name"] == f"export.{tenant}"]
        assert collections.Counter(e["eventType"] for e in lineage) == {"START": DAYS, "COMPLETE": DAYS}
        assert [lineage_errors(e) for e in lineage] == [[]] * (2 * DAYS)
        runs = collections.defaultdict(set)
        for event in lineage:
            runs[event["run"]["runId"]].add(event["eventType"])
        assert len(runs) == DAYS
        assert all(kinds == {"START", "COMPLETE"} for kinds in runs.values())
        day25 = next(
            e
            for e in lineage
            if e["eventType"] == "COMPLETE"
            and e["run"]["facets"]["nominalTime"]["nominalStartTime"].startswith(str(nth(25)))
        )
        outputs = {o["name"]: o for o in day25["outputs"]}
        assert sorted(outputs) == ["omborigrid/clients", "omborigrid/events", "omborigrid/sessions"]
        assert outputs["omborigrid/events"]["outputFacets"]["outputStatistics"]["rowCount"] == 20


class TestLineageOfAFailedExport:
    """With LineageEndpoint set, the AnnounceLineage function (deployed only then) turns "Export Failed" into the
    run's OpenLineage FAIL."""

    @pytest.fixture(scope="class")
    @classmethod
    def receiver(cls) -> Iterator[Receiver]:
        with lineage_receiver() as server:
            yield server

    @pytest.fixture(scope="class")
    @classmethod
    def stack(cls, module_simulator: Simulator, receiver: Receiver) -> Iterator[LocalStack]:
        local = start_stack(module_simulator, parameters={"LineageEndpoint": receiver.endpoint})
        try:
            yield local
        finally:
            local.close()

    def test_a_failed_job_sends_a_valid_fail_of_its_run(
        self, stack: LocalStack, sim: Simulator, tenant: str, receiver: Receiver
    ) -> None:
        """Given a job the API ends as failed, when its execution fails, then the receiver gets one FAIL of the
        export's run (no START: the transfer never began), valid, with the error and its sentence."""
        sim.configure(queue_seconds=0, processing_seconds=1, final_status="failed")
        request_day(stack, tenant)
        [execution] = stack.wait_for_executions(1, timeout=60, match=tenant)
        assert execution["status"] == "FAILED"
        [failed] = [e["detail"] for e in events_for(stack, tenant) if e["detail-type"] == "Export Failed"]
        wait_until(
            lambda: any(e["job"]["name"] == f"export.{tenant}" for e in receiver.received),
            timeout=30,
            what="the FAIL at the receiver",
        )
        [fail] = [e for e in receiver.received if e["job"]["name"] == f"export.{tenant}"]
        assert lineage_errors(fail) == []
        assert fail["eventType"] == "FAIL"
        assert fail["run"]["facets"]["errorMessage"]["message"] == f"{failed['error']}: {failed['message']}"
        assert fail["run"]["facets"]["nominalTime"]["nominalStartTime"] == f"{DAY}T00:00:00Z"
        assert stack.invocations("AnnounceLineageFunction") == 1


def _emitted(printed: str, metric: str) -> list[float]:
    """The values of ``metric`` in the EMF records the handlers printed (what CloudWatch turns into metrics)."""
    values: list[float] = []
    for line in printed.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        record = json.loads(line)
        value = record.get(metric, [])
        values.extend(value if isinstance(value, list) else [value])
    return values


@pytest.mark.slow
class TestThirtyDaysQuarantined:
    """The same backfill with ``SchemaChangePolicy=quarantine`` and a change that lasts one day (the source broke on
    day 20 and was put back): day 20 is judged before it is published and lands under ``_quarantine/`` only."""

    @pytest.fixture(scope="class")
    @classmethod
    def stack(cls, module_simulator: Simulator) -> Iterator[LocalStack]:
        local = start_stack(
            module_simulator,
            parameters={
                "MaxJobsInFlight": CAP,
                "PollInitialSeconds": 60,
                "PollMaxSeconds": 60,
                "SchemaChangePolicy": "quarantine",
            },
        )
        try:
            yield local
        finally:
            local.close()

    @pytest.mark.timeout(600)
    def test_day_20_is_quarantined_failed_and_alarmed_and_a_forced_re_export_lands_it(
        self,
        stack: LocalStack,
        sim: Simulator,
        tenant: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Given int1 retyped on day 20 only, when 30 days are requested at once under quarantine, then day 20 lands
        under _quarantine/ only and fails with the sentence, "Export Failed" (SchemaQuarantined), one "Schema
        Changed" saying where it is and the alarm's metric; days 21-30 land with no further change (day 20 never
        became the baseline); and a forced re-export of day 20 lands it under its table."""
        knobs: dict[str, Any] = {
            "queue_seconds": 0,
            "delivery": "zip",
            "rows_per_day": 400,
            "signals_tenant": tenant,
            "schema_change_from": nth(20).isoformat(),
            "schema_change_until": nth(20).isoformat(),
            "schema_change": "type",
            "empty_day": [nth(12).isoformat()],
            "volume_fraction": {nth(25).isoformat(): 0.05},
        }
        sim.configure(processing_seconds=30, **knobs)
        days = days_between(nth(1), nth(DAYS))
        started = time.monotonic()
        stack.deliver_export_requested(
            {"tenantIds": [tenant], "dataDateFrom": str(days[0]), "dataDateTo": str(days[-1]), "split": "daily"}
        )

        def states() -> collections.Counter[str]:
            return collections.Counter(e["state"]["S"] for e in ledger_entries(stack, tenant).values())

        wait_until(lambda: states() == {"LANDED": DAYS - 1, "FAILED": 1}, timeout=500, interval=1, what="29+1 days")
        stack.wait_for_executions(DAYS, timeout=120, match=tenant)
        elapsed = time.monotonic() - started

        events = events_for(stack, tenant)
        kinds = collections.Counter(e["detail-type"] for e in events)
        with capsys.disabled():
            print(f"\n30-day backfill under quarantine: {elapsed:.0f} s wall; events {dict(kinds)}")
        assert kinds == {"Export Completed": DAYS - 1, "Schema Changed": 1, "Export Anomalous": 1, "Export Failed": 1}
        assert assert_outcomes_valid(events) == DAYS + 2

        entry = ledger_entries(stack, tenant)[f"{nth(20)}/{nth(20)}"]
        assert entry["state"]["S"] == "FAILED"
        job = entry["jobId"]["S"]
        folder = f"omborigrid/_quarantine/tenant={tenant}/dt={nth(20)}/job={job}/"
        location = f"s3://{stack.bucket}/{folder}"
        [failed] = [e["detail"] for e in events if e["detail-type"] == "Export Failed"]
        assert (failed["dataDateFrom"], failed["error"], failed["jobId"]) == (str(nth(20)), "SchemaQuarantined", job)
        assert failed["message"] == (
            f"The export of tenant {tenant} for {nth(20)} was not published: the events table changed its schema on "
            f"{nth(20)}: int1 changed type from INT64 to BYTE_ARRAY (STRING) (breaking, against {nth(19)}); the file "
            f"was quarantined at {location} (nothing was written under the table); set SchemaChangePolicy=land or fix "
            "the source, then re-export the day with force."
        )
        assert entry["error"]["S"] == f"SchemaQuarantined: {failed['message']}"

        [changed] = [e["detail"] for e in events if e["detail-type"] == "Schema Changed"]
        assert (changed["dataDate"], changed["previousDataDate"]) == (str(nth(20)), str(nth(19)))
        assert (changed["compatibility"], changed["quarantinedAt"]) == ("breaking", location)
        assert changed["manifestKey"] == f"{folder}events/_{job}.manifest.json"
        assert f"the file was quarantined at {location}" in changed["message"]

        # Day 20: everything under _quarantine/ (members of the three tables and the manifest), nothing elsewhere.
        day20 = [k for k in object_keys(stack) if f"dt={nth(20)}/" in k or f"/{job}/" in k]
        assert sorted(day20) == [
            f"{folder}clients/part-0.parquet",
            f"{folder}events/_{job}.manifest.json",
            f"{folder}events/part-0.parquet",
            f"{folder}sessions/part-0.parquet",
        ]
        manifest = json.loads(read_object(stack, f"{folder}events/_{job}.manifest.json"))
        assert {f["key"] for f in manifest["files"]} == {k for k in day20 if k.endswith(".parquet")}
        landed = [k for k in object_keys(stack, "omborigrid/events/") if f"tenant={tenant}/" in k]
        assert len([k for k in landed if k.endswith(".parquet")]) == DAYS - 1
        # What the handlers printed (capsys holds it): the alarm's metric, once; the breaking change's, once.
        printed = capsys.readouterr().out
        assert _emitted(printed, "SchemaQuarantines") == [1.0]
        assert _emitted(printed, "BreakingSchemaChanges").count(1.0) == 1

        args = status_args(stack, tenant)
        assert main([*args, "--json"]) == 1  # a day shown has not landed
        report = json.loads(capsys.readouterr().out)
        assert main(args) == 1
        human = capsys.readouterr().out
        with capsys.disabled():
            print(human)
            print(json.dumps(report["tenants"][0]["days"][19], indent=2))
        by_day = {d["date"]: d for d in report["tenants"][0]["days"]}
        assert by_day[str(nth(20))]["state"] == "FAILED"
        assert {d: v["signal"] for d, v in by_day.items() if v["signal"]} == {
            str(nth(12)): "empty",
            str(nth(25)): "anomalous",
        }
        assert f"quarantined at {location}" in human

        # The operator accepts the change: a forced re-export lands day 20 under its table, announced as breaking.
        sim.configure(processing_seconds=1, **knobs)
        stack.deliver_export_requested(
            {"tenantIds": [tenant], "dataDateFrom": str(nth(20)), "dataDateTo": str(nth(20)), "force": True}
        )
        wait_until(lambda: states() == {"LANDED": DAYS}, timeout=120, interval=1, what="day 20 landed by force")
        stack.wait_for_executions(DAYS + 1, timeout=60, match=tenant)
        again = [e for e in events_for(stack, tenant) if e not in events]
        assert collections.Counter(e["detail-type"] for e in again) == {"Export Completed": 1, "Schema Changed": 1}
        [accepted] = [e["detail"] for e in again if e["detail-type"] == "Schema Changed"]
        assert (accepted["compatibility"], accepted["quarantinedAt"]) == ("breaking", None)
        # Two signals, two ids: a consumer deduplicating on id sees the quarantine and the accepted landing.
        assert changed["id"] == f"{accepted['id']}/quarantined/{job}"
        assert any(k.startswith(f"omborigrid/events/tenant={tenant}/dt={nth(20)}/") for k in object_keys(stack))
