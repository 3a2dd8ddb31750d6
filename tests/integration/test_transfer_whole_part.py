"""A retried UploadPart sends the same bytes again, in one piece, signed over those very bytes.

A loopback HTTP server stands in for S3: it records every UploadPart it receives and fails the first one with
a 500, which botocore retries. (tests/unit/test_transfer_whole_part.py: what urllib3 is handed.)
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.config import Config

from omborigrid_export import checksum
from omborigrid_export.transfer import MultipartUpload

PART = 256 * 1024 + 7
_ERROR = b"<Error><Code>InternalError</Code><Message>try again</Message></Error>"


class _FlakyS3(BaseHTTPRequestHandler):
    attempts: list[tuple[dict[str, str], bytes]]

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.attempts.append(({k.lower(): v for k, v in self.headers.items()}, body))
        if len(self.attempts) == 1:
            self.send_response(500)
            self.send_header("Content-Length", str(len(_ERROR)))
            self.end_headers()
            self.wfile.write(_ERROR)
            return
        self.send_response(200)
        self.send_header("ETag", '"etag-2"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def flaky_s3() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    attempts: list[tuple[dict[str, str], bytes]] = []
    handler = type("Handler", (_FlakyS3,), {"attempts": attempts})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", attempts
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="eu-west-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"mode": "standard", "max_attempts": 3}, s3={"addressing_style": "path"}),
    )


def _upload(s3: Any) -> MultipartUpload:
    return MultipartUpload(s3, "bucket", "key", upload_id="upload-1", job_id="job-1", size=PART, part_size=PART)


def test_given_a_failed_upload_part_when_botocore_retries_then_the_same_bytes_go_again_in_one_piece(
    flaky_s3: tuple[str, list[tuple[dict[str, str], bytes]]],
) -> None:
    endpoint, attempts = flaky_s3
    data = bytearray(os.urandom(PART))
    record = _upload(_client(endpoint)).upload_part(1, memoryview(data), 0)
    assert record.etag == '"etag-2"'
    assert [body for _headers, body in attempts] == [bytes(data), bytes(data)]
    for headers, _body in attempts:
        assert "expect" not in headers  # a file body would have waited for "100 Continue" first
        assert headers["x-amz-checksum-crc32"] == checksum.to_base64(checksum.crc32_of(data))
        # Over plain HTTP the payload is signed: the signature covers the very bytes that were sent.
        assert headers["x-amz-content-sha256"] == hashlib.sha256(data).hexdigest()
