"""No secret in any output: every channel captured, with marker secrets, at every failure stage.

A "front" server stands between the CLI and the simulator, the way a real API and a presigned download host
would: it hands out download URLs carrying a marker presigned query (``X-Amz-Security-Token`` with a quote
and a parenthesis in it, ``X-Amz-Credential`` with a marker access key, ``X-Amz-Signature``), and plays
one failure stage on the download (403, 500, dropped connection, redirect to the metadata address, a
malformed response header that makes urllib3 log the whole URL, a refused connection) or on the API (an
error message echoing the token, wrapped in terminal escapes). The AWS credentials of the run are markers
too, so botocore's debug output is exercised. Channels: the CLI's stderr and stdout at each log level, S3
objects (manifests) and their metadata; and, in Lambda form, X-Ray datagrams sent to a local UDP socket and
the Powertools log lines.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests

from tests.conftest import TENANT, free_port

DAY = "2026-11-01"

API_TOKEN = "tok-MARKER-apitoken-0001"
URL_TOKEN = "FwoG)url'TOKEN-MARKER-0002"
URL_SIGNATURE = "0003c0ffee5ig4a7u2emarker9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d"
ACCESS_KEY = "AKIAMARKER0000000004"
SECRET_KEY = "MarkerSecretKey0005/abcdefghijKLMNOPQRS"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEMARKERsession0006+token/value=="
#: Every marker, and the distinctive tail of the ones a partial leak could cut.
MARKERS = (
    API_TOKEN,
    URL_TOKEN,
    "TOKEN-MARKER-0002",
    URL_SIGNATURE,
    URL_SIGNATURE[:24],
    ACCESS_KEY,
    "MARKER0000000004",
    SECRET_KEY,
    "abcdefghijKLMNOPQRS",
    SESSION_TOKEN,
    "MARKERsession0006",
)
MARKER_QUERY = urlencode(
    {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{ACCESS_KEY}/20261101/eu-west-1/s3/aws4_request",
        "X-Amz-Security-Token": URL_TOKEN,
        "X-Amz-Signature": URL_SIGNATURE,
    },
    safe="/)'",
)

DOWNLOAD_STAGES = ("ok", "malformed_header", "403", "500", "drop", "redirect", "refused", "size_mismatch")
API_STAGES = ("api_echo",)
STAGES = DOWNLOAD_STAGES + API_STAGES
LEVELS = {"default": [], "-v": ["-v"], "--debug": ["--debug"]}
EXPECTED_EXIT = {"ok": 0, "malformed_header": 0}
#: What the default-level stderr says at each failing stage: the stage really happened.
EXPECTED_SENTENCE = {
    "403": "kept being refused (HTTP 403)",
    "500": "answered HTTP 500",
    "drop": "failed 2 times",
    "redirect": "link-local or metadata address; refused",
    "refused": "Reading the start of the download from",
    "size_mismatch": "fileSize",
    "api_echo": "rejected the request",
}


def markers_in(text: str) -> list[str]:
    return [marker for marker in MARKERS if marker in text]


class Front(ThreadingHTTPServer):
    """The API and download host as the CLI sees them; the simulator does the real work behind it."""

    daemon_threads = True

    def __init__(self, simulator_url: str) -> None:
        super().__init__(("127.0.0.1", 0), _FrontHandler)
        self.simulator_url = simulator_url
        self.stage = "ok"
        self.closed_port = free_port()

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client hanging up mid-response is one of the stages, not an error of the test

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def download_url(self, simulator_download_url: str) -> str:
        parts = urlsplit(simulator_download_url)
        port = self.closed_port if self.stage == "refused" else self.server_address[1]
        return f"http://127.0.0.1:{port}{parts.path}?{parts.query}&{MARKER_QUERY}"


class _FrontHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Front

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.server.stage == "api_echo":
            message = (
                f"\x1b[31mrejected\x1b[0m\r\nfor Authorization {self.headers.get('Authorization')} "
                f"see {self.server.url}/help?X-Amz-Security-Token={URL_TOKEN}"
            )
            self._reply(422, json.dumps({"message": message}).encode(), {"Content-Type": "application/json"})
            return
        self._api("POST", body)

    def do_GET(self) -> None:
        if self.path.startswith("/download/"):
            self._download()
        else:
            self._api("GET", b"")

    def _api(self, method: str, body: bytes) -> None:
        upstream = requests.request(
            method,
            self.server.simulator_url + self.path,
            data=body or None,
            headers={k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")},
            timeout=10,
        )
        content = upstream.content
        if upstream.ok and "downloadUrl" in upstream.text:
            job = upstream.json()
            job["downloadUrl"] = self.server.download_url(job["downloadUrl"])
            content = json.dumps(job).encode()
        self._reply(upstream.status_code, content, {"Content-Type": "application/json"})

    def _download(self) -> None:
        stage = self.server.stage
        if stage == "403":
            self._reply(403, f"<Error><Code>AccessDenied</Code><Resource>{self.path}</Resource></Error>".encode())
            return
        if stage == "500":
            self._reply(500, f"<Error><Code>InternalError</Code><Resource>{self.path}</Resource></Error>".encode())
            return
        if stage == "redirect":
            target = f"http://169.254.169.254/latest/meta-data/?X-Amz-Security-Token={URL_TOKEN}"
            self._reply(302, b"", {"Location": target})
            return
        path, _, query = self.path.partition("?")
        kept = urlencode([(k, v) for k, v in parse_qsl(query) if not k.startswith("X-Amz-")])
        headers = {"Range": self.headers["Range"]} if self.headers.get("Range") else {}
        with requests.get(f"{self.server.simulator_url}{path}?{kept}", headers=headers, stream=True, timeout=10) as up:
            self.send_response(up.status_code)
            for name in ("Content-Length", "Content-Range", "Content-Type", "Accept-Ranges"):
                if name in up.headers:
                    self.send_header(name, up.headers[name])
            if stage == "malformed_header":
                self.send_header("X-Note", "fine\r\nthis line is no header")  # urllib3: "Failed to parse headers"
            self.end_headers()
            sent = 0
            for chunk in up.iter_content(64 * 1024):
                if stage == "drop" and sent + len(chunk) > 100_000:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(chunk)
                sent += len(chunk)

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def front(simulator: Any) -> Iterator[Front]:
    simulator.configure(token=API_TOKEN)
    server = Front(simulator.base_url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def marker_environment(front: Front, s3_endpoint: str) -> dict[str, str]:
    return {
        **os.environ,
        "OMBORIGRID_API_URL": front.url,
        "OMBORIGRID_TOKEN": API_TOKEN,
        "OMBORIGRID_ALLOW_LOCAL_URLS": "1",
        "OMBORIGRID_PART_SIZE_MIB": "5",
        "OMBORIGRID_TRANSFER_ATTEMPTS": "2",
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_SESSION_TOKEN": SESSION_TOKEN,
        "NO_COLOR": "1",
    }


def s3_channels(s3: Any, bucket: str) -> str:
    """Everything S3 holds for the run: keys, metadata of every object, and the bodies of the JSON ones."""
    texts: list[str] = []
    for listed in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        key = listed["Key"]
        head = s3.head_object(Bucket=bucket, Key=key)
        texts.append(key)
        texts.append(json.dumps(head.get("Metadata", {})))
        if key.endswith(".json"):
            texts.append(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode())
    for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        texts.append(json.dumps(upload, default=str))
    return "\n".join(texts)


@pytest.mark.parametrize("level", list(LEVELS))
@pytest.mark.parametrize("stage", STAGES)
def test_given_marker_secrets_at_every_failure_stage_then_no_cli_channel_carries_one(
    front: Front, simulator: Any, s3_endpoint: str, s3: Any, bucket: str, stage: str, level: str
) -> None:
    front.stage = stage
    if stage == "size_mismatch":
        simulator.configure(file_size_delta=10)
    simulator.configure(target_bytes=6 * 1024 * 1024)
    script = Path(sys.executable).with_name("omborigrid-export")
    args = ["--tenant", TENANT, "--from", DAY, "--to", DAY, "--dest", f"s3://{bucket}/lake"]
    args += ["--poll-initial", "1", "--poll-max", "1", "--json"]

    result = subprocess.run(
        [str(script), *LEVELS[level], "run", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=marker_environment(front, s3_endpoint),
        check=False,
    )

    assert result.returncode == EXPECTED_EXIT.get(stage, 1), result.stderr[-2000:]
    channels = {"stderr": result.stderr, "stdout": result.stdout, "s3": s3_channels(s3, bucket)}
    found = {name: markers_in(text) for name, text in channels.items()}
    print(f"\n[no-secret] {stage} {level}: stderr {len(result.stderr)} chars, markers found {found}")
    if level == "default" and stage in EXPECTED_SENTENCE:
        assert EXPECTED_SENTENCE[stage] in result.stderr
    assert found == {"stderr": [], "stdout": [], "s3": []}
    if level == "--debug":
        assert "DEBUG" in result.stderr  # the debug channel really was open
    if stage == "malformed_header":
        assert "Failed to parse headers" in result.stderr  # urllib3 did log the URL it failed on
    if result.returncode == 0:
        assert '"jobId"' in channels["s3"]  # the manifest was landed, and read


def test_given_server_text_with_terminal_escapes_then_stderr_has_no_control_characters(
    front: Front, s3_endpoint: str, bucket: str
) -> None:
    front.stage = "api_echo"
    script = Path(sys.executable).with_name("omborigrid-export")
    args = ["run", "--tenant", TENANT, "--from", DAY, "--to", DAY, "--dest", f"s3://{bucket}/lake"]

    result = subprocess.run(
        [str(script), "-v", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=marker_environment(front, s3_endpoint),
        check=False,
    )

    assert result.returncode == 1
    assert "rejected" in result.stderr
    assert "\x1b" not in result.stderr


def test_given_the_cli_without_its_filter_then_debug_stderr_does_carry_the_markers(
    front: Front, simulator: Any, s3_endpoint: str, bucket: str
) -> None:
    """The capture is real: with the filter and the hook switched off, --debug prints the markers."""
    front.stage = "malformed_header"
    simulator.configure(target_bytes=6 * 1024 * 1024)
    unfiltered = (
        "import sys; import omborigrid_export.logsafety as safety; safety.install_on_root = lambda: None; "
        "safety.scrubbed_excepthook = sys.__excepthook__; from omborigrid_export_cli.main import main; "
        "sys.exit(main())"
    )
    args = ["--tenant", TENANT, "--from", DAY, "--to", DAY, "--dest", f"s3://{bucket}/lake", "--poll-initial", "1"]

    result = subprocess.run(
        [sys.executable, "-c", unfiltered, "--debug", "run", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=marker_environment(front, s3_endpoint),
        check=False,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    leaked = markers_in(result.stderr)
    print(f"\n[no-secret] baseline without the filter, --debug: markers found {leaked}")
    assert URL_TOKEN in leaked
    assert SESSION_TOKEN in leaked


# --- Lambda: Powertools logs and X-Ray datagrams -------------------------------------------------------------

LAMBDA_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from aws_lambda_powertools import Logger, Tracer
    from omborigrid_export.client import OmboriGridClient
    from omborigrid_export.models import ExportRequest
    from omborigrid_export.settings import TransferSettings, MIB
    from omborigrid_export.transfer import Transfer
    from omborigrid_export.safehttp import pinned_session_factory
    import boto3, requests, time

    logger = Logger(service="netsec")
    tracer = Tracer(service="netsec")
    if sys.argv[1] == "install":
        from omborigrid_lambda import observability
        observability.install(logger)

    @logger.inject_lambda_context
    @tracer.capture_lambda_handler(capture_response=False)
    def handler(event, context):
        client = OmboriGridClient(event["api"], event["token"])
        job = client.create_job(ExportRequest.parse(event["tenant"], event["day"], event["day"]))
        while job.status.value != "done":
            time.sleep(0.05)
            job = client.get_job(job.id)
        logger.info("job %s ready at %s", job.id, job.download_url)
        s3 = boto3.client("s3", endpoint_url=event["s3"], region_name="eu-west-1")
        sessions = pinned_session_factory(allow_local=True) if sys.argv[3] == "pinned" else requests.Session
        settings = TransferSettings(part_size=5 * MIB, max_attempts=2)
        transfer = Transfer(s3, settings, allow_local_urls=True, session_factory=sessions)
        try:
            return transfer.land(job, lambda: client.get_job(job.id), bucket=event["bucket"], key="k/file").landed.key
        except Exception:
            logger.exception("landing failed for %s", job.download_url)
            raise

    class Context:
        function_name = "netsec"; memory_limit_in_mb = 128; aws_request_id = "req-1"
        invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:netsec"
        def get_remaining_time_in_millis(self): return 60000

    try:
        handler(json.loads(sys.argv[2]), Context())
    except Exception as exc:
        print("handler raised", type(exc).__name__, file=sys.stderr)
    """
)


