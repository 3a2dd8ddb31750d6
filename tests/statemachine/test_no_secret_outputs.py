"""No secret in what the deployed pipeline writes: events, ledger items, S3 objects and metadata, AWS call
parameters and the Step Functions history, with marker secrets, at every failure stage.

tests/integration/test_no_secret.py covers the CLI's and a Lambda's logs and traces; this covers the outputs
of the real ASL on the local engine. The API token is a marker, and a "front" server between the functions and
the simulator hands out download URLs whose presigned query carries marker values next to the simulator's own
signature (every value it handed out is a marker too). The front also plays the download failures the simulator
has no knob for (a 500, a dropped connection); the simulator plays the others. Each stage must really happen
(the execution's status and error are checked), so an export that never reached the download cannot pass.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests

from omborigrid_local.engine import LocalStack, task_failures
from omborigrid_local.simulator import Simulator

from .helpers import DAY, WAIT_SCALE, events_for, fresh_config, request_day
from .outputs import CHANNELS, aws_credentials, output_channels

API_TOKEN = "tok-MARKER-4f1c9a7e-apitoken"
URL_TOKEN = "FwoG)url'TOKEN-MARKER-7b2d"
URL_SIGNATURE = "5ig0c0ffeeMARKER9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d9c0b1a2f3e4d"
ACCESS_KEY = "AKIAMARKER0000004F1C"
MARKER_QUERY = urlencode(
    {
        "X-Amz-Credential": f"{ACCESS_KEY}/20261101/eu-west-1/s3/aws4_request",
        "X-Amz-Security-Token": URL_TOKEN,
        "X-Amz-Signature": URL_SIGNATURE,
    },
    safe="/)'",
)
#: Markers known before the run: the token, the marker query's values (and the tails a partial leak keeps),
#: and the query's parameter names (a URL that leaked whole carries them).
FIXED_MARKERS = (
    API_TOKEN,
    "MARKER-4f1c9a7e",
    URL_TOKEN,
    "TOKEN-MARKER-7b2d",
    URL_SIGNATURE,
    URL_SIGNATURE[:24],
    ACCESS_KEY,
    "X-Amz-Security-Token",
    "X-Amz-Signature",
    "X-Sim-Signature",
)


class Stage(NamedTuple):
    """One failure stage: what plays it, and what shows it really happened."""

    knobs: dict[str, Any]
    #: What the front does to the download GETs ("ok", "download_500", "drop"), for how many of them.
    front: str = "ok"
    front_failures: int = 0
    status: str = "FAILED"
    #: The outcome event's error (None: "Export Completed").
    error: str | None = None
    #: An error some task attempt must have failed with (the history then holds its cause).
    task_error: str | None = None


#: More download GETs than the function's own retries and the ASL's Retry make together: every one is spoiled.
EVERY_GET = 10_000
STAGES = {
    "success": Stage({}, status="SUCCEEDED"),
    "wrong_size": Stage({"file_size_delta": 10}, error="IntegrityError", task_error="IntegrityError"),
    "expired_url": Stage({"expire_next_downloads": 1000}, error="DownloadUrlExpired", task_error="DownloadUrlExpired"),
    "download_500": Stage({}, "download_500", EVERY_GET, error="TransferFailed", task_error="TransferFailed"),
    # One dropped connection, which the function's own retry resumes (dropping every GET costs its real
    # backoff, about a minute per execution, and ends in the TransferFailed the 500 stage already scans).
    "dropped": Stage({}, "drop", 1, status="SUCCEEDED"),
    "bad_location": Stage({"bad_location": "control"}, error="UnsafeUrl", task_error="UnsafeUrl"),
    "truncated_parquet": Stage({"truncated_parquet": 4096}, error="IntegrityError", task_error="IntegrityError"),
    "foreign_tenant": Stage(
        {"foreign_tenant": "5f0c6e2a9b8d7c6e5f4a3b2c"}, error="IntegrityError", task_error="IntegrityError"
    ),
    "job_failed": Stage({"final_status": "failed"}, error="ExportFailed", task_error="ExportFailed"),
}
_FOUND: dict[str, dict[str, list[str]]] = {}


class Front(ThreadingHTTPServer):
    """The API and download host as the functions see them; the simulator does the real work behind it."""

    daemon_threads = True

    def __init__(self, simulator_url: str) -> None:
        super().__init__(("127.0.0.1", 0), _FrontHandler)
        self.simulator_url = simulator_url
        self.stage = "ok"
        #: How many more download GETs the stage spoils (then the front passes them through).
        self.failures_left = 0
        self.lock = threading.Lock()
        #: Every query value of every download URL handed out (the simulator's signatures included).
        self.handed_out: set[str] = set()
        self.downloads = 0

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a function hanging up mid-response is part of the dropped-connection stage

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _FrontHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Front

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._download() if self.path.startswith("/download/") else self._api(b"")

    def do_HEAD(self) -> None:
        self._download()

    def do_POST(self) -> None:
        self._api(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _api(self, body: bytes) -> None:
        upstream = requests.request(
            self.command,
            self.server.simulator_url + self.path,
            data=body or None,
            headers={k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")},
            timeout=30,
        )
        payload = upstream.content
        try:
            job = upstream.json()
        except ValueError:
            job = None
        if isinstance(job, dict) and isinstance(job.get("downloadUrl"), str):
            parts = urlsplit(job["downloadUrl"])
            with self.server.lock:
                self.server.handed_out.update(value for _, value in parse_qsl(parts.query) if len(value) >= 16)
            job["downloadUrl"] = f"{self.server.url}{parts.path}?{parts.query}&{MARKER_QUERY}"
            payload = json.dumps(job).encode()
        self._reply(upstream.status_code, payload, {"Content-Type": upstream.headers.get("Content-Type", "")})

    def _download(self) -> None:
        with self.server.lock:
            self.server.downloads += 1
        spoil = self.command == "GET" and self._take_failure()
        if spoil and self.server.stage == "download_500":
            error = b"<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>"
            self._reply(500, error, {"Content-Type": "application/xml"})
            return
        headers = {"Range": self.headers["Range"]} if self.headers.get("Range") else {}
        upstream = requests.request(
            self.command,
            self.server.simulator_url + self.path,
            headers=headers,
            allow_redirects=False,
            timeout=30,
        )
        kept = ("Content-Type", "Content-Range", "Accept-Ranges", "ETag", "Location")
        reply = {k: upstream.headers[k] for k in kept if k in upstream.headers}
        if spoil and self.server.stage == "drop" and upstream.status_code in (200, 206):
            self.send_response(upstream.status_code)
            for name, value in {**reply, "Content-Length": str(len(upstream.content))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(upstream.content[: len(upstream.content) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if self.command == "HEAD" and "Content-Length" in upstream.headers:
            reply["Content-Length"] = upstream.headers["Content-Length"]
        self._reply(upstream.status_code, b"" if self.command == "HEAD" else upstream.content, reply)

    def _take_failure(self) -> bool:
        with self.server.lock:
            if self.server.failures_left <= 0:
                return False
            self.server.failures_left -= 1
            return True

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)


@pytest.fixture(scope="module")
def module_simulator(sim_cache: Path) -> Iterator[Simulator]:
    with Simulator(fresh_config(token=API_TOKEN), cache_dir=sim_cache) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def front(module_simulator: Simulator) -> Iterator[Front]:
    server = Front(module_simulator.base_url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def stack(front: Front) -> Iterator[LocalStack]:
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    local = LocalStack(api_url=front.url, token=API_TOKEN, wait_scale=WAIT_SCALE).start()
    try:
        yield local
    finally:
        local.close()


@pytest.fixture
def marker_sim(module_simulator: Simulator, front: Front) -> Simulator:
    """The module's simulator reset to fresh knobs that keep the marker token, and the front back to "ok"."""
    module_simulator.reset()
    module_simulator.configure(**fresh_config(token=API_TOKEN).to_dict())
    front.stage, front.failures_left = "ok", 0
    return module_simulator


