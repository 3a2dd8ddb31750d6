"""A shaping proxy in front of the simulator's API: what a buggy gateway does to answers.

It forwards every request to the simulator and can, for ``GET`` of a job, drip the answer one byte at a time,
rewrite fields of the job it returns (an identity change), or replace the answer with an oversized body.
Downloads do not pass through it (the job's ``downloadUrl`` names the simulator itself).
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

JOB_PATH = "/api/analytics-export-job"


@dataclass
class Shaping:
    #: Seconds between the bytes of a job GET's body (headers are sent at once, with the full length).
    drip_seconds: float | None = None
    #: Seconds between the bytes of a job GET's status line and headers (then the body at once).
    drip_head_seconds: float | None = None
    #: From this job GET on (1-based), the job's fields are overwritten with ``rewrite``.
    rewrite_from_get: int | None = None
    rewrite: dict[str, Any] = field(default_factory=dict)
    #: Answer job GETs with HTTP 200 and a body of this many bytes.
    oversized_bytes: int | None = None
    #: Job GETs (1-based) answered with HTTP 200 and a truncated body.
    garbled_gets: tuple[int, ...] = ()
    #: Job GETs (1-based) whose connection closes halfway through the announced body.
    cut_gets: tuple[int, ...] = ()
    job_gets: int = 0
    posts: int = 0


class ApiProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.shaping = Shaping()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

            def do_GET(self) -> None:
                proxy._forward(self, "GET")

            def do_POST(self) -> None:
                proxy._forward(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ApiProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _forward(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        request_body = handler.rfile.read(length) if length else b""
        is_job_get = method == "GET" and handler.path.startswith(JOB_PATH + "/")
        with self._lock:
            if is_job_get:
                self.shaping.job_gets += 1
            elif method == "POST":
                self.shaping.posts += 1
            shaping = dataclasses.replace(self.shaping)
        upstream = http.client.HTTPConnection(*self._upstream, timeout=30)
        headers = {k: v for k, v in handler.headers.items() if k.lower() in ("authorization", "content-type")}
        upstream.request(method, handler.path, body=request_body or None, headers=headers)
        answer = upstream.getresponse()
        status, body = answer.status, answer.read()
        content_type = answer.getheader("Content-Type") or "application/json"
        retry_after = answer.getheader("Retry-After")
        upstream.close()
        if is_job_get and status == 200:
            body = self._shape(body, shaping)
        if is_job_get and shaping.drip_head_seconds is not None:
            self._drip_head(handler, status, content_type, body, shaping.drip_head_seconds)
            return
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        if retry_after:
            handler.send_header("Retry-After", retry_after)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if is_job_get and shaping.job_gets in shaping.cut_gets:
            handler.wfile.write(body[: len(body) // 2])
            handler.close_connection = True
            return
        try:
            if is_job_get and shaping.drip_seconds is not None:
                for i in range(len(body)):
                    handler.wfile.write(body[i : i + 1])
                    handler.wfile.flush()
                    time.sleep(shaping.drip_seconds)
            else:
                handler.wfile.write(body)
        except OSError:
            handler.close_connection = True

    @staticmethod
    def _drip_head(handler: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes, pause: float) -> None:
        head = f"HTTP/1.1 {status} OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        try:
            for byte in head.encode():
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(pause)
            handler.wfile.write(body)
        except OSError:
            pass
        handler.close_connection = True

    @staticmethod
    def _shape(body: bytes, shaping: Shaping) -> bytes:
        if shaping.oversized_bytes is not None:
            return b" " * shaping.oversized_bytes
        if shaping.job_gets in shaping.garbled_gets:
            return body[: len(body) // 2]
        if shaping.rewrite_from_get is not None and shaping.job_gets >= shaping.rewrite_from_get:
            job = json.loads(body)
            job.update(shaping.rewrite)
            return json.dumps(job).encode()
        return body


@contextmanager
def api_proxy(upstream: str) -> Iterator[ApiProxy]:
    proxy = ApiProxy(upstream).start()
    try:
        yield proxy
    finally:
        proxy.stop()
