"""redact.py: no presigned-URL query string or bearer token survives into a message."""

from __future__ import annotations

import time

import pytest
import requests
import urllib3

from omborigrid_export.redact import (
    REDACTED,
    describe_exception,
    host_of,
    register_secret,
    scrub,
    scrub_tree,
    server_text,
)

SIGNATURE = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
TOKEN = "FwoGZXIvYXdzEBYaDExampleSessionToken"
PRESIGNED = (
    "https://exports.example.com/tenant/file.parquet"
    f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20260101%2Feu-west-1%2Fs3%2Faws4_request"
    f"&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-Security-Token={TOKEN}"
    f"&X-Amz-SignedHeaders=host&X-Amz-Signature={SIGNATURE}"
)
SECRETS = (SIGNATURE, TOKEN, "AKIAEXAMPLE", "X-Amz-Signature", "X-Amz-Credential")


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into {text!r}"


# --- scrub --------------------------------------------------------------------------------------


def test_given_presigned_url_when_scrubbed_then_query_replaced_and_path_kept() -> None:
    scrubbed = scrub(f"GET {PRESIGNED} failed")

    assert scrubbed == "GET https://exports.example.com/tenant/file.parquet?<redacted> failed"


@pytest.mark.parametrize(
    "template",
    [
        "url: {url}",
        "url='{url}'",
        'url="{url}"',
        "<{url}>",
        "(see {url})",
        "{url}\nnext line",
        "first {url} and second {url}",
    ],
)
def test_given_url_in_various_quotings_when_scrubbed_then_no_secret(template: str) -> None:
    scrubbed = scrub(template.format(url=PRESIGNED))
    assert_no_secret(scrubbed)
    assert "exports.example.com/tenant/file.parquet" in scrubbed


def test_given_path_only_url_as_urllib3_quotes_it_when_scrubbed_then_query_removed() -> None:
    text = f"Max retries exceeded with url: /tenant/file.parquet?X-Amz-Signature={SIGNATURE} (Caused by X)"

    scrubbed = scrub(text)

    assert scrubbed == "Max retries exceeded with url: /tenant/file.parquet?<redacted> (Caused by X)"


def test_given_http_url_without_path_when_scrubbed_then_query_removed() -> None:
    assert scrub(f"http://127.0.0.1:9000?sig={SIGNATURE}") == "http://127.0.0.1:9000?<redacted>"


@pytest.mark.parametrize("header", ["Bearer", "bearer", "BEARER"])
def test_given_bearer_token_when_scrubbed_then_token_replaced(header: str) -> None:
    scrubbed = scrub(f"Authorization: {header} {TOKEN}")
    assert scrubbed == f"Authorization: {header} <redacted>"


def test_given_bearer_token_in_quoted_dict_when_scrubbed_then_quote_kept_and_token_gone() -> None:
    scrubbed = scrub(f"headers={{'Authorization': 'Bearer {TOKEN}'}}")
    assert scrubbed == "headers={'Authorization': 'Bearer <redacted>'}"


def test_given_text_without_secrets_when_scrubbed_then_unchanged() -> None:
    text = "Export job 65f1 for t1 2026-01-01 is still processing after 3 checks."
    assert scrub(text) == text


def test_given_url_without_query_when_scrubbed_then_unchanged() -> None:
    text = "downloaded https://exports.example.com/a/b.parquet in 3 s"
    assert scrub(text) == text


# --- host_of ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host"),
    [
        (PRESIGNED, "exports.example.com"),
        ("https://Exports.Example.com/x", "exports.example.com"),
        ("http://127.0.0.1:8080/download/x?sig=1", "127.0.0.1:8080"),
        ("https://user:pw@exports.example.com/x", "exports.example.com"),
        ("https://[::1]:9000/x", "::1:9000"),
        ("/relative/path?sig=1", "<no host>"),
        ("https://[::1/x", "<invalid url>"),
    ],
)
def test_given_url_when_host_of_then_only_host_and_port(url: str, host: str) -> None:
    assert host_of(url) == host


def test_given_presigned_url_when_host_of_then_no_secret() -> None:
    assert_no_secret(host_of(PRESIGNED))


# --- describe_exception -------------------------------------------------------------------------


def test_given_requests_http_error_quoting_presigned_url_when_described_then_no_signature() -> None:
    response = requests.Response()
    response.status_code = 403
    response.reason = "Forbidden"
    response.url = PRESIGNED
    with pytest.raises(requests.HTTPError) as caught:
        response.raise_for_status()
    assert SIGNATURE in str(caught.value)  # the library really does quote it

    described = describe_exception(caught.value)

    assert described.startswith("HTTPError: 403 Client Error: Forbidden for url: https://exports.example.com/")
    assert_no_secret(described)


