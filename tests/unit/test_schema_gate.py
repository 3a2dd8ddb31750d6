"""schema_gate.py and the quarantine's signals: which proven files are held back before publication, what the day's
failure says, and that a quarantined day never becomes the baseline.

The history is the ledger table's facts on moto's in-process DynamoDB; the columns are those of real parquet files
in the simulator's schemas (``tests/lake_samples.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from omborigrid_export.catalog_check import Catalog
from omborigrid_export.errors import ConfigurationError
from omborigrid_export.function_settings import DownloadSettings
from omborigrid_export.lake_facts import LakeFacts
from omborigrid_export.lake_signals import (
    SCHEMA_CHANGED,
    LandingReport,
    judge_quarantined,
    observe,
    quarantine_sentence,
)
from omborigrid_export.layout import QUARANTINE_DIR, quarantine_folder, quarantine_layout
from omborigrid_export.proof import CheckResult, Column, Proof
from omborigrid_export.schema_gate import BreakingSchema, SchemaGate, gate_for
from omborigrid_export.settings import SchemaChangePolicy, Settings
from omborigrid_export.volume import VolumeRule
from tests.lake_samples import DAY1, NORMAL, RETYPED, manifest
from tests.ledger_table import create_ledger_table

TABLE = "export-ledger"
RULE = VolumeRule(history_days=14, min_history=7)
ADDED = (*NORMAL, Column("str6", "BYTE_ARRAY", "STRING", "OPTIONAL"))
LOCATION = "s3://lake-bucket/lake/_quarantine/tenant=t1/dt=2026-01-20/job=job-2026-01-20/"


@pytest.fixture
def store() -> Iterator[LakeFacts]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        create_ledger_table(client, TABLE)
        yield LakeFacts(client, TABLE)


def day(n: int) -> date:
    return DAY1 + timedelta(days=n - 1)


def proof_of(columns: tuple[Column, ...], fingerprint: str) -> Proof:
    return Proof(
        rows=10,
        row_groups=1,
        schema_fingerprint=fingerprint,
        columns=columns,
        created_by=None,
        event_time_min=None,
        event_time_max=None,
        tenant_ids=("t1",),
        checks={"footer": CheckResult.PASSED},
    )


RETYPED_PROOF = proof_of(RETYPED, "sha256:" + "b" * 64)


class CatalogTables:
    """Glue's get_table for one database: the columns each table declares (what Athena reads)."""

    def __init__(self, **tables: list[tuple[str, str]]) -> None:
        self.tables = tables
        self.asked: list[str] = []

    def get_table(self, *, DatabaseName: str, Name: str) -> dict[str, Any]:
        self.asked.append(f"{DatabaseName}.{Name}")
        if Name not in self.tables:
            raise ClientError({"Error": {"Code": "EntityNotFoundException", "Message": "no"}}, "GetTable")
        columns = [{"Name": n, "Type": t} for n, t in self.tables[Name]]
        return {"Table": {"StorageDescriptor": {"Columns": columns}}}


def landed_days(store: LakeFacts, days: range) -> None:
    for n in days:
        observe(manifest(day(n), 1000), store, RULE)


# ------------------------------------------------------------------------------------------------ the decision
def test_given_no_earlier_day_or_the_same_schema_then_nothing_is_held(store: LakeFacts) -> None:
    gate = SchemaGate(store)
    assert gate.judge("t1", "export", day(1), RETYPED_PROOF) is None  # nothing to compare with
    landed_days(store, range(1, 3))
    assert gate.judge("t1", "export", day(3), proof_of(NORMAL, "sha256:" + "a" * 64)) is None


def test_given_a_retyped_column_then_it_is_held_with_what_changed(store: LakeFacts) -> None:
    landed_days(store, range(1, 20))
    held = SchemaGate(store).judge("t1", "export", day(20), RETYPED_PROOF)
    assert held is not None
    assert (held.table, held.day, held.previous.day, held.catalog) == ("export", day(20), day(19), None)
    assert held.describe() == (
        "the export table changed its schema on 2026-01-20 against 2026-01-19: int1 changed type from INT64 to "
        "BYTE_ARRAY (STRING) (breaking)"
    )


def test_given_an_added_column_then_it_lands(store: LakeFacts) -> None:
    landed_days(store, range(1, 3))
    assert SchemaGate(store).judge("t1", "export", day(3), proof_of(ADDED, "sha256:" + "c" * 64)) is None


