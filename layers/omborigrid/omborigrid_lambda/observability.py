"""Secrets stay out of what a Lambda function emits: its logs and its X-Ray traces.

In Lambda the handlers we do not create are the ones that matter: the runtime's root handler (which every
third-party logger propagates to) and Powertools Logger's own. Each gets ``logsafety.RedactingFilter``;
Powertools formats exceptions itself from ``exc_info``, so its JSON serializer is wrapped as well and
every string of the finished log document is scrubbed.

With ``Tracing: Active``, the X-Ray SDK records each failed call's exception message (a requests error
quotes the presigned URL in full) and Powertools adds the exception as metadata. Rather than chase every
place an entity is filled, the recorder's emitter is wrapped: each segment and subsegment is serialised,
every string in it scrubbed, and only then sent to the daemon. Nothing leaves unscrubbed, whatever the
SDK or Powertools put in.

Handlers call :func:`install` once, at import, after creating their Powertools objects.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any, Protocol

from omborigrid_export import logsafety
from omborigrid_export.redact import register_secrets, scrub_tree

#: Environment variables whose values are secrets wherever they appear (Lambda sets the AWS ones).
SECRET_ENVIRONMENT = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "OMBORIGRID_TOKEN")


class _Entity(Protocol):
    def serialize(self) -> str: ...


class _Emitter(Protocol):
    def send_entity(self, entity: Any) -> None: ...

    def set_daemon_address(self, address: str | None) -> None: ...


class ScrubbedEntity:
    """What the emitter serialises instead of the entity: the same document, every string scrubbed."""

    def __init__(self, entity: _Entity) -> None:
        self._entity = entity

    def serialize(self) -> str:
        return json.dumps(scrub_tree(json.loads(self._entity.serialize())))


class ScrubbingEmitter:
    """Wraps the X-Ray SDK's emitter; the daemon only ever receives scrubbed documents."""

    def __init__(self, inner: _Emitter) -> None:
        self.inner = inner

    def send_entity(self, entity: _Entity) -> None:
        self.inner.send_entity(ScrubbedEntity(entity))

    def set_daemon_address(self, address: str | None) -> None:
        self.inner.set_daemon_address(address)

    def __getattr__(self, name: str) -> Any:  # ip, port and whatever else a caller reads off the emitter
        return getattr(self.inner, name)


class _ScrubbingSerializer:
    def __init__(self, inner: Callable[[Any], str]) -> None:
        self.inner = inner

    def __call__(self, log: Any) -> str:
        return self.inner(scrub_tree(json.loads(self.inner(log))))


def install(*powertools_loggers: Any) -> None:
    """Scrub the root logger's handlers, the given Powertools Loggers and the X-Ray recorder. Idempotent."""
    register_secrets(os.environ.get(name) for name in SECRET_ENVIRONMENT)
    logsafety.install_on_root()
    for powertools_logger in powertools_loggers:
        _install_on_powertools(powertools_logger)
    install_on_xray()


def _install_on_powertools(powertools_logger: Any) -> None:
    handler = powertools_logger.registered_handler
    if not isinstance(handler, logging.Handler):
        return
    logsafety.install_on([handler])
    formatter = handler.formatter
    serializer = getattr(formatter, "json_serializer", None)
    if callable(serializer) and not isinstance(serializer, _ScrubbingSerializer):
        formatter.json_serializer = _ScrubbingSerializer(serializer)  # type: ignore[union-attr]


def install_on_xray() -> None:
    """Wrap the global X-Ray recorder's emitter (the one Powertools Tracer uses) once."""
    try:
        from aws_xray_sdk.core import xray_recorder  # type: ignore[import-untyped]
    except ImportError:  # tracing is optional: without the SDK nothing is traced
        return
    if not isinstance(xray_recorder.emitter, ScrubbingEmitter):
        xray_recorder.emitter = ScrubbingEmitter(xray_recorder.emitter)
