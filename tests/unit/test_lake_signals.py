"""lake_facts.py and lake_signals.py: each landing's facts kept in the ledger table, judged, and announced.

The ledger table runs on moto's in-process DynamoDB (``mock_aws`` patches botocore; no socket is opened); the
columns are those of real parquet files in the simulator's schemas (``tests/lake_columns.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from jsonschema import Draft202012Validator
from moto import mock_aws

from omborigrid_export.errors import ConfigurationError, LedgerError, TransferFailed
from omborigrid_export.lake_facts import LakeFacts, facts_of
from omborigrid_export.lake_signals import (
    EXPORT_ANOMALOUS,
    SCHEMA_CHANGED,
    LandingReport,
    SignalSettings,
    observe,
    publish,
)
from omborigrid_export.ledger import PENDING, Ledger
from omborigrid_export.manifest import Manifest, ManifestFile
from omborigrid_export.models import ExportRequest
from omborigrid_export.volume import Baseline, VolumeRule
from tests.lake_samples import DAY1, NORMAL, RETYPED, manifest
from tests.ledger_table import create_ledger_table

TABLE = "export-ledger"
RULE = VolumeRule(history_days=14, min_history=7)


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        create_ledger_table(client, TABLE)
        yield client


@pytest.fixture
def store(dynamodb: Any) -> LakeFacts:
    return LakeFacts(dynamodb, TABLE)


def day(n: int) -> date:
    return DAY1 + timedelta(days=n - 1)


def test_given_a_landing_then_its_fact_is_kept_and_read_back_whole(store: LakeFacts) -> None:
    signals = observe(manifest(DAY1, 1234), store, RULE)
    [fact] = store.between("t1", DAY1, DAY1)
    assert fact == signals.facts[0]
    assert (fact.table, fact.day, fact.rows, fact.bytes, fact.files) == ("export", DAY1, 1234, 2234, 1)
    assert fact.schema_fingerprint == "sha256:" + "a" * 64
    assert fact.columns == NORMAL
    assert (fact.event_time_min, fact.event_time_max) == ("2026-01-01T00:00:01Z", "2026-01-01T23:59:58Z")
    assert fact.volume == "noBaseline"
    assert fact.schema_change is None


def test_facts_live_beside_the_ledger_without_meeting_its_queries(dynamodb: Any, store: LakeFacts) -> None:
    ledger = Ledger(dynamodb, TABLE)
    ledger.plan(ExportRequest("t1", DAY1, DAY1))
    observe(manifest(DAY1, 10), store, RULE)
    assert [e.request.date_from for e in ledger.entries("t1", DAY1, day(31))] == [DAY1]
    assert [e.request.date_from for e in ledger.in_state(PENDING)] == [DAY1]
    assert len(store.between("t1", DAY1, day(31))) == 1


def test_given_an_archive_then_one_fact_per_table_and_day(store: LakeFacts) -> None:
    observe(manifest(DAY1, 50, archive=True), store, RULE)
    facts = store.between("t1", DAY1, DAY1)
    assert sorted(f.table for f in facts) == ["events", "sessions"]
    assert all(f.rows == 50 and f.files == 1 for f in facts)


def test_given_no_proof_then_the_fact_is_kept_but_not_judged(store: LakeFacts) -> None:
    signals = observe(manifest(DAY1, None), store, RULE)
    [fact] = store.between("t1", DAY1, DAY1)
    assert (fact.rows, fact.schema_fingerprint, fact.volume) == (None, None, None)
    assert signals.events() == []


def backfill(store: LakeFacts, rows: dict[int, int], retyped_from: int, days: range) -> dict[int, Any]:
    return {
        n: observe(manifest(day(n), rows.get(n, 1000), RETYPED if n >= retyped_from else NORMAL), store, RULE)
        for n in days
    }


def test_given_the_issues_30_days_then_one_schema_change_one_empty_day_one_anomaly(store: LakeFacts) -> None:
    """Day 20 retyped, day 12 empty, day 25 at 5 %: exactly those three signals, on those days."""
    signals = backfill(store, {12: 0, 25: 50}, 20, range(1, 31))
    changes = [(n, c) for n, s in signals.items() for c in s.schema_changes]
    anomalies = [(n, a) for n, s in signals.items() for a in s.anomalies]
    empties = [n for n, s in signals.items() if s.empty_days]
    assert [n for n, _ in changes] == [20]
    assert [n for n, _ in anomalies] == [25]
    assert empties == [12]
    change = changes[0][1].to_detail()
    assert change["compatibility"] == "breaking"
    assert change["previousDataDate"] == "2026-01-19"
    assert [c["column"] for c in change["diff"]["typeChanged"]] == ["int1"]
    assert change["message"] == (
        "The export table of tenant t1 changed its schema on 2026-01-20 (breaking, against 2026-01-19): "
        "int1 changed type from INT64 to BYTE_ARRAY (STRING)."
    )
    anomaly = signals[25].anomalous_detail()
    assert anomaly is not None
    [table] = anomaly["tables"]
    assert (table["table"], table["dataDate"]) == ("export", "2026-01-25")
    assert table["volume"]["verdict"] == "low"
    assert table["volume"]["ratio"] == 0.05
    assert table["volume"]["baselineDays"] == 14
    assert anomaly["id"] == "t1/2026-01-25/2026-01-25/job-2026-01-25/volume"
    assert anomaly["message"] == (
        "The export of tenant t1 for 2026-01-25 landed an unusual volume: export: 2026-01-25 landed 50 rows, 5% of "
        "the usual volume; the median of the last 14 landed days is 1000 rows."
    )
    verdicts = {f.day.day: f.volume for f in store.between("t1", DAY1, day(30))}
    assert [n for n, v in verdicts.items() if v == "noBaseline"] == [1, 2, 3, 4, 5, 6, 7]
    assert (verdicts[12], verdicts[25]) == ("empty", "low")
    assert {v for n, v in verdicts.items() if n not in (12, 25) and n > 7} == {"normal"}


def test_given_days_landing_out_of_order_then_each_is_judged_against_earlier_days_only(store: LakeFacts) -> None:
    # Day 25 first (nothing before it: no verdict), then days 1..24: no alarm on the backfill's first days.
    first = backfill(store, {25: 50}, 99, range(25, 26))
    rest = backfill(store, {25: 50}, 99, range(1, 25))
    assert first[25].anomalies == ()
    assert all(s.anomalies == () for s in rest.values())


def test_given_a_forced_relanding_then_the_fact_is_replaced(store: LakeFacts) -> None:
    observe(manifest(DAY1, 10), store, RULE)
    observe(manifest(DAY1, 20), store, RULE)
    assert [f.rows for f in store.between("t1", DAY1, DAY1)] == [20]


def test_given_history_then_before_returns_the_last_days_of_that_table_newest_first(store: LakeFacts) -> None:
    for n in range(1, 6):
        observe(manifest(day(n), n, archive=True), store, RULE)
    found = store.before("t1", "sessions", day(5), limit=3)
    assert [(f.table, f.day.day) for f in found] == [("sessions", 4), ("sessions", 3), ("sessions", 2)]


class RecordingEvents:
    def __init__(self, failed: int = 0) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.failed = failed

    def put_events(self, *, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        return {"FailedEntryCount": self.failed, "Entries": []}


def test_publish_puts_each_signal_on_the_bus_in_batches_of_ten(store: LakeFacts) -> None:
    signals = backfill(store, {12: 0, 25: 50}, 20, range(1, 31))
    events = RecordingEvents()
    assert publish(events, "bus", signals[20]) == 1  # type: ignore[arg-type]
    [[entry]] = events.calls
    assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == ("omborigrid.export", SCHEMA_CHANGED, "bus")
    assert json.loads(entry["Detail"])["dataDate"] == "2026-01-20"
    assert publish(events, "bus", signals[25]) == 1  # type: ignore[arg-type]
    assert events.calls[-1][0]["DetailType"] == EXPORT_ANOMALOUS
    assert publish(events, "bus", signals[11]) == 0  # type: ignore[arg-type]
    assert len(events.calls) == 2


def test_given_the_bus_refuses_an_entry_then_transfer_failed_saying_so(store: LakeFacts) -> None:
    signals = backfill(store, {}, 2, range(1, 3))
    with pytest.raises(TransferFailed, match="refused 1 of the landing's 1 signal events"):
        publish(RecordingEvents(failed=1), "bus", signals[2])  # type: ignore[arg-type]


def test_given_a_missing_table_then_a_ledger_error_naming_what_was_done(dynamodb: Any) -> None:
    with pytest.raises(LedgerError, match="could not read the history of t1 export before 2026-01-01"):
        observe(manifest(DAY1, 1), LakeFacts(dynamodb, "no-such-table"), RULE)


def test_signal_settings_from_the_environment() -> None:
    settings = SignalSettings.from_env(
        {
            "EVENT_BUS_NAME": "bus",
            "ANOMALY_HISTORY_DAYS": "21",
            "ANOMALY_MIN_HISTORY_DAYS": "10",
            "ANOMALY_LOW_RATIO": "0.2",
            "ANOMALY_HIGH_RATIO": "5",
            "ANOMALY_BASELINE": "same-weekday",
            "ALERT_ON_EMPTY_DAY": "true",
            "ANOMALY_MIN_ROWS": "0",
        }
    )
    assert settings.event_bus == "bus"
    assert settings.rule == VolumeRule(
        history_days=21,
        min_history=10,
        low_ratio=0.2,
        high_ratio=5.0,
        baseline=Baseline.SAME_WEEKDAY,
        alert_on_empty=True,
        min_rows=0,
    )
    assert SignalSettings.from_env({}).rule == VolumeRule()
    assert SignalSettings.from_env({}).event_bus is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ANOMALY_LOW_RATIO", "low", "ANOMALY_LOW_RATIO must be a number"),
        ("ANOMALY_HISTORY_DAYS", "7.5", "whole numbers"),
        ("ANOMALY_BASELINE", "weekly", "all-days or same-weekday"),
        ("ALERT_ON_EMPTY_DAY", "yes", "true or false"),
    ],
)
def test_signal_settings_refuse_bad_values(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SignalSettings.from_env({name: value})


def test_facts_of_an_unproven_archive_member_leave_rows_unknown() -> None:
    m = manifest(DAY1, 5, archive=True)
    files = (m.files[0], ManifestFile(**{**{f: getattr(m.files[1], f) for f in m.files[1].__slots__}, "proof": None}))
    mixed = Manifest(**{**{f: getattr(m, f) for f in m.__slots__}, "files": files})
    by_table = {f.table: f for f in facts_of(mixed)}
    assert by_table["events"].rows == 5
    assert (by_table["sessions"].rows, by_table["sessions"].schema_fingerprint) == (None, None)


def schema(name: str) -> Draft202012Validator:
    document = json.loads((Path(__file__).parents[2] / "schemas" / name).read_text())
    Draft202012Validator.check_schema(document)
    return Draft202012Validator(document, format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_the_events_details_are_valid_against_their_schemas_and_the_schemas_refuse_a_wrong_one(
    store: LakeFacts,
) -> None:
    signals = backfill(store, {12: 0, 25: 50}, 20, range(1, 31))
    changed, anomalous = schema("schema-changed.schema.json"), schema("export-anomalous.schema.json")
    [(kind, change)] = signals[20].events()
    assert kind == SCHEMA_CHANGED
    changed.validate(change)
    [(kind, anomaly)] = signals[25].events()
    assert kind == EXPORT_ANOMALOUS
    anomalous.validate(anomaly)
    assert not changed.is_valid({**change, "compatibility": "maybe"})
    assert not anomalous.is_valid({k: v for k, v in anomaly.items() if k != "id"})
    alerting = VolumeRule(history_days=14, min_history=7, alert_on_empty=True)
    empty = observe(manifest(day(12), 0), store, alerting).anomalous_detail()
    assert empty is not None
    anomalous.validate(empty)
    assert [t["volume"]["verdict"] for t in empty["tables"]] == ["empty"]


def test_given_an_archive_whose_tables_all_fall_then_one_export_anomalous_lists_them(store: LakeFacts) -> None:
    for n in range(1, 8):
        observe(manifest(day(n), 1000, archive=True), store, RULE)
    signals = observe(manifest(day(8), 10, archive=True), store, RULE)
    assert [kind for kind, _ in signals.events()] == [EXPORT_ANOMALOUS]
    detail = signals.anomalous_detail()
    assert detail is not None
    assert [t["table"] for t in detail["tables"]] == ["events", "sessions"]
    assert LandingReport(signals=signals, announced=1, lineage_sent=None).metrics() == {
        "SchemaChanges": 0,
        "BreakingSchemaChanges": 0,
        "VolumeAnomalies": 1,
        "EmptyDays": 0,
    }


def test_given_the_changed_days_landing_out_of_order_then_the_change_is_announced_once_and_marked_first(
    store: LakeFacts,
) -> None:
    """Days 1..19 landed; day 21 (retyped) lands before day 20 (retyped): day 21 announces the change against day 19;
    day 20 then finds it announced, does not announce it again, and takes the mark (the first day of the schema)."""
    backfill(store, {}, 20, range(1, 20))
    [on_21] = backfill(store, {}, 20, range(21, 22))[21].schema_changes
    assert on_21.previous.day == day(19)
    assert backfill(store, {}, 20, range(20, 21))[20].schema_changes == ()
    marks = {f.day.day: f.schema_change for f in store.between("t1", day(19), day(21))}
    assert marks == {19: None, 20: "breaking", 21: None}
    assert backfill(store, {}, 20, range(22, 23))[22].schema_changes == ()
