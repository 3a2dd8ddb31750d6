"""tenants.py: the token map (one token, or a token and host per tenant), validated whole and never printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from omborigrid_export.errors import ConfigurationError
from omborigrid_export.tenants import TokenMap

API = "https://api.omborigrid.com"


def tokens(data: Any, *, allow_local_urls: bool = False) -> TokenMap:
    text = data if isinstance(data, str) else json.dumps(data)
    return TokenMap.from_json(text, api_url=API, allow_local_urls=allow_local_urls, source="OMBORIGRID_TOKENS")


@pytest.mark.parametrize("text", ["tok-1", "  tok-1\n", '{"token": "tok-1"}'])
def test_given_one_token_as_before_then_every_tenant_gets_it_on_the_global_host(text: str) -> None:
    parsed = tokens(text)
    assert parsed.for_tenant("any-tenant") == (API, "tok-1")
    assert parsed.listed == ()


def test_given_a_map_then_listed_tenants_get_their_own_token_and_host_and_others_the_default() -> None:
    parsed = tokens(
        {
            "default": "tok-default",
            "tenants": {
                "eu1": {"token": "tok-eu", "apiUrl": "https://eu.api.omborigrid.com/"},
                "us1": {"apiUrl": "https://us.api.omborigrid.com"},
                "ae1": {"token": "tok-ae"},
            },
        }
    )
    assert parsed.for_tenant("eu1") == ("https://eu.api.omborigrid.com", "tok-eu")
    assert parsed.for_tenant("us1") == ("https://us.api.omborigrid.com", "tok-default")
    assert parsed.for_tenant("ae1") == (API, "tok-ae")
    assert parsed.for_tenant("other") == (API, "tok-default")
    assert parsed.listed == ("ae1", "eu1", "us1")


def test_given_a_map_without_default_then_an_unlisted_tenant_is_a_sentence_naming_it() -> None:
    parsed = tokens({"tenants": {"eu1": {"token": "tok-eu"}}})
    with pytest.raises(ConfigurationError, match="no token for tenant us1 and no default") as caught:
        parsed.for_tenant("us1")
    assert "tok-eu" not in str(caught.value)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"default": "t", "tennants": {}}, r"unknown field\(s\) \['tennants'\]"),
        ({"tenants": {"eu1": {"apiUrl": "https://eu.example"}}}, "gives tenant eu1 no token and has no default"),
        ({}, "neither a default token nor any tenant"),
        ({"default": ""}, "'default' has no token"),
        ({"default": "two words"}, "whitespace inside"),
        ({"default": "t", "tenants": []}, "keyed by tenant id"),
        ({"default": "t", "tenants": {"../x": {"token": "a"}}}, "OMBORIGRID_TOKENS: "),
        ({"default": "t", "tenants": {"eu1": "tok"}}, "entry for tenant eu1 must be an object"),
        ({"default": "t", "tenants": {"eu1": {"tokn": "a"}}}, r"eu1 has unknown field\(s\) \['tokn'\]"),
        ({"default": "t", "tenants": {"eu1": {"apiUrl": "http://eu.example"}}}, "eu1: apiUrl uses plain http"),
        ({"default": "t", "tenants": {"eu1": {"apiUrl": "https://eu.example/?k=v"}}}, "must not carry a query"),
        ({"default": "t", "tenants": {"eu1": {"apiUrl": "ftp://eu.example"}}}, "is not an http"),
        ({"default": "t", "tenants": {"eu1": {"apiUrl": 7}}}, "apiUrl that is not text"),
        ("{not json", "not valid JSON"),
    ],
)
def test_given_a_bad_map_then_one_sentence_saying_what_to_fix(data: Any, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        tokens(data)


def test_given_plain_http_with_the_local_switch_then_a_simulator_host_is_accepted() -> None:
    parsed = tokens({"default": "t", "tenants": {"eu1": {"apiUrl": "http://127.0.0.1:8765"}}}, allow_local_urls=True)
    assert parsed.for_tenant("eu1") == ("http://127.0.0.1:8765", "t")


def test_given_a_map_then_its_repr_and_errors_never_show_a_token() -> None:
    parsed = tokens({"default": "secret-default", "tenants": {"eu1": {"token": "secret-eu"}}})
    shown = repr(parsed)
    assert "secret" not in shown
    assert "eu1" in shown
    with pytest.raises(ConfigurationError) as caught:
        tokens({"default": "secret-default", "tenants": {"eu1": {"token": "secret eu"}}})
    assert "secret" not in str(caught.value)


def test_given_a_tokens_file_then_it_wins_over_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tenants": {"eu1": {"token": "from-file"}}}), encoding="utf-8")
    environ = {"OMBORIGRID_TOKENS": '{"default": "from-env"}', "OMBORIGRID_TOKEN": "plain"}

    parsed = TokenMap.for_cli(str(path), environ, api_url=API, allow_local_urls=False)

    assert parsed.for_tenant("eu1") == (API, "from-file")
    assert parsed.source == str(path)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"OMBORIGRID_TOKENS": '{"default": "from-map"}', "OMBORIGRID_TOKEN": "plain"}, "from-map"),
        ({"OMBORIGRID_TOKENS": " ", "OMBORIGRID_TOKEN": "plain"}, "plain"),
    ],
)
def test_given_no_file_then_the_map_variable_then_the_single_token(environ: dict[str, str], expected: str) -> None:
    assert TokenMap.for_cli(None, environ, api_url=API, allow_local_urls=False).for_tenant("t")[1] == expected


def test_given_no_token_anywhere_or_an_unreadable_file_then_a_sentence_saying_where_to_put_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="pass --tokens FILE, or set OMBORIGRID_TOKENS"):
        TokenMap.for_cli(None, {}, api_url=API, allow_local_urls=False)
    with pytest.raises(ConfigurationError, match=r"Cannot read the token file .*missing\.json"):
        TokenMap.for_cli(str(tmp_path / "missing.json"), {}, api_url=API, allow_local_urls=False)