class Datagrams:
    """A UDP socket standing in for the X-Ray daemon; collects every datagram sent to it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.received: list[str] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def drain(self) -> list[str]:
        while True:
            try:
                data, _ = self.sock.recvfrom(65536)
            except TimeoutError:
                return self.received
            self.received.append(data.decode("utf-8", "replace"))


def run_lambda(
    front: Front, s3_endpoint: str, bucket: str, mode: str, datagrams: Datagrams, sessions: str = "plain"
) -> tuple[str, str]:
    env = {
        **marker_environment(front, s3_endpoint),
        "LAMBDA_TASK_ROOT": "/var/task",
        "AWS_LAMBDA_FUNCTION_NAME": "netsec",
        "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        "AWS_XRAY_DAEMON_ADDRESS": datagrams.address,
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        # Tracing on, as with Tracing: Active, whatever this session's environment says (the handler tests set
        # POWERTOOLS_TRACE_DISABLED=1 for the whole session, which this subprocess would otherwise inherit).
        "POWERTOOLS_TRACE_DISABLED": "false",
        "POWERTOOLS_LOG_LEVEL": "DEBUG",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    event = {"api": front.url, "token": API_TOKEN, "tenant": TENANT, "day": DAY, "s3": s3_endpoint, "bucket": bucket}
    result = subprocess.run(
        [sys.executable, "-c", LAMBDA_SCRIPT, mode, json.dumps(event), sessions],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    return result.stdout, result.stderr


@pytest.fixture
def datagrams() -> Iterator[Datagrams]:
    receiver = Datagrams()
    yield receiver
    receiver.sock.close()


@pytest.mark.parametrize("sessions", ["plain", "pinned"])
@pytest.mark.parametrize("stage", ["ok", "403", "500", "drop", "redirect", "refused", "malformed_header"])
def test_given_tracing_active_then_no_xray_datagram_or_lambda_log_carries_a_marker(
    front: Front, simulator: Any, s3_endpoint: str, bucket: str, datagrams: Datagrams, stage: str, sessions: str
) -> None:
    front.stage = stage
    simulator.configure(target_bytes=6 * 1024 * 1024)

    stdout, stderr = run_lambda(front, s3_endpoint, bucket, "install", datagrams, sessions)

    received = datagrams.drain()
    traced = "\n".join(received)
    assert received, f"no X-Ray datagram arrived: {stderr[-2000:]}"
    assert '"subsegments"' in traced or '"type": "subsegment"' in traced
    found = {"xray": markers_in(traced), "lambda stdout": markers_in(stdout), "lambda stderr": markers_in(stderr)}
    print(f"\n[no-secret] lambda {stage} ({sessions} sessions): {len(received)} datagrams, markers found {found}")
    assert found == {"xray": [], "lambda stdout": [], "lambda stderr": []}
    if stage != "ok":
        assert '"exceptions"' in traced  # the tracer did record the failure, scrubbed
    if stage == "refused":
        messages = [m for m in _exception_messages(received) if "?" in m]
        print("  e.g.", messages[:2])
        assert any("?<redacted>" in m for m in messages)  # the URL is there, its query is not


def _exception_messages(datagrams: list[str]) -> list[str]:
    messages: list[str] = []

    def walk(entity: dict[str, Any]) -> None:
        cause = entity.get("cause")
        if isinstance(cause, dict):
            messages.extend(str(e.get("message", "")) for e in cause.get("exceptions", []))
        for child in entity.get("subsegments", []):
            walk(child)

    for datagram in datagrams:
        walk(json.loads(datagram.split("\n", 1)[1]))
    return messages


def test_given_tracing_active_without_the_installation_then_the_markers_do_leak(
    front: Front, simulator: Any, s3_endpoint: str, bucket: str, datagrams: Datagrams
) -> None:
    """The capture is real: without observability.install the same run leaks into X-Ray and the logs."""
    front.stage = "refused"
    simulator.configure(target_bytes=6 * 1024 * 1024)

    stdout, _stderr = run_lambda(front, s3_endpoint, bucket, "plain", datagrams)

    assert markers_in("\n".join(datagrams.drain()))
    assert markers_in(stdout)
