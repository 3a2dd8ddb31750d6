"""schema_diff.py: what changed between two days' schemas, classified additive or breaking."""

from __future__ import annotations

import pytest

from omborigrid_export.errors import IntegrityError
from omborigrid_export.proof import Column
from omborigrid_export.schema_diff import ChangeKind, Compatibility, columns_from_dicts, diff_schemas
from tests.lake_samples import simulator_events_columns


def col(path: str, physical: str = "INT64", logical: str | None = None, repetition: str = "OPTIONAL") -> Column:
    return Column(path, physical, logical, repetition)


def test_given_the_simulators_type_change_then_one_breaking_type_change_of_int1() -> None:
    diff = diff_schemas(simulator_events_columns(), simulator_events_columns("type"))
    assert [(c.path, c.kind) for c in diff.changes] == [("int1", ChangeKind.TYPE_CHANGED)]
    assert diff.compatibility is Compatibility.BREAKING
    assert diff.describe() == "int1 changed type from INT64 to BYTE_ARRAY (STRING)"
    detail = diff.to_dict()
    assert detail["typeChanged"][0]["before"]["physicalType"] == "INT64"
    assert detail["typeChanged"][0]["after"] == {
        "path": "int1",
        "physicalType": "BYTE_ARRAY",
        "logicalType": "STRING",
        "repetition": "OPTIONAL",
    }
    assert detail["added"] == detail["removed"] == detail["repetitionChanged"] == []


def test_given_the_simulators_added_column_then_additive() -> None:
    diff = diff_schemas(simulator_events_columns(), simulator_events_columns("add"))
    assert [(c.path, c.kind) for c in diff.changes] == [("str6", ChangeKind.ADDED)]
    assert diff.compatibility is Compatibility.ADDITIVE
    assert not diff.is_breaking
    assert diff.describe() == "str6 was added (BYTE_ARRAY (STRING), OPTIONAL)"


def test_given_a_removed_column_then_breaking_and_listed_after_the_others() -> None:
    diff = diff_schemas([col("a"), col("b"), col("c")], [col("a"), col("c"), col("d")])
    assert [(c.path, c.kind) for c in diff.changes] == [("d", ChangeKind.ADDED), ("b", ChangeKind.REMOVED)]
    assert diff.is_breaking
    assert [c.compatibility for c in diff.changes] == [Compatibility.ADDITIVE, Compatibility.BREAKING]


@pytest.mark.parametrize(
    ("before", "after", "compatibility"),
    [
        ("REQUIRED", "OPTIONAL", Compatibility.ADDITIVE),
        ("OPTIONAL", "REQUIRED", Compatibility.BREAKING),
        ("OPTIONAL", "REPEATED", Compatibility.BREAKING),
    ],
)
def test_given_a_repetition_change_then_only_relaxing_to_optional_is_additive(
    before: str, after: str, compatibility: Compatibility
) -> None:
    diff = diff_schemas([col("a", repetition=before)], [col("a", repetition=after)])
    assert [c.kind for c in diff.changes] == [ChangeKind.REPETITION_CHANGED]
    assert diff.compatibility is compatibility
    assert diff.describe() == f"a changed from {before} to {after}"


def test_given_only_a_logical_type_change_then_a_breaking_type_change() -> None:
    diff = diff_schemas([col("ts", logical="TIMESTAMP(MICROS,UTC)")], [col("ts", logical=None)])
    assert [c.kind for c in diff.changes] == [ChangeKind.TYPE_CHANGED]
    assert diff.is_breaking


def test_given_the_same_columns_in_another_order_then_no_change() -> None:
    assert diff_schemas([col("a"), col("b")], [col("b"), col("a")]).changes == ()


def test_columns_round_trip_through_their_dicts_and_bad_ones_are_integrity_errors() -> None:
    columns = simulator_events_columns("type")
    assert columns_from_dicts(c.to_dict() for c in columns) == columns
    with pytest.raises(IntegrityError, match="lacks its path"):
        columns_from_dicts([{"path": "a", "physicalType": "INT64"}])
