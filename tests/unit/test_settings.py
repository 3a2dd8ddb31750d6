"""settings.py: environment variables parsed once into a validated model."""

from __future__ import annotations

import pytest

from omborigrid_export.errors import ConfigurationError
from omborigrid_export.layout import DEFAULT_KEY_TEMPLATE, KeyLayout
from omborigrid_export.settings import (
    DEFAULT_API_URL,
    DEFAULT_ATTEMPTS,
    DEFAULT_CONCURRENCY,
    DEFAULT_PART_SIZE,
    MIB,
    Settings,
    TransferSettings,
)


def test_given_no_arguments_when_settings_built_then_documented_defaults() -> None:
    settings = Settings()

    assert settings.api_url == "https://api.omborigrid.com" == DEFAULT_API_URL
    assert settings.token is None
    assert settings.token_secret is None
    assert settings.allow_local_urls is False
    assert settings.bucket is None
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
        "EXPORT_BUCKET": "",
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
        "EXPORT_BUCKET": "my-lake",
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
    assert settings.bucket == "my-lake"


def test_given_token_when_repr_then_token_not_shown() -> None:
    settings = Settings.from_env({"OMBORIGRID_TOKEN": "super-secret-token"})
    assert "super-secret-token" not in repr(settings)


def test_given_os_environ_when_from_env_without_mapping_then_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORT_BUCKET", "from-os-environ")
    monkeypatch.setenv("OMBORIGRID_TRANSFER_CONCURRENCY", "2")
    settings = Settings.from_env()
    assert settings.bucket == "from-os-environ"
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