def test_the_gate_compares_with_the_days_before_only_and_per_table(store: LakeFacts) -> None:
    """A later day landed first (a backfill) is not the baseline; another table's history is not either."""
    landed_days(store, range(1, 3))
    observe(manifest(day(5), 1000, RETYPED), store, RULE)
    gate = SchemaGate(store)
    assert gate.judge("t1", "export", day(3), RETYPED_PROOF) is not None
    assert gate.judge("t1", "events", day(3), RETYPED_PROOF) is None
    assert gate.judge("t2", "export", day(3), RETYPED_PROOF) is None


def test_with_the_catalog_an_additive_change_at_odds_with_the_table_is_held(store: LakeFacts) -> None:
    """The files agree with each other, the catalog's table does not (it says int1 is a string): Athena would fail."""
    landed_days(store, range(1, 3))
    glue = CatalogTables(export=[("int1", "string"), ("str6", "string")])
    held = SchemaGate(store, Catalog(glue, "lake_db")).judge(
        "t1", "export", day(3), proof_of(ADDED, "sha256:" + "c" * 64)
    )
    assert held is not None
    assert not held.diff.is_breaking
    assert held.describe().endswith(
        "str6 was added (BYTE_ARRAY (STRING), OPTIONAL) (additive); in the catalog table lake_db.export, int1 is "
        "bigint, the table says string"
    )
    agreeing = CatalogTables(export=[("int1", "bigint")])
    assert SchemaGate(store, Catalog(agreeing, "lake_db")).judge("t1", "export", day(3), proof_of(ADDED, "x")) is None
    assert agreeing.asked == ["lake_db.export"]


class FixedProver:
    max_tail_bytes = 4096

    def __init__(self, proof: Proof) -> None:
        self.proof = proof

    def tail_length(self, size: int, last8: bytes) -> int:
        return min(size, 100 + len(last8))

    def prove(self, tail: bytes, size: int) -> Proof:
        return self.proof


def test_a_guarded_prover_proves_as_before_and_raises_on_a_breaking_schema(store: LakeFacts) -> None:
    landed_days(store, range(1, 20))
    gate = SchemaGate(store)
    same = gate.guard(FixedProver(proof_of(NORMAL, "sha256:" + "a" * 64)), tenant_id="t1", table="export", day=day(20))
    assert (same.max_tail_bytes, same.tail_length(1000, b"12345678")) == (4096, 108)
    assert same.prove(b"", 1000).rows == 10
    retyped = gate.guard(FixedProver(RETYPED_PROOF), tenant_id="t1", table="export", day=day(20))
    with pytest.raises(BreakingSchema, match="int1 changed type") as raised:
        retyped.prove(b"", 1000)
    assert raised.value.change.previous.day == day(19)


# ------------------------------------------------------------------------------------------------ the policy
@pytest.mark.parametrize(
    ("text", "policy"),
    [("", SchemaChangePolicy.LAND), ("land", SchemaChangePolicy.LAND), (" Quarantine ", SchemaChangePolicy.QUARANTINE)],
)
def test_the_policy_is_parsed(text: str, policy: SchemaChangePolicy) -> None:
    assert SchemaChangePolicy.parse(text) is policy


def test_a_bad_policy_is_refused_naming_the_setting_and_the_choices() -> None:
    with pytest.raises(ConfigurationError, match=r"^SCHEMA_CHANGE_POLICY must be land or quarantine, not 'hold'"):
        SchemaChangePolicy.parse("hold")
    with pytest.raises(ConfigurationError, match="SCHEMA_CHANGE_POLICY must be land or quarantine"):
        Settings.from_env({"SCHEMA_CHANGE_POLICY": "strict"})


def test_the_cli_reads_the_variable_the_download_function_reads() -> None:
    """The CLI takes SCHEMA_CHANGE_POLICY like its other settings (optional, land when unset); the Download function
    requires it (template.yaml sets it: tests/unit/test_settings.py)."""
    assert Settings.from_env({}).schema_change_policy is SchemaChangePolicy.LAND
    chosen = Settings.from_env({"SCHEMA_CHANGE_POLICY": "quarantine"})
    assert chosen.schema_change_policy is SchemaChangePolicy.QUARANTINE
    declared = {v.name for v in DownloadSettings.VARIABLES if v.required}
    assert "SCHEMA_CHANGE_POLICY" in declared


