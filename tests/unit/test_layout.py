"""layout.py: S3 keys from a template, never outside the prefix, never ambiguous."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from omborigrid_export.errors import ConfigurationError, InvalidInput
from omborigrid_export.layout import DEFAULT_KEY_TEMPLATE, KeyLayout, archive_manifest_key, manifest_key_for

TENANT = "621e1fc633350f0007637a0c"
FILENAME = "analytics_2026-01-02.parquet"


def key(layout: KeyLayout, **overrides: Any) -> str:
    values: dict[str, Any] = {
        "tenant_id": TENANT,
        "date_from": date(2026, 1, 2),
        "date_to": date(2026, 1, 3),
        "job_id": "job-1",
        "filename": FILENAME,
    }
    values.update(overrides)
    return layout.key_for(**values)


def test_given_default_layout_with_prefix_when_key_then_hive_style_partition() -> None:
    assert key(KeyLayout(prefix="raw/omborigrid")) == f"raw/omborigrid/tenant={TENANT}/dt=2026-01-02/{FILENAME}"


def test_given_no_prefix_when_key_then_no_leading_slash() -> None:
    result = key(KeyLayout())
    assert result == f"tenant={TENANT}/dt=2026-01-02/{FILENAME}"
    assert not result.startswith("/")


@pytest.mark.parametrize("prefix", ["/raw/omborigrid/", "raw/omborigrid/", "/raw/omborigrid", "///raw/omborigrid//"])
def test_given_prefix_with_outer_slashes_when_layout_built_then_normalised(prefix: str) -> None:
    layout = KeyLayout(prefix=prefix)
    assert layout.prefix == "raw/omborigrid"
    assert key(layout).startswith("raw/omborigrid/tenant=")


@pytest.mark.parametrize("prefix", ["/", "//"])
def test_given_prefix_of_only_slashes_when_layout_built_then_empty(prefix: str) -> None:
    assert KeyLayout(prefix=prefix).prefix == ""


@pytest.mark.parametrize(
    "prefix", ["raw//omborigrid", "raw/../x", "./raw", "raw/.", "raw data", "raw?x", "raw\\x", "é"]
)
def test_given_unsafe_prefix_when_layout_built_then_configuration_error(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        KeyLayout(prefix=prefix)


def test_given_template_with_every_placeholder_when_key_then_all_substituted() -> None:
    layout = KeyLayout(
        prefix="p",
        template="{prefix}/{table}/{tenantId}/{dataDateFrom}_{dataDateTo}/{jobId}/{filename}",
    )
    assert key(layout, table="visits") == f"p/visits/{TENANT}/2026-01-02_2026-01-03/job-1/{FILENAME}"


def test_given_default_table_when_template_uses_it_then_export() -> None:
    layout = KeyLayout(template="{table}/{tenantId}/{filename}")
    assert key(layout) == f"export/{TENANT}/{FILENAME}"


def test_given_default_template_constant_when_inspected_then_documented_shape() -> None:
    assert DEFAULT_KEY_TEMPLATE == "{prefix}/tenant={tenantId}/dt={dataDateFrom}/{filename}"


@pytest.mark.parametrize(
    "template",
    [
        "{prefix}/{tenant}/{filename}",
        "{prefix}/{tenantId}/{bucket}/{filename}",
        "{prefix}/{tenantId}/{}/{filename}",
        "{prefix}/{tenantId.upper}/{filename}",
        "{prefix}/{tenantId[0]}/{filename}",
    ],
)
def test_given_unknown_placeholder_when_layout_built_then_configuration_error(template: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown placeholders"):
        KeyLayout(template=template)


def test_given_template_without_filename_when_layout_built_then_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"\{filename\}"):
        KeyLayout(template="{prefix}/{tenantId}/{jobId}.parquet")


def test_given_template_without_tenant_when_layout_built_then_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"\{tenantId\}"):
        KeyLayout(template="{prefix}/{jobId}/{filename}")


def test_given_escaped_braces_when_layout_built_then_they_are_not_placeholders() -> None:
    with pytest.raises(ConfigurationError, match=r"\{filename\}"):
        KeyLayout(template="{prefix}/{tenantId}/{{filename}}")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tenant_id", ".."),
        ("tenant_id", "."),
        ("tenant_id", "a/b"),
        ("tenant_id", "a b"),
        ("tenant_id", ""),
        ("filename", ".."),
        ("filename", "../x.parquet"),
        ("filename", "dir/x.parquet"),
        ("filename", "my file.parquet"),
        ("filename", "x.parquet\n"),
        ("filename", "x?.parquet"),
        ("job_id", "a/b"),
        ("job_id", "a b"),
        ("table", "visits/2"),
        ("table", ".."),
    ],
)
def test_given_unsafe_value_when_key_then_invalid_input(field: str, value: str) -> None:
    with pytest.raises(InvalidInput, match="cannot be part of an S3 key"):
        key(KeyLayout(prefix="p", template="{prefix}/{table}/{tenantId}/{jobId}/{filename}"), **{field: value})


@pytest.mark.parametrize(
    "template",
    [
        "{tenantId}/{filename}",
        "other/{tenantId}/{filename}",
        "{prefix}{tenantId}/{filename}",
        "{prefix}-x/{tenantId}/{filename}",
    ],
)
def test_given_template_that_leaves_the_prefix_when_key_then_configuration_error(template: str) -> None:
    with pytest.raises(ConfigurationError, match="under the prefix"):
        key(KeyLayout(prefix="raw", template=template))


@pytest.mark.parametrize(
    "template",
    ["{prefix}/../{tenantId}/{filename}", "{prefix}/./{tenantId}/{filename}", "{prefix}/{tenantId}/../../{filename}"],
)
def test_given_template_with_dot_segments_when_key_then_invalid_input(template: str) -> None:
    with pytest.raises(InvalidInput, match="unsafe key"):
        key(KeyLayout(prefix="raw", template=template))


def test_given_template_with_doubled_slashes_when_key_then_collapsed() -> None:
    layout = KeyLayout(prefix="raw", template="{prefix}//{tenantId}///{filename}/")
    assert key(layout) == f"raw/{TENANT}/{FILENAME}"


def test_given_distinct_tenants_and_dates_when_keyed_then_distinct_keys() -> None:
    layout = KeyLayout(prefix="raw")
    keys = {
        key(layout, tenant_id=t, date_from=d, date_to=d)
        for t in ("t1", "t2", "t1.x")
        for d in (date(2026, 1, 1), date(2026, 1, 2))
    }
    assert len(keys) == 6


@pytest.mark.parametrize(
    ("data_key", "manifest"),
    [
        ("raw/tenant=t/dt=2026-01-02/a.parquet", "raw/tenant=t/dt=2026-01-02/_a.parquet.manifest.json"),
        ("a.parquet", "_a.parquet.manifest.json"),
        ("x/y.zip", "x/_y.zip.manifest.json"),
    ],
)
def test_given_data_key_when_manifest_key_then_underscore_file_beside_it(data_key: str, manifest: str) -> None:
    assert manifest_key_for(data_key) == manifest


def test_given_manifest_key_when_compared_then_same_folder_as_data() -> None:
    data_key = key(KeyLayout(prefix="raw"))
    manifest = manifest_key_for(data_key)
    assert manifest.rpartition("/")[0] == data_key.rpartition("/")[0]
    assert manifest.rpartition("/")[2].startswith("_")


@pytest.mark.parametrize(
    ("first_member", "expected"),
    [
        (
            "lake/events/tenant=t/dt=2026-11-01/part-0.parquet",
            "lake/events/tenant=t/dt=2026-11-01/_job-1.manifest.json",
        ),
        ("part-0.parquet", "_job-1.manifest.json"),
    ],
)
def test_an_archive_manifest_sits_beside_its_first_member_named_after_the_job(first_member: str, expected: str) -> None:
    assert archive_manifest_key(first_member, "job-1") == expected
