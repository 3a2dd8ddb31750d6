"""catalog_check.py: a breaking change checked against the Glue table Athena reads the day through.

The Glue table is template.yaml's own CatalogEventsTable (its columns, the repo's one schema description), created
in moto's in-process Glue; the landed columns are those of real parquet files in the simulator's schemas.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from samtranslator.yaml_helper import yaml_parse

from omborigrid_export.catalog_check import Catalog, athena_type, conflicts_with
from omborigrid_export.lake_facts import LakeFacts
from omborigrid_export.lake_signals import observe
from omborigrid_export.proof import Column
from omborigrid_export.volume import VolumeRule
from tests.lake_samples import NORMAL, RETYPED, manifest, simulator_events_columns
from tests.ledger_table import create_ledger_table

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
DATABASE = "omborigrid_export"


def template_columns(table: str) -> list[dict[str, str]]:
    resources = yaml_parse(TEMPLATE.read_text(encoding="utf-8"))["Resources"]
    [props] = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Glue::Table" and r["Properties"]["TableInput"]["Name"] == table
    ]
    columns: list[dict[str, str]] = props["TableInput"]["StorageDescriptor"]["Columns"]
    return [{"Name": c["Name"], "Type": c["Type"]} for c in columns]


@pytest.fixture
def glue() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("glue", region_name="eu-west-1")
        client.create_database(DatabaseInput={"Name": DATABASE})
        client.create_table(
            DatabaseName=DATABASE,
            TableInput={"Name": "events", "StorageDescriptor": {"Columns": template_columns("events")}},
        )
        yield client


def test_the_simulators_columns_read_as_the_catalog_declares_them() -> None:
    declared = [(c["Name"], c["Type"]) for c in template_columns("events")]
    assert conflicts_with(simulator_events_columns(), declared) == ()
    assert conflicts_with(simulator_events_columns("add"), declared) == ()


def test_given_int1_landing_as_a_string_then_it_conflicts_with_the_catalogs_bigint(glue: Any) -> None:
    check = Catalog(glue, DATABASE).check("events", simulator_events_columns("type"))
    assert check.checked
    assert [c.to_dict() for c in check.conflicts] == [
        {"column": "int1", "landedType": "string", "catalogType": "bigint"}
    ]


def test_given_no_such_table_or_no_access_then_not_checked_with_the_reason(glue: Any) -> None:
    check = Catalog(glue, DATABASE).check("sessions", NORMAL)
    assert (check.checked, check.reason) == (False, "the catalog has no such table")
    assert Catalog(glue, "no_such_database").check("events", NORMAL).reason == "the catalog has no such table"
    denied = Catalog(Denied(), DATABASE).check("events", NORMAL)
    assert denied.checked is False
    assert denied.reason is not None
    assert denied.reason.startswith("the Glue table could not be read: ")
    assert "AccessDeniedException" in denied.reason


class Denied:
    def get_table(self, **kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetTable")


@pytest.mark.parametrize(
    ("physical", "logical", "expected"),
    [
        ("INT64", None, "bigint"),
        ("INT32", None, "int"),
        ("INT32", "INT(16,true)", "smallint"),
        ("INT64", "TIMESTAMP(MICROS,UTC)", "timestamp"),
        ("BYTE_ARRAY", "STRING", "string"),
        ("INT32", "DATE", "date"),
        ("DOUBLE", None, "double"),
        ("BOOLEAN", None, "boolean"),
        ("FIXED_LEN_BYTE_ARRAY", "DECIMAL(10,2)", None),
    ],
)
def test_athena_types(physical: str, logical: str | None, expected: str | None) -> None:
    assert athena_type(Column("c", physical, logical, "OPTIONAL")) == expected


def test_a_breaking_change_announced_with_the_catalog_on_carries_the_conflict(glue: Any) -> None:
    dynamodb = boto3.client("dynamodb", region_name="eu-west-1")
    store = LakeFacts(dynamodb, create_ledger_table(dynamodb, "ledger"))
    catalog = Catalog(glue, DATABASE)
    observe(manifest(_day(1), 100, NORMAL, archive=True), store, VolumeRule(), catalog)
    signals = observe(manifest(_day(2), 100, RETYPED, archive=True), store, VolumeRule(), catalog)
    changes = {c.fact.table: c.to_detail() for c in signals.schema_changes}
    assert changes["events"]["catalog"]["conflicts"] == [
        {"column": "int1", "landedType": "string", "catalogType": "bigint"}
    ]
    assert changes["events"]["message"].endswith(
        "Athena reads it through omborigrid_export.events, where int1 is string, the table says bigint."
    )
    assert changes["sessions"]["catalog"] == {
        "database": DATABASE,
        "table": "sessions",
        "checked": False,
        "conflicts": [],
        "reason": "the catalog has no such table",
    }


def _day(n: int) -> date:
    return date(2026, 1, n)