def test_given_connection_error_wrapping_max_retry_when_described_then_no_signature() -> None:
    path = PRESIGNED.removeprefix("https://exports.example.com")
    reason = urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection")  # type: ignore[arg-type]
    inner = urllib3.exceptions.MaxRetryError(None, path, reason)  # type: ignore[arg-type]
    exc = requests.ConnectionError(inner)
    assert SIGNATURE in str(exc)

    described = describe_exception(exc)

    assert described.startswith("ConnectionError: ")
    assert "/tenant/file.parquet?<redacted>" in described
    assert_no_secret(described)


def test_given_exception_with_bearer_token_when_described_then_token_removed() -> None:
    described = describe_exception(RuntimeError(f"sent Authorization: Bearer {TOKEN}"))
    assert described == "RuntimeError: sent Authorization: Bearer <redacted>"


def test_given_exception_without_message_when_described_then_class_name() -> None:
    assert describe_exception(TimeoutError()) == "TimeoutError"


def test_given_long_message_when_described_then_truncated_after_scrubbing() -> None:
    # The secret sits beyond the truncation point; scrubbing first means no half-redacted tail.
    described = describe_exception(ValueError("x" * 250 + " " + PRESIGNED + " " + "y" * 500))

    assert len(described) == len("ValueError: ") + 300
    assert described.endswith("...")
    assert_no_secret(described)


# --- the whole query, whatever it holds ---------------------------------------------------------------------

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
TEMP_KEY = "ASIAY34FZKBOKMUTVV7A"


@pytest.mark.parametrize(
    "query",
    [
        f"X-Amz-Signature=ab)cd{SIGNATURE}",
        f"X-Amz-Signature=ab'cd{SIGNATURE}",
        f"a=1&b=(x)&X-Amz-Security-Token={TOKEN}')",
        f"X-Amz-Security-Token={TOKEN}%27%29&X-Amz-Signature={SIGNATURE}",
        f"sig={SIGNATURE};x={TOKEN}",
    ],
)
@pytest.mark.parametrize("template", ["url: {url} (Caused by X)", "url='{url}'", "({url})", "{url}"])
def test_given_a_query_holding_quotes_or_parentheses_then_all_of_it_goes(query: str, template: str) -> None:
    scrubbed = scrub(template.format(url=f"https://exports.example.com/f.parquet?{query}"))

    assert_no_secret(scrubbed)
    assert "exports.example.com/f.parquet?<redacted>" in scrubbed


def test_given_a_percent_encoded_url_inside_a_message_then_its_query_goes() -> None:
    encoded = (
        "https%3A%2F%2Fexports.example.com%2Ff%3FX-Amz-Security-Token%3D" + TOKEN + "%26X-Amz-Signature%3D" + SIGNATURE
    )

    assert_no_secret(scrub(f"next={encoded} done"))


@pytest.mark.parametrize(
    "text",
    [
        f"{{'X-Amz-Security-Token': b'{TOKEN}', 'X-Amz-Date': b'20260101T000000Z'}}",
        f'{{"X-Amz-Security-Token": "{TOKEN}"}}',
        f"X-Amz-Security-Token: {TOKEN}",
        f"x-amz-signature={SIGNATURE}",
        f"X-Amz-Credential={ACCESS_KEY}/20260101/eu-west-1/s3/aws4_request",
        f"'Authorization': b'AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260101/eu-west-1/s3/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={SIGNATURE}'",
        f"Authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/x, SignedHeaders=host, Signature={SIGNATURE}",
        f"OMBORIGRID_TOKEN={TOKEN}",
        f'{{"token": "{TOKEN}"}}',
        f"aws_secret_access_key = {AWS_SECRET}",
    ],
)
def test_given_named_credentials_in_headers_or_settings_then_their_values_go(text: str) -> None:
    scrubbed = scrub(text)

    for secret in (TOKEN, SIGNATURE, ACCESS_KEY, AWS_SECRET):
        assert secret not in scrubbed
    assert REDACTED in scrubbed


def test_given_authorization_then_the_scheme_stays_and_the_value_goes() -> None:
    scrubbed = scrub(f"'Authorization': b'AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/x, Signature={SIGNATURE}'")
    assert scrubbed == "'Authorization': b'AWS4-HMAC-SHA256 <redacted>'"