def test_only_quarantine_makes_a_gate(store: LakeFacts) -> None:
    assert gate_for(SchemaChangePolicy.LAND, store) is None
    assert isinstance(gate_for(SchemaChangePolicy.QUARANTINE, store), SchemaGate)


def test_the_quarantine_is_outside_every_table_and_keeps_tenant_day_and_job() -> None:
    key = quarantine_layout("lake").key_for(
        tenant_id="t1", date_from=day(20), date_to=day(20), job_id="j1", filename="part-0.parquet", table="events"
    )
    assert key == f"lake/{QUARANTINE_DIR}/tenant=t1/dt=2026-01-20/job=j1/events/part-0.parquet"
    assert key.startswith(quarantine_folder("lake", tenant_id="t1", day=day(20), job_id="j1"))
    assert (
        quarantine_folder("", tenant_id="t1", day=day(20), job_id="j1") == "_quarantine/tenant=t1/dt=2026-01-20/job=j1/"
    )


# ------------------------------------------------------------------------------------------------ the signals
def test_a_quarantined_day_is_announced_but_never_becomes_the_baseline(store: LakeFacts) -> None:
    """Day 20 held back: its Schema Changed says where it is, nothing is kept, so day 21 (the old schema again)
    lands as no change at all, and the day's failure says what changed and what to do."""
    landed_days(store, range(1, 20))
    held = manifest(day(20), 1000, RETYPED)
    signals = judge_quarantined(held, store, LOCATION)
    assert store.between("t1", day(20), day(20)) == []
    [(kind, detail)] = signals.events()
    assert (kind, detail["quarantinedAt"], detail["compatibility"]) == (SCHEMA_CHANGED, LOCATION, "breaking")
    assert detail["message"].endswith(f"SchemaChangePolicy is quarantine: the file was quarantined at {LOCATION}.")
    assert detail["id"] == f"t1/export/2026-01-20/schema/sha256:{'b' * 64}/quarantined/job-2026-01-20"
    assert quarantine_sentence(signals, LOCATION) == (
        "The export of tenant t1 for 2026-01-20 was not published: the export table changed its schema on 2026-01-20: "
        "int1 changed type from INT64 to BYTE_ARRAY (STRING) (breaking, against 2026-01-19); the file was quarantined "
        f"at {LOCATION} (nothing was written under the table); set SchemaChangePolicy=land or fix the source, then "
        "re-export the day with force."
    )
    counts = {"SchemaChanges": 1, "BreakingSchemaChanges": 1, "VolumeAnomalies": 0, "EmptyDays": 0}
    assert LandingReport(signals=signals, announced=1, lineage_sent=None).metrics() == counts
    held_report = LandingReport(signals=signals, announced=1, lineage_sent=None, quarantined=True)
    assert held_report.metrics() == {**counts, "SchemaQuarantines": 1}
    next_day = observe(manifest(day(21), 1000), store, RULE)
    assert next_day.events() == []


def test_a_quarantined_archive_names_each_changed_table_and_without_history_still_says_where(
    store: LakeFacts,
) -> None:
    """Every table that broke is in the sentence; with no change left to show (nothing landed before), the sentence
    still says that the day was held back and where the files are."""
    observe(manifest(day(1), 1000, archive=True), store, RULE)
    signals = judge_quarantined(manifest(day(2), 1000, RETYPED, archive=True), store, LOCATION)
    assert [c.fact.table for c in signals.schema_changes] == ["events", "sessions"]
    sentence = quarantine_sentence(signals, LOCATION)
    assert "the events table changed its schema on 2026-01-02: int1 changed type" in sentence
    assert "; the sessions table changed its schema on 2026-01-02: int1 changed type" in sentence
    assert [f.day for f in store.between("t1", day(1), day(2))] == [day(1), day(1)]
    alone = judge_quarantined(manifest(day(2), 10, RETYPED, tenant="t2"), store, LOCATION)
    assert alone.schema_changes == ()
    assert quarantine_sentence(alone, LOCATION).startswith(
        "The export of tenant t2 for 2026-01-02 was not published: the schema of its files broke with the days landed "
        f"before 2026-01-02; the file was quarantined at {LOCATION}"
    )