@pytest.mark.parametrize("stage", list(STAGES))
def test_given_marker_secrets_at_each_stage_then_no_pipeline_output_carries_one(
    stack: LocalStack, marker_sim: Simulator, front: Front, tenant: str, stage: str
) -> None:
    played = STAGES[stage]
    marker_sim.configure(**played.knobs)
    front.stage, front.failures_left = played.front, played.front_failures
    first_call = len(stack.recorder)
    downloads_before = front.downloads

    request_day(stack, tenant)
    [execution] = stack.wait_for_executions(1, timeout=60, match=tenant)

    history = stack.history(execution["executionArn"])
    failed_with = [f["error"] for f in task_failures(history)]
    [event] = events_for(stack, tenant)
    assert execution["status"] == played.status, (stage, failed_with)
    assert event["detail"]["dataDateFrom"] == DAY
    if played.error is None:
        assert event["detail-type"] == "Export Completed"
        assert tenant in event["detail"]["key"]
    else:
        assert (event["detail-type"], event["detail"]["error"]) == ("Export Failed", played.error)
    if played.task_error is not None:
        assert played.task_error in failed_with, failed_with
    assert front.failures_left < played.front_failures or played.front_failures == 0  # the front spoiled GETs
    if stage != "job_failed":
        assert front.downloads > downloads_before  # the download stage was reached
    assert front.handed_out, "the API handed out no download URL"

    channels = output_channels(stack, tenant, first_call, [execution["executionArn"]])
    credentials = aws_credentials()
    assert credentials, "no AWS credentials in the environment to look for"
    markers = [*FIXED_MARKERS, *sorted(front.handed_out), *credentials]
    found = {name: [m for m in markers if m in text] for name, text in channels.items()}
    _FOUND[stage] = found
    sizes = {name: len(text) for name, text in channels.items()}
    print(f"\n[no-secret] {stage}: {len(markers)} markers over {sizes} chars; found {found}")
    assert all(sizes[name] > 0 for name in ("events", "ledger", "aws call params", "sfn history")), sizes
    assert found == {name: [] for name in CHANNELS}


