"""settings.py and function_settings.py: environment variables parsed once into validated models."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from omborigrid_export.errors import ConfigurationError
from omborigrid_export.function_settings import (
    CheckStatusSettings,
    CreateJobSettings,
    DownloadSettings,
    FunctionEnvironment,
    StartExportSettings,
)
from omborigrid_export.layout import DEFAULT_ARCHIVE_KEY_TEMPLATE, DEFAULT_KEY_TEMPLATE, KeyLayout
from omborigrid_export.parquet_proof import ProofPolicy
from omborigrid_export.settings import (
    DEFAULT_API_URL,
    DEFAULT_ATTEMPTS,
    DEFAULT_CONCURRENCY,
    DEFAULT_PART_SIZE,
    MIB,
    ArchiveLimits,
    SchemaChangePolicy,
    Settings,
    TransferSettings,
)


def test_given_no_arguments_when_settings_built_then_documented_defaults() -> None:
    settings = Settings()

    assert settings.api_url == "https://api.omborigrid.com" == DEFAULT_API_URL
    assert settings.token is None
    assert settings.token_secret is None
    assert settings.allow_local_urls is False
    assert settings.layout == KeyLayout(prefix="", template=DEFAULT_KEY_TEMPLATE)
    assert settings.transfer == TransferSettings()
    assert (settings.transfer.part_size, settings.transfer.concurrency, settings.transfer.max_attempts) == (
        8 * MIB,
        8,
        5,
    )
    assert (DEFAULT_PART_SIZE, DEFAULT_CONCURRENCY, DEFAULT_ATTEMPTS) == (8 * MIB, 8, 5)


def test_given_empty_environment_when_from_env_then_same_as_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_given_empty_strings_when_from_env_then_treated_as_unset() -> None:
    env = {
        "OMBORIGRID_API_URL": "",
        "OMBORIGRID_TOKEN": "",
        "OMBORIGRID_TOKEN_SECRET": "",
        "OMBORIGRID_PART_SIZE_MIB": "",
        "OMBORIGRID_TRANSFER_CONCURRENCY": "",
        "OMBORIGRID_TRANSFER_ATTEMPTS": "",
        "EXPORT_KEY_TEMPLATE": "",
    }
    assert Settings.from_env(env) == Settings()


def test_given_full_environment_when_from_env_then_every_value_read() -> None:
    env = {
        "OMBORIGRID_API_URL": "https://api.example.test/v2/",
        "OMBORIGRID_TOKEN": "tok-123",
        "OMBORIGRID_TOKEN_SECRET": "arn:aws:secretsmanager:eu-west-1:000000000000:secret:og",
        "OMBORIGRID_PART_SIZE_MIB": "64",
        "OMBORIGRID_TRANSFER_CONCURRENCY": "8",
        "OMBORIGRID_TRANSFER_ATTEMPTS": "3",
        "EXPORT_PREFIX": "/raw/omborigrid/",
        "EXPORT_KEY_TEMPLATE": "{prefix}/{tenantId}/{dataDateFrom}/{jobId}/{filename}",
    }

    settings = Settings.from_env(env)

    assert settings.api_url == "https://api.example.test/v2"  # trailing slash dropped
    assert settings.token == "tok-123"
    assert settings.token_secret == env["OMBORIGRID_TOKEN_SECRET"]
    assert settings.transfer.part_size == 64 * MIB
    assert settings.transfer.concurrency == 8
    assert settings.transfer.max_attempts == 3
    assert settings.layout.prefix == "raw/omborigrid"
    assert settings.layout.template == env["EXPORT_KEY_TEMPLATE"]


def test_given_token_when_repr_then_token_not_shown() -> None:
    settings = Settings.from_env({"OMBORIGRID_TOKEN": "super-secret-token"})
    assert "super-secret-token" not in repr(settings)


def test_given_os_environ_when_from_env_without_mapping_then_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMBORIGRID_TRANSFER_CONCURRENCY", "2")
    settings = Settings.from_env()
    assert settings.transfer.concurrency == 2


# --- API URL ------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", [None, "", "0", "false", "no", "TRUE", "on"])
def test_given_http_api_url_without_allow_local_when_from_env_then_configuration_error(flag: str | None) -> None:
    env = {"OMBORIGRID_API_URL": "http://127.0.0.1:8080"}
    if flag is not None:
        env["OMBORIGRID_ALLOW_LOCAL_URLS"] = flag
    with pytest.raises(ConfigurationError, match="OMBORIGRID_ALLOW_LOCAL_URLS=1"):
        Settings.from_env(env)


@pytest.mark.parametrize("flag", ["1", "true", "yes"])
def test_given_http_api_url_with_allow_local_when_from_env_then_accepted(flag: str) -> None:
    settings = Settings.from_env({"OMBORIGRID_API_URL": "http://127.0.0.1:8080/", "OMBORIGRID_ALLOW_LOCAL_URLS": flag})
    assert settings.api_url == "http://127.0.0.1:8080"
    assert settings.allow_local_urls is True


@pytest.mark.parametrize(
    "url", ["ftp://api.example.test", "api.example.test", "https://", "file:///etc/passwd", "javascript:alert(1)"]
)
def test_given_non_http_api_url_when_built_then_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="not an http"):
        Settings(api_url=url, allow_local_urls=True)


@pytest.mark.parametrize(
    "url",
    ["https://api.example.test/?token=x", "https://api.example.test/#frag", "https://user:pw@api.example.test"],
)
def test_given_api_url_with_query_fragment_or_credentials_when_built_then_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="query, fragment or credentials") as caught:
        Settings(api_url=url)
    assert "pw" not in str(caught.value)


# --- integers and bounds ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["OMBORIGRID_PART_SIZE_MIB", "OMBORIGRID_TRANSFER_CONCURRENCY", "OMBORIGRID_TRANSFER_ATTEMPTS"]
)
@pytest.mark.parametrize("raw", ["abc", "1.5", "16MiB", "0x10", " "])
def test_given_non_integer_when_from_env_then_configuration_error_naming_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigurationError, match=name) as caught:
        Settings.from_env({name: raw})
    assert repr(raw) in str(caught.value)


@pytest.mark.parametrize("mib", ["5", "16", "5120"])
def test_given_part_size_within_bounds_when_from_env_then_accepted(mib: str) -> None:
    assert Settings.from_env({"OMBORIGRID_PART_SIZE_MIB": mib}).transfer.part_size == int(mib) * MIB


@pytest.mark.parametrize("mib", ["4", "0", "-16", "5121"])
def test_given_part_size_out_of_bounds_when_from_env_then_configuration_error(mib: str) -> None:
    with pytest.raises(
        ConfigurationError, match="part size \\(OMBORIGRID_PART_SIZE_MIB\\) must be between 5 MiB and 5 GiB"
    ):
        Settings.from_env({"OMBORIGRID_PART_SIZE_MIB": mib})


@pytest.mark.parametrize(
    ("part_size", "ok"),
    [(5 * MIB - 1, False), (5 * MIB, True), (5 * 1024 * MIB, True), (5 * 1024 * MIB + 1, False)],
)
def test_given_part_size_at_byte_edges_when_transfer_settings_built_then_bounds_inclusive(
    part_size: int, ok: bool
) -> None:
    if ok:
        assert TransferSettings(part_size=part_size).part_size == part_size
    else:
        with pytest.raises(ConfigurationError, match="part size"):
            TransferSettings(part_size=part_size)


@pytest.mark.parametrize(("concurrency", "ok"), [(0, False), (1, True), (64, True), (65, False)])
def test_given_concurrency_at_edges_when_transfer_settings_built_then_bounds_inclusive(
    concurrency: int, ok: bool
) -> None:
    if ok:
        assert TransferSettings(concurrency=concurrency).concurrency == concurrency
    else:
        with pytest.raises(ConfigurationError, match="concurrency"):
            TransferSettings(concurrency=concurrency)


@pytest.mark.parametrize(("attempts", "ok"), [(0, False), (1, True), (20, True), (21, False)])
def test_given_attempts_at_edges_when_transfer_settings_built_then_bounds_inclusive(attempts: int, ok: bool) -> None:
    if ok:
        assert TransferSettings(max_attempts=attempts).max_attempts == attempts
    else:
        with pytest.raises(ConfigurationError, match="attempts"):
            TransferSettings(max_attempts=attempts)


# --- layout from the environment ----------------------------------------------------------------


def test_given_bad_prefix_when_from_env_then_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        Settings.from_env({"EXPORT_PREFIX": "raw/../other"})


def test_given_template_with_unknown_placeholder_when_from_env_then_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown placeholders"):
        Settings.from_env({"EXPORT_KEY_TEMPLATE": "{prefix}/{tenantId}/{day}/{filename}"})


@pytest.mark.parametrize(
    "template",
    [
        "{prefix}/{tenantId}{dataDateFrom}/{filename}",
        "{prefix}/{tenantId}_{filename}",
        "{prefix}/t={tenantId}-{jobId}/{filename}",
    ],
)
def test_given_tenant_sharing_a_segment_with_another_placeholder_then_configuration_error(template: str) -> None:
    """Given a template where tenant "a_b" with file "c" and tenant "a" with file "b_c" render alike."""
    with pytest.raises(ConfigurationError, match="two tenants could land under the same key"):
        Settings.from_env({"EXPORT_KEY_TEMPLATE": template})
    with pytest.raises(ConfigurationError, match="EXPORT_ARCHIVE_KEY_TEMPLATE"):
        Settings.from_env({"EXPORT_ARCHIVE_KEY_TEMPLATE": template.replace("{prefix}/", "{prefix}/{table}/")})


@pytest.mark.parametrize(
    "template",
    ["{prefix}/tenant={tenantId}/dt={dataDateFrom}/{filename}", "{prefix}/{tenantId}/{dataDateFrom}_{filename}"],
)
def test_given_tenant_in_a_segment_of_its_own_then_accepted(template: str) -> None:
    assert Settings.from_env({"EXPORT_KEY_TEMPLATE": template}).layout.template == template


# --- the functions' settings ---------------------------------------------------------------------

MACHINE = "arn:aws:states:eu-west-1:123456789012:stateMachine:export"
COMMON = {
    "OMBORIGRID_API_URL": "https://api.example.test/",
    "OMBORIGRID_TOKEN_SECRET": "og-token",
    "EXPORT_PREFIX": "raw",
    "EXPORT_KEY_TEMPLATE": DEFAULT_KEY_TEMPLATE,
    "EXPORT_ARCHIVE_KEY_TEMPLATE": DEFAULT_ARCHIVE_KEY_TEMPLATE,
}
CREATE_JOB = {
    **COMMON,
    "LEDGER_TABLE": "ledger",
    "EXPORT_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs",
    "EXPORT_STATE_MACHINE_ARN": MACHINE,
    "TENANT_IDS": "t1, t2,,t1",
    "SCHEDULE_TIMEZONE": "Europe/Stockholm",
    "LOOKBACK_DAYS": "7",
    "MAX_JOBS_IN_FLIGHT": "20",
    "FRESHNESS_HOURS": "36",
    "MAX_JOBS_IN_FLIGHT_PER_TENANT": "0",
    "PAUSE_AFTER_FAILED_NIGHTS": "5",
    "EVENT_BUS_NAME": "default",
}
DOWNLOAD = {
    **COMMON,
    "LEDGER_TABLE": "ledger",
    "EXPORT_BUCKET": "lake",
    "EXPORT_BUCKET_OWNER": "123456789012",
    "OMBORIGRID_PROOF_STRICT": "true",
    "OMBORIGRID_PROOF_TOLERANCE_HOURS": "36",
    "OMBORIGRID_PROOF_TENANT_COLUMN": "tenant",
    "OMBORIGRID_PROOF_EVENT_TIME_COLUMNS": "ts, createdAt",
    "OMBORIGRID_ARCHIVE_MAX_RATIO": "40",
    "OMBORIGRID_ARCHIVE_MAX_INFLATED_GIB": "2",
    "OMBORIGRID_PART_SIZE_MIB": "16",
    "OMBORIGRID_TRANSFER_CONCURRENCY": "4",
    "OMBORIGRID_TRANSFER_ATTEMPTS": "3",
    "EVENT_BUS_NAME": "omborigrid-export",
    "ANOMALY_HISTORY_DAYS": "21",
    "ANOMALY_MIN_HISTORY_DAYS": "10",
    "ANOMALY_LOW_RATIO": "0.25",
    "ANOMALY_HIGH_RATIO": "4",
    "ANOMALY_BASELINE": "same-weekday",
    "ANOMALY_MIN_ROWS": "100",
    "ALERT_ON_EMPTY_DAY": "true",
    "LINEAGE_ENDPOINT": "",
    "CATALOG_DATABASE": "",
    "SCHEMA_CHANGE_POLICY": "quarantine",
}
MODELS: dict[type[Any], dict[str, str]] = {
    CreateJobSettings: CREATE_JOB,
    DownloadSettings: DOWNLOAD,
    CheckStatusSettings: COMMON,
    StartExportSettings: {"EXPORT_STATE_MACHINE_ARN": MACHINE},
}


def test_given_the_create_job_environment_then_every_value_parsed() -> None:
    settings = CreateJobSettings.from_env(CREATE_JOB)

    assert settings.policy.tenants == ("t1", "t2")
    assert settings.policy.zone == ZoneInfo("Europe/Stockholm")
    assert (settings.policy.lookback_days, settings.policy.max_jobs_in_flight, settings.policy.freshness_hours) == (
        7,
        20,
        36,
    )
    assert (settings.ledger_table, settings.state_machine_arn) == ("ledger", MACHINE)
    assert settings.queue_url == CREATE_JOB["EXPORT_QUEUE_URL"]
    assert settings.export.api_url == "https://api.example.test"
    assert settings.export.token_secret == "og-token"
    assert settings.export.layout == KeyLayout(prefix="raw", template=DEFAULT_KEY_TEMPLATE)


def test_given_the_download_environment_then_the_transfer_and_landing_values_parsed() -> None:
    settings = DownloadSettings.from_env(DOWNLOAD)

    assert settings.export.transfer == TransferSettings(part_size=16 * MIB, concurrency=4, max_attempts=3)
    assert (settings.bucket, settings.ledger_table, settings.time_budget_seconds) == ("lake", "ledger", None)
    assert settings.export.allow_local_urls is False
    assert DownloadSettings.from_env({**DOWNLOAD, "DOWNLOAD_TIME_BUDGET_SECONDS": "7"}).time_budget_seconds == 7.0
    local = DownloadSettings.from_env({**DOWNLOAD, "OMBORIGRID_ALLOW_LOCAL_URLS": "1"})
    assert local.export.allow_local_urls is True
    assert settings.export.expected_bucket_owner == "123456789012"
    proof = settings.export.proof
    assert (proof.strict, proof.tolerance, proof.tenant_column) == (True, timedelta(hours=36), "tenant")
    assert proof.event_time_columns == ("ts", "createdAt")
    assert (settings.export.archive.max_ratio, settings.export.archive.max_inflated_bytes) == (40.0, 2 * 1024**3)
    with pytest.raises(ConfigurationError, match="OMBORIGRID_PROOF_TOLERANCE_HOURS must be a whole number"):
        DownloadSettings.from_env({**DOWNLOAD, "OMBORIGRID_PROOF_TOLERANCE_HOURS": "a day"})
    with pytest.raises(ConfigurationError, match="archive limits"):
        DownloadSettings.from_env({**DOWNLOAD, "OMBORIGRID_ARCHIVE_MAX_RATIO": "0"})
    assert settings.export.schema_change_policy is SchemaChangePolicy.QUARANTINE
    with pytest.raises(ConfigurationError, match="SCHEMA_CHANGE_POLICY must be land or quarantine, not 'hold'"):
        DownloadSettings.from_env({**DOWNLOAD, "SCHEMA_CHANGE_POLICY": "hold"})
    signals = settings.signals
    assert (signals.event_bus, signals.lineage_endpoint, signals.catalog_database) == ("omborigrid-export", None, None)
    assert (signals.rule.history_days, signals.rule.min_history, signals.rule.low_ratio) == (21, 10, 0.25)
    assert (signals.rule.high_ratio, signals.rule.baseline.value, signals.rule.alert_on_empty) == (
        4.0,
        "same-weekday",
        True,
    )


def test_given_no_proof_variables_then_the_cli_proves_with_the_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.proof == ProofPolicy()
    assert settings.archive == ArchiveLimits()
    strict = Settings.from_env({"OMBORIGRID_PROOF_STRICT": "1", "OMBORIGRID_PROOF_EVENT_TIME_COLUMNS": " , "})
    assert strict.proof.strict is True
    assert strict.proof.event_time_columns == ProofPolicy().event_time_columns
    with pytest.raises(ConfigurationError, match="12-digit"):
        DownloadSettings.from_env({**DOWNLOAD, "EXPORT_BUCKET_OWNER": "acme"})


def test_given_an_empty_tenant_list_then_no_tenant_is_scheduled() -> None:
    assert CreateJobSettings.from_env({**CREATE_JOB, "TENANT_IDS": ""}).policy.tenants == ()


@pytest.mark.parametrize("model", list(MODELS), ids=lambda m: m.__name__)
def test_given_any_required_variable_missing_then_configuration_error_naming_it(model: type[Any]) -> None:
    required = [v.name for v in model.VARIABLES if v.required]
    assert sorted(required) == sorted(MODELS[model]), "the test's environment is the model's required variables"
    for name in required:
        environ = {k: v for k, v in MODELS[model].items() if k != name}
        with pytest.raises(ConfigurationError, match=f"missing its {name} setting"):
            model.from_env(environ)


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("MAX_JOBS_IN_FLIGHT", "0", "MAX_JOBS_IN_FLIGHT\\) must be at least 1, not 0"),
        ("MAX_JOBS_IN_FLIGHT", "twenty", "whole number"),
        ("LOOKBACK_DAYS", "400", "LOOKBACK_DAYS\\) must be between 0 and 366 days, not 400"),
        ("FRESHNESS_HOURS", "0", "FRESHNESS_HOURS\\) must be at least one hour"),
        ("SCHEDULE_TIMEZONE", "Mars/Olympus", "not a known time zone"),
        ("TENANT_IDS", "ok,../up", "not acceptable"),
        ("EXPORT_STATE_MACHINE_ARN", "export", "not the ARN of a state machine"),
        ("EXPORT_KEY_TEMPLATE", "{prefix}/{tenantId}{filename}", "two tenants"),
        ("LEDGER_TABLE", " ", "is empty"),
    ],
)
def test_given_a_bad_create_job_value_then_configuration_error_before_anything_else(
    name: str, value: str, match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        CreateJobSettings.from_env({**CREATE_JOB, name: value})


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("OMBORIGRID_PART_SIZE_MIB", "4", "OMBORIGRID_PART_SIZE_MIB\\) must be between 5 MiB and 5 GiB"),
        ("OMBORIGRID_TRANSFER_CONCURRENCY", "0", "OMBORIGRID_TRANSFER_CONCURRENCY\\) must be between 1 and 64"),
        ("OMBORIGRID_TRANSFER_ATTEMPTS", "x", "OMBORIGRID_TRANSFER_ATTEMPTS must be a whole number"),
        ("DOWNLOAD_TIME_BUDGET_SECONDS", "0", "at least 1 second"),
        ("EXPORT_ARCHIVE_KEY_TEMPLATE", "{prefix}/tenant={tenantId}/{filename}", "must contain \\{table\\}"),
    ],
)
def test_given_a_bad_download_value_then_configuration_error_naming_the_variable(
    name: str, value: str, match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        DownloadSettings.from_env({**DOWNLOAD, name: value})


def test_given_a_name_the_model_does_not_declare_then_reading_it_is_refused() -> None:
    environment = FunctionEnvironment({"EXPORT_BUCKET": "lake"}, StartExportSettings.VARIABLES)
    with pytest.raises(ConfigurationError, match="not a setting this function declares"):
        environment.text("EXPORT_BUCKET")
