"""The API client against the simulator over real HTTP: retries, the POST rule, auth, validation.

The simulator counts what the client actually sent, so each test checks requests, not just outcomes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from omborigrid_export.api_attempts import RetryPolicy
from omborigrid_export.client import OmboriGridClient
from omborigrid_export.errors import (
    AmbiguousCreate,
    ApiUnavailable,
    AuthError,
    ConfigurationError,
    ExportFailed,
    GarbledResponse,
    IntegrityError,
    InvalidApiResponse,
    JobNotFound,
    RequestRejected,
)
from omborigrid_export.models import ExportRequest, JobIdentity, JobStatus
from tests.conftest import TENANT, free_port
from tests.integration.api_proxy import api_proxy

REQUEST = ExportRequest.parse(TENANT, "2026-11-01", "2026-11-01")
POST = "POST /api/analytics-export-job"
GET = "GET /api/analytics-export-job"
JOBS = "/api/analytics-export-job"


def fast_client(sim: Any, token: Any = None, **kwargs: Any) -> OmboriGridClient:
    retry = RetryPolicy(attempts=kwargs.pop("attempts", 3), backoff=0.01, retry_after_cap=kwargs.pop("cap", 2))
    base_url = kwargs.pop("base_url", sim.base_url)
    return OmboriGridClient(base_url, token or sim.token, retry=retry, **kwargs)


def posts(sim: Any) -> int:
    return int(sim.stats().by_route.get(POST, 0))


def test_given_valid_input_when_creating_and_polling_then_the_job_is_typed(simulator):
    client = fast_client(simulator)
    job = client.create_job(REQUEST)
    created_status = job.status
    assert created_status is JobStatus.QUEUED
    assert job.request == REQUEST
    assert job.expires_at is not None
    assert job.created_at is not None
    assert job.filename.endswith(".parquet")
    deadline = time.monotonic() + 10
    while job.status is not JobStatus.DONE:
        assert time.monotonic() < deadline
        time.sleep(0.05)
        job = client.get_job(job.id)
    assert job.file_size == simulator.job_file(job.id).stat().st_size
    assert job.download_url is not None
    assert job.download_url not in repr(job)
    assert "downloadUrl" not in job.to_public_dict()


def test_given_a_wrong_token_then_auth_error_names_the_cause_not_the_token(simulator):
    client = fast_client(simulator, token="wrong-secret-token")
    with pytest.raises(AuthError) as caught:
        client.create_job(REQUEST)
    assert "wrong-secret-token" not in str(caught.value)
    assert "expired" in str(caught.value)
    assert simulator.stats().jobs_created == 0


def test_given_a_401_then_the_token_is_read_again_once(simulator):
    calls: list[bool] = []

    def rotating(*, refresh: bool = False) -> str:
        calls.append(refresh)
        return simulator.token if refresh else "stale-token"

    job = fast_client(simulator, token=rotating).create_job(REQUEST)
    assert job.tenant_id == TENANT
    assert calls == [False, True]


def test_given_a_rejected_request_then_the_server_message_is_shown(simulator):
    simulator.configure(fail_next=[{"status": 400, "body": '{"message": "dataDateTo is too far in the future"}'}])
    with pytest.raises(RequestRejected, match="too far in the future"):
        fast_client(simulator).create_job(REQUEST)


def test_given_an_unknown_job_then_job_not_found(simulator):
    with pytest.raises(JobNotFound, match="0123456789abcdef01234567"):
        fast_client(simulator).get_job("0123456789abcdef01234567")


def test_given_429_with_retry_after_then_post_is_retried_after_the_wait(simulator):
    simulator.configure(fail_next=[{"status": 429, "retry_after": 1, "count": 2}])
    started = time.monotonic()
    job = fast_client(simulator).create_job(REQUEST)
    elapsed = time.monotonic() - started
    assert job.id
    assert posts(simulator) == 3
    assert simulator.stats().jobs_created == 1
    assert elapsed >= 1.8  # two Retry-After waits of 1 s were honoured


def test_given_a_huge_retry_after_then_the_wait_is_capped(simulator):
    simulator.configure(fail_next=[{"status": 429, "retry_after": 3600, "count": 1}])
    started = time.monotonic()
    fast_client(simulator, cap=1).create_job(REQUEST)
    assert time.monotonic() - started < 5


def test_given_a_503_burst_then_post_is_retried_and_creates_one_job(simulator):
    simulator.configure(fail_next=[{"status": 503, "count": 2}])
    fast_client(simulator).create_job(REQUEST)
    assert posts(simulator) == 3
    assert simulator.stats().jobs_created == 1


def test_given_a_500_after_create_then_post_is_not_repeated(simulator):
    simulator.configure(fail_next=[{"status": 500, "methods": ["POST"], "after_create": True}])
    with pytest.raises(AmbiguousCreate, match="may or may not exist"):
        fast_client(simulator).create_job(REQUEST)
    assert posts(simulator) == 1
    assert simulator.stats().jobs_created == 1  # the job exists: repeating would have made two


def test_given_a_read_timeout_on_post_then_it_is_ambiguous_and_not_repeated(simulator):
    simulator.configure(fail_next=[{"delay": 2.0, "methods": ["POST"]}])
    with pytest.raises(AmbiguousCreate):
        fast_client(simulator, read_timeout=0.5).create_job(REQUEST)
    assert posts(simulator) == 1


def test_given_a_closed_connection_on_post_then_it_is_ambiguous(simulator):
    simulator.configure(fail_next=[{"close": True, "methods": ["POST"], "after_create": True}])
    with pytest.raises(AmbiguousCreate):
        fast_client(simulator).create_job(REQUEST)
    assert posts(simulator) == 1


def test_given_5xx_on_get_then_get_is_retried(simulator):
    job = fast_client(simulator).create_job(REQUEST)
    simulator.configure(fail_next=[{"status": 500, "count": 1}, {"status": 502, "count": 1}])
    assert fast_client(simulator).get_job(job.id).id == job.id
    assert simulator.stats().by_route[GET] == 3


def test_given_a_read_timeout_on_get_then_get_is_retried(simulator):
    job = fast_client(simulator).create_job(REQUEST)
    simulator.configure(fail_next=[{"delay": 1.5, "methods": ["GET"]}])
    assert fast_client(simulator, read_timeout=0.5).get_job(job.id).id == job.id
    assert simulator.stats().by_route[GET] == 2


def test_given_persistent_503_then_api_unavailable_after_bounded_retries(simulator):
    job = fast_client(simulator).create_job(REQUEST)
    simulator.configure(fail_next=[{"status": 503, "count": 50}])
    with pytest.raises(ApiUnavailable, match="HTTP 503"):
        fast_client(simulator, attempts=2).get_job(job.id)
    assert simulator.stats().by_route[GET] == 3


def test_given_a_refused_connection_then_post_is_retried_and_reported_unavailable():
    client = OmboriGridClient(f"http://127.0.0.1:{free_port()}", "t", retry=RetryPolicy(attempts=2, backoff=0.01))
    with pytest.raises(ApiUnavailable, match="unreachable"):
        client.create_job(REQUEST)


@pytest.mark.parametrize(
    ("body", "error", "match"),
    [
        ("not json", AmbiguousCreate, "not JSON: 'not json', so the job may or may not exist"),
        ('{"id": "abc"}', InvalidApiResponse, "status"),
        ('["a list"]', InvalidApiResponse, "list"),
    ],
)
def test_given_a_malformed_body_then_a_typed_error_says_what_came_back(simulator, body, error, match):
    simulator.configure(fail_next=[{"status": 200, "body": body, "methods": ["POST"]}])
    with pytest.raises(error, match=match):
        fast_client(simulator).create_job(REQUEST)


def test_given_an_undocumented_final_status_then_the_export_failed(simulator):
    simulator.configure(final_status="failed", queue_seconds=4, processing_seconds=0)
    client = fast_client(simulator)
    job = client.create_job(REQUEST)
    assert job.status is JobStatus.QUEUED
    time.sleep(0.5)  # 4 simulated seconds at time_scale 20
    with pytest.raises(ExportFailed, match="'failed'"):
        client.get_job(job.id)


# --- garbled, oversized and slow answers (issue 8.5) ---------------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers", "match"),
    [
        ('{"id": "65f1c0ffee0123456789abcd", "status": "proc', {}, "not JSON"),  # cut short by a proxy
        ("<html>bad gateway</html>", {}, "not JSON: '<html>bad gateway</html>'"),
        ("[" * 100_000, {}, "not JSON"),  # nesting deep enough to exhaust the JSON parser's recursion
        ("\xff\xfe{}", {}, "not JSON"),
        ("not gzip at all", {"Content-Encoding": "gzip"}, "cannot be decoded"),
    ],
    ids=["truncated", "html", "deep-nesting", "bad-utf8", "bad-gzip"],
)
def test_given_a_garbled_200_on_get_then_garbled_response_once_and_retryable(simulator, body, headers, match):
    job = fast_client(simulator).create_job(REQUEST)
    simulator.configure(fail_next=[{"status": 200, "body": body, "headers": headers, "methods": ["GET"]}])
    with pytest.raises(GarbledResponse, match=match) as caught:
        fast_client(simulator).get_job(job.id)
    assert caught.value.retryable is True
    assert isinstance(caught.value, ApiUnavailable)
    assert simulator.stats().by_route[GET] == 1  # the poll loop decides about asking again, not the client
    assert fast_client(simulator).get_job(job.id).id == job.id


def test_given_an_oversized_200_then_it_is_refused_after_reading_at_most_the_cap(simulator):
    job = fast_client(simulator).create_job(REQUEST)
    with api_proxy(simulator.base_url) as proxy:
        proxy.shaping.oversized_bytes = 3 * 1024 * 1024
        with pytest.raises(GarbledResponse, match="larger than 1024 KiB"):
            fast_client(simulator, base_url=proxy.base_url).get_job(job.id)


def test_given_a_get_cut_off_mid_body_then_it_is_retried(simulator):
    job = fast_client(simulator).create_job(REQUEST)
    with api_proxy(simulator.base_url) as proxy:
        proxy.shaping.cut_gets = (1,)
        assert fast_client(simulator, base_url=proxy.base_url).get_job(job.id).id == job.id
        assert proxy.shaping.job_gets == 2


def test_given_a_slow_drip_then_the_call_ends_at_its_deadline(simulator):
    job = fast_client(simulator).create_job(REQUEST)
    with api_proxy(simulator.base_url) as proxy:
        proxy.shaping.drip_seconds = 0.2  # a ~500-byte job would take ~100 s
        client = fast_client(simulator, base_url=proxy.base_url, call_deadline=1.5)
        started = time.monotonic()
        with pytest.raises(ApiUnavailable, match="did not answer completely within the time allowed"):
            client.get_job(job.id)
        elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 2.3


def test_given_headers_that_drip_then_the_call_still_ends_at_its_deadline(simulator):
    job = fast_client(simulator).create_job(REQUEST)
    with api_proxy(simulator.base_url) as proxy:
        proxy.shaping.drip_head_seconds = 0.2  # each byte well inside the read timeout, the whole far beyond
        client = fast_client(simulator, base_url=proxy.base_url, call_deadline=1.5, read_timeout=1.0)
        started = time.monotonic()
        with pytest.raises(ApiUnavailable, match="did not answer completely within the time allowed"):
            client.get_job(job.id)
        elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 2.3


def test_given_a_budget_then_a_slow_drip_is_cut_at_the_time_left(simulator):
    job = fast_client(simulator).create_job(REQUEST)
    with api_proxy(simulator.base_url) as proxy:
        proxy.shaping.drip_seconds = 0.2
        client = fast_client(simulator, base_url=proxy.base_url)  # default 45 s per call
        end = time.monotonic() + 1.0
        started = time.monotonic()
        with client.budget(lambda: end - time.monotonic()), pytest.raises(ApiUnavailable):
            client.get_job(job.id)
        assert time.monotonic() - started < 1.8


def test_given_no_time_left_then_nothing_is_sent(simulator):
    client = fast_client(simulator, time_left=lambda: 0.0)
    with pytest.raises(ApiUnavailable, match="no time was left"):
        client.create_job(REQUEST)
    assert posts(simulator) == 0


def test_given_a_retry_after_beyond_the_deadline_then_it_gives_up_without_sleeping_it(simulator):
    simulator.configure(fail_next=[{"status": 503, "retry_after": 30, "count": 5}])
    client = fast_client(simulator, cap=60, call_deadline=3.0)
    started = time.monotonic()
    with pytest.raises(ApiUnavailable, match="kept answering HTTP 503"):
        client.create_job(REQUEST)
    assert time.monotonic() - started < 1.0
    assert posts(simulator) == 1


def test_given_a_retry_after_http_date_in_the_past_then_the_retry_is_immediate(simulator):
    simulator.configure(fail_next=[{"status": 429, "retry_after": "Wed, 21 Oct 2015 07:28:00 GMT", "count": 1}])
    started = time.monotonic()
    fast_client(simulator, cap=30).create_job(REQUEST)
    assert time.monotonic() - started < 1.0
    assert posts(simulator) == 2


def test_given_a_later_answer_naming_another_tenant_then_integrity_error_naming_both(simulator):
    job = fast_client(simulator).create_job(REQUEST)
    identity = JobIdentity(job.id, REQUEST)
    with api_proxy(simulator.base_url) as proxy:
        proxy.shaping.rewrite_from_get = 1
        proxy.shaping.rewrite = {"tenantId": "aaaaaaaaaaaaaaaaaaaaaaaa"}
        with pytest.raises(IntegrityError) as caught:
            fast_client(simulator, base_url=proxy.base_url).get_pinned_job(identity)
    assert "aaaaaaaaaaaaaaaaaaaaaaaa" in str(caught.value)
    assert TENANT in str(caught.value)


# --- no failure outside its type (issue 8.6) -----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://exa mple.com",
        "http://127.0.0.1:99999",
        "http://[::1",
        "http://" + "a" * 64 + ".example.com",  # a DNS label longer than 63 characters
        "http://a\u200b.example.com",  # not a valid IDNA label
        "127.0.0.1:8080",
        "ftp://127.0.0.1",
    ],
)
def test_given_an_unusable_api_url_then_configuration_error_before_any_request(url):
    with pytest.raises(ConfigurationError, match="OMBORIGRID_API_URL"):
        OmboriGridClient(url, "t")


@pytest.mark.parametrize("token", ["tok\u20acen", "tok\nen"], ids=["not-latin-1", "newline"])
def test_given_a_token_that_cannot_go_into_a_header_then_configuration_error_and_nothing_sent(simulator, token):
    client = fast_client(simulator, token=lambda *, refresh=False: token)
    with pytest.raises(ConfigurationError, match="cannot be made"):
        client.create_job(REQUEST)
    assert posts(simulator) == 0


def test_given_a_tls_failure_then_it_is_typed_and_not_retried(simulator):
    # The simulator speaks plain HTTP: a TLS handshake with it fails.
    client = OmboriGridClient(simulator.base_url.replace("http://", "https://"), "t", retry=RetryPolicy(attempts=3))
    with pytest.raises(ApiUnavailable, match="TLS failed") as caught:
        client.get_job("0123456789abcdef01234567")
    assert "after 1 attempt (" in str(caught.value)
    # On a POST only a certificate failure proves nothing was sent; any other TLS failure stays ambiguous.
    with pytest.raises(AmbiguousCreate, match="TLS failed"):
        client.create_job(REQUEST)


# --- over TLS: certificate failures and the deadline cut ---------------------------------------------------


@pytest.fixture
def tls_server(tmp_path: Any) -> Iterator[tuple[str, str, list[str]]]:
    """A TLS server on 127.0.0.1 with a self-signed certificate that drips its answer's status line."""
    import datetime as dt
    import http.server
    import ipaddress
    import ssl
    import threading

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            del format, args

        def do_GET(self) -> None:
            seen.append(self.path)
            try:
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}":
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", str(cert_path), seen
    finally:
        server.shutdown()
        server.server_close()


def test_given_an_untrusted_certificate_then_a_post_is_known_unsent_and_not_retried(tls_server):
    url, _, seen = tls_server
    client = OmboriGridClient(url, "t", retry=RetryPolicy(attempts=3, backoff=0.01))
    with pytest.raises(ApiUnavailable, match=r"TLS failed.*CERTIFICATE_VERIFY_FAILED") as caught:
        client.create_job(REQUEST)
    assert "after 1 attempt (" in str(caught.value)
    assert seen == []


def test_given_a_tls_answer_that_drips_then_the_call_is_cut_at_its_deadline(tls_server):
    url, cafile, seen = tls_server
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides verify
    session.verify = cafile
    client = OmboriGridClient(url, "t", session=session, call_deadline=1.0, read_timeout=5.0)
    started = time.monotonic()
    with pytest.raises(ApiUnavailable, match="did not answer completely within the time allowed"):
        client.get_job("0123456789abcdef01234567")
    assert time.monotonic() - started < 1.8
    assert seen == [f"{JOBS}/0123456789abcdef01234567"]