def test_the_capture_is_real_markers_written_to_the_channels_are_found(
    stack: LocalStack, front: Front, tenant: str
) -> None:
    """The scan finds a leak when there is one: a handed-out URL and the token written into an event, an
    object's metadata and body come back from the events, S3 and call-parameter channels."""
    [signature, *_] = sorted(front.handed_out)
    leak = f"{front.url}/download/j/f.parquet?X-Sim-Signature={signature}&{MARKER_QUERY} {API_TOKEN}"
    first_call = len(stack.recorder)
    stack.client("events").put_events(
        Entries=[{"Source": "test", "DetailType": "Leak", "Detail": json.dumps({"tenantId": tenant, "url": leak})}]
    )
    key = f"omborigrid/tenant={tenant}/leak.json"
    stack.client("s3").put_object(Bucket=stack.bucket, Key=key, Body=leak.encode(), Metadata={"token": API_TOKEN})

    channels = output_channels(stack, tenant, first_call, [])
    found = {name: [m for m in (*FIXED_MARKERS, signature) if m in text] for name, text in channels.items()}
    print(f"\n[no-secret] control with markers written: found {found}")
    print(f"[no-secret] {len(_FOUND)} stages x {len(CHANNELS)} channels scanned, markers found: {_FOUND}")
    for name in ("events", "s3 objects"):
        assert {API_TOKEN, signature, URL_TOKEN, URL_SIGNATURE} <= set(found[name]), (name, found[name])
    # A write call's parameters are scanned without its body (recorded as a stream); its metadata is there.
    for name in ("s3 write params", "aws call params"):
        assert API_TOKEN in found[name], (name, found[name])
    assert found["ledger"] == found["sfn history"] == []
