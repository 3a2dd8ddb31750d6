"""Keep secrets out of messages, and server text harmless.

Presigned URLs carry their credentials in the query string, library exceptions (requests, urllib3,
botocore) like to quote the URL or headers they failed on, and an API may echo the token back. Everything
that describes a request goes through here: :func:`scrub` for our own messages and third-party log lines,
:func:`server_text` for words a server chose (error messages, statuses, file names), which are also
stripped of control characters (ANSI escapes can rewrite a terminal, newlines can forge log lines) and
truncated. Redaction errs on the side of removing too much: a whole query string, whatever it holds, is
replaced, and so is anything shaped like a credential.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

REDACTED = "<redacted>"

#: A query: from "?" up to whitespace or a character that cannot appear unescaped in a URL requests sends.
#: It is a URL's (or an absolute path's, as urllib3 quotes it) when the word before it holds a "/".
_QUERY_RE = re.compile(r"\?(?!<redacted>)[^\s\"<>]+")
_WORD_BREAKS = frozenset("'\"?<>")
_LOOKBACK = 2048
#: The same, percent-encoded once (a URL carried inside another URL's query or a JSON document).
_ENCODED_QUERY_RE = re.compile(
    r"(?i)(https?%3A%2F%2F[^\s'\"<>%]*(?:%(?!3F)[0-9A-F]{2}[^\s'\"<>%]*)*)%3F(?!<redacted>)[^\s\"<>]+"
)
#: Authorization headers as botocore/urllib3 print them: quoted (dict repr, JSON) or as a header line.
#: The scheme word (Bearer, AWS4-HMAC-SHA256) is kept, the rest of the value goes.
_AUTH_QUOTED_RE = re.compile(r"(?i)(\bauthorization['\"]?\s*[:=]\s*b?(['\"])(?:[A-Za-z][A-Za-z0-9-]*\s+)?).*?\2")
_AUTH_LINE_RE = re.compile(r"(?i)(\bauthorization\s*[:=]\s*(?!b?['\"])(?:[A-Za-z][A-Za-z0-9-]*\s+)?)[^\r\n'\"]+")
_BEARER_RE = re.compile(r"(?i)(\bbearer\s+)[^\s'\",;]+")
#: Named secrets anywhere: query parameters, header dicts, JSON, "name: value".
_SECRET_NAME = r"(?:token|secret|password|passwd|signature|credential|api[_-]?key)[\w-]{0,40}['\"]?\s*"  # noqa: S105 - a pattern
_SECRET_QUOTED_RE = re.compile(rf"(?i)({_SECRET_NAME}[:=]\s*b?(['\"])).*?\2")
_SECRET_FIELD_RE = re.compile(rf"(?i)({_SECRET_NAME}(?:=|%3D|:)\s*(?:b?['\"])?)[^\s'\"&,;<>]+")
#: AWS access key ids (long-term AKIA, temporary ASIA, and the other unique-id prefixes).
_ACCESS_KEY_RE = re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA|AGPA|ANPA|ANVA|AIPA|ABIA|ACCA|APKA)[A-Z0-9]{16}\b")
#: Credential-shaped strings: 32+ characters of a base64/base64url alphabet mixing upper, lower and digits
#: (an AWS secret key is 40, a session token hundreds; hex digests and our ids are all one case).
_TOKEN_LIKE_RE = re.compile(
    r"(?<![A-Za-z0-9+/=_-])(?=[A-Za-z0-9+/=_-]*[A-Z])(?=[A-Za-z0-9+/=_-]*[a-z])(?=[A-Za-z0-9+/=_-]*[0-9])"
    r"[A-Za-z0-9+/_-]{32,}={0,2}(?![A-Za-z0-9+/=_-])"
)
#: Terminal escape sequences (CSI, OSC and two-character ones), then any other control character,
#: Unicode bidirectional overrides included (they reorder what a reader sees).
_ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|\x9b[0-?]*[ -/]*[@-~]")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_OR_NEWLINE_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")

#: Exact secrets this process knows (the API token, AWS keys from the environment): removed wherever they appear.
_MIN_KNOWN_SECRET = 12
_known_secrets: set[str] = set()
_known_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Make ``scrub`` remove this exact value wherever it appears (shorter than 12 characters is ignored)."""
    if value and len(value.strip()) >= _MIN_KNOWN_SECRET:
        with _known_lock:
            _known_secrets.add(value.strip())


def register_secrets(values: Iterable[str | None]) -> None:
    for value in values:
        register_secret(value)


def host_of(url: str) -> str:
    """The host (and port) of a URL: the most of a download URL that may be logged."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or "<no host>"
    return f"{host}:{port}" if port else host


def scrub(text: str) -> str:
    """Remove query strings of URLs, authorization values, named and shaped credentials, known secrets."""
    with _known_lock:
        known = sorted(_known_secrets, key=len, reverse=True)
    for secret in known:
        text = text.replace(secret, REDACTED)
    text = _QUERY_RE.sub(_redact_url_query, text)
    text = _ENCODED_QUERY_RE.sub(rf"\1%3F{REDACTED}", text)
    text = _AUTH_QUOTED_RE.sub(rf"\1{REDACTED}\2", text)
    text = _AUTH_LINE_RE.sub(rf"\1{REDACTED}", text)
    text = _BEARER_RE.sub(rf"\1{REDACTED}", text)
    text = _SECRET_QUOTED_RE.sub(rf"\1{REDACTED}\2", text)
    text = _SECRET_FIELD_RE.sub(rf"\1{REDACTED}", text)
    text = _ACCESS_KEY_RE.sub(REDACTED, text)
    return _TOKEN_LIKE_RE.sub(REDACTED, text)


def _redact_url_query(match: re.Match[str]) -> str:
    """Redact the query when the word before it holds a "/" (scanned backwards: linear in the text overall)."""
    text, index = match.string, match.start() - 1
    stop = max(-1, index - _LOOKBACK)
    while index > stop:
        char = text[index]
        if char == "/":
            return f"?{REDACTED}"
        if char in _WORD_BREAKS or char.isspace():
            break
        index -= 1
    return match.group(0)


def strip_controls(text: str, *, keep_newlines: bool = False) -> str:
    """Remove terminal escapes; replace other control characters (and newlines unless kept) by a space."""
    text = _ANSI_RE.sub("", text)
    return (_CONTROL_RE if keep_newlines else _CONTROL_OR_NEWLINE_RE).sub(" ", text)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def server_text(text: object, limit: int = 200) -> str:
    """Words a server chose, safe to put in a message: one line, no escapes, no secrets, at most ``limit``."""
    cleaned = " ".join(strip_controls(str(text)).split())
    return truncate(scrub(cleaned), limit)


def scrub_tree(value: Any) -> Any:
    """``value`` with every string inside it (dict keys and values, list items) scrubbed."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub_tree(k): scrub_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_tree(item) for item in value]
    return value


def describe_exception(exc: BaseException) -> str:
    """A short, secret-free description of a library exception: its class and scrubbed message."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the failure being described
        text = ""
    message = server_text(text, limit=300) if text else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