@pytest.mark.parametrize(
    "secret",
    [
        ACCESS_KEY,
        TEMP_KEY,
        AWS_SECRET,
        TOKEN + "Xy9" * 20,
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    ],
)
def test_given_bare_credential_shaped_strings_then_they_go(secret: str) -> None:
    scrubbed = scrub(f"the server said {secret} was wrong")

    assert secret not in scrubbed
    for part in secret.split("."):
        assert part not in scrubbed or len(part) < 32
    assert scrubbed.startswith("the server said ")
    assert scrubbed.endswith(" was wrong")


@pytest.mark.parametrize(
    "text",
    [
        "job 621e1fc633350f0007637a0c landed at s3://lake/raw/tenant=621e1fc633350f0007637a0c/dt=2026-11-01/a.parquet",
        "schema e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 (sha-256), crc32 AAAAAA==",
        "2026-11-01T00:00:00Z part 3 of 17: 5242880 bytes",
    ],
)
def test_given_ids_digests_keys_and_dates_then_they_are_kept(text: str) -> None:
    assert scrub(text) == text


def test_given_a_registered_secret_then_it_goes_wherever_it_appears() -> None:
    echoed = "plainLongTokenValue-echo"  # not credential-shaped: only registration catches it
    assert scrub(f"bad token {echoed}!") == f"bad token {echoed}!"

    register_secret(echoed)
    register_secret("short")

    assert scrub(f"bad token {echoed}!") == "bad token <redacted>!"
    assert scrub("short") == "short"


# --- server text --------------------------------------------------------------------------------------------


def test_given_server_text_with_terminal_escapes_and_newlines_then_one_plain_line() -> None:
    text = "\x1b[31mdenied\x1b[0m\r\nERROR fake log line\x1b]0;pwned\x07\x07 \u202eevil\x00"

    assert server_text(text) == "denied ERROR fake log line evil"


def test_given_long_server_text_then_truncated_after_scrubbing() -> None:
    text = "x" * 150 + f" {TOKEN}{'Q1' * 40} " + "y" * 300

    cleaned = server_text(text, limit=200)

    assert len(cleaned) == 200
    assert cleaned.endswith("...")
    assert TOKEN not in cleaned
    assert "Q1Q1" not in cleaned


def test_given_an_escape_splitting_a_key_then_the_key_is_still_found() -> None:
    assert ACCESS_KEY not in server_text(ACCESS_KEY[:6] + "\x1b[0m" + ACCESS_KEY[6:])


def test_given_a_tree_then_every_string_in_it_is_scrubbed() -> None:
    tree = {"url": PRESIGNED, "nested": [{"header": f"Bearer {TOKEN}"}, 3, None], PRESIGNED: True}

    scrubbed = scrub_tree(tree)

    assert_no_secret(repr(scrubbed))
    assert scrubbed["nested"][1:] == [3, None]


def test_given_an_exception_whose_str_fails_then_described_by_class() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert describe_exception(Broken()) == "Broken"


def test_given_an_exception_quoting_server_text_then_described_on_one_clean_line() -> None:
    described = describe_exception(ValueError(f"\x1b[2Jbad\nline {ACCESS_KEY}"))
    assert described == "ValueError: bad line <redacted>"


@pytest.mark.parametrize(
    "text",
    [
        f"GET {PRESIGNED} failed",
        f"'Authorization': b'AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/x, Signature={SIGNATURE}'",
        f"Authorization: Bearer {TOKEN}",
        f"X-Amz-Security-Token={TOKEN} and {AWS_SECRET}",
        "https%3A%2F%2Fh%2Ff%3FX-Amz-Signature%3D" + SIGNATURE,
    ],
)
def test_scrubbing_twice_changes_nothing_more(text: str) -> None:
    # Handlers, formatters and emitters may each scrub the same text; the result must not grow.
    once = scrub(text)
    assert scrub(once) == once


def test_given_a_url_with_an_empty_query_then_it_is_left_alone() -> None:
    assert scrub("see https://exports.example.com/f? now") == "see https://exports.example.com/f? now"


@pytest.mark.parametrize(
    "text",
    [
        "a-" * 100_000,
        "/a" * 100_000,
        "secret-" * 30_000,
        "a ?a " * 40_000,
        ("x" * 3000 + "?a ") * 60,
        "Ab1=" * 50_000,
        "authorization: 'x authorization: \"y " * 5_000,
    ],
    ids=["dashes", "slashes", "names", "queries", "long-words", "base64", "auth"],
)
def test_given_a_large_adversarial_text_then_scrubbing_stays_linear(text: str) -> None:
    # Server text and third-party log lines are scrubbed whole; a quadratic pattern would hang a Lambda here.
    started = time.perf_counter()
    scrub(text)
    assert time.perf_counter() - started < 5.0
