"""redact.py: no presigned-URL query string or bearer token survives into a message."""

from __future__ import annotations

import pytest
import requests
import urllib3

from omborigrid_export.redact import describe_exception, host_of, scrub

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
