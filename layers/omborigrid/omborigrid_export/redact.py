"""Keep secrets out of messages.

Presigned URLs carry their credentials in the query string, and library exceptions (requests, urllib3)
like to quote the URL they failed on. Everything that describes a request goes through here.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_URL_QUERY_RE = re.compile(r"(https?://[^\s'\"?<>]*|/[^\s'\"?<>]*)\?[^\s'\"<>)]*")
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")


def host_of(url: str) -> str:
    """The host (and port) of a URL: the most of a download URL that may be logged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or "<no host>"
    return f"{host}:{parts.port}" if parts.port else host


def scrub(text: str) -> str:
    """Remove query strings of URLs and bearer tokens from free text."""
    return _BEARER_RE.sub(r"\1<redacted>", _URL_QUERY_RE.sub(r"\1?<redacted>", text))


def describe_exception(exc: BaseException) -> str:
    """A short, secret-free description of a library exception: its class and scrubbed message."""
    message = scrub(str(exc)) if str(exc) else ""
    if len(message) > 300:
        message = message[:297] + "..."
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
