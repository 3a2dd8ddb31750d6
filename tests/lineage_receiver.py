"""A local OpenLineage receiver: a real HTTP server on loopback that keeps every run event POSTed to it, and the
schema the events are validated against (``tests/openlineage/run-event.schema.json``, written from the spec's
documented required fields: no registry package ships the spec's JSON files)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA = json.loads((Path(__file__).parent / "openlineage" / "run-event.schema.json").read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


def lineage_errors(event: dict[str, Any]) -> list[str]:
    return [e.message for e in VALIDATOR.iter_errors(event)]


class Receiver(ThreadingHTTPServer):
    status = 201
    received: list[dict[str, Any]]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api/v1/lineage"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers["Content-Type"] == "application/json":
            self.server.received.append(json.loads(body))
        self.send_response(self.server.status if self.headers["Content-Type"] == "application/json" else 415)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def lineage_receiver() -> Iterator[Receiver]:
    server = Receiver(("127.0.0.1", 0), _Handler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
