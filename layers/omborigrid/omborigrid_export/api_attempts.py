"""What a failed API attempt means, and when to try again.

Kept apart from the client so that the rules read in one place: every exception requests, urllib3 or the
standard library can raise while one request is prepared, sent or read is sorted into "was it sent?", "may
a retry help?" and "is it our configuration?" — the three questions the client's retry loop and the
no-duplicate-job rule for POSTs need answered.
"""

from __future__ import annotations

import http.client
import random
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import requests
from urllib3.exceptions import ConnectTimeoutError, LocationValueError, NewConnectionError
from urllib3.exceptions import HTTPError as Urllib3Error

from .redact import describe_exception

#: What the client catches around one attempt; :func:`classify_failure` sorts each of them.
ATTEMPT_ERRORS = (requests.RequestException, Urllib3Error, http.client.HTTPException, OSError, ValueError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a failed call is tried again (always within the call's deadline)."""

    #: Retries after the first attempt.
    attempts: int = 5
    backoff: float = 0.5
    backoff_max: float = 30.0
    retry_after_cap: float = 60.0

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based): the server's Retry-After, capped, else
        exponential backoff with jitter."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)
        return min(self.backoff_max, self.backoff * 2.0 ** (retry - 1)) + random.uniform(0, self.backoff)


@dataclass(frozen=True, slots=True)
class AttemptFailure:
    """One attempt's transport failure, classified."""

    detail: str
    #: The request may have reached the server (so a POST may have created a job).
    sent: bool
    #: Trying again may help (a GET is retried; a POST only when ``sent`` is False).
    transient: bool
    #: A mistake in the configuration (URL, token characters, CA bundle): no retry, no ambiguity.
    configuration: bool = False


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date (RFC 9110). Unreadable values are ignored."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def classify_failure(exc: BaseException) -> AttemptFailure:
    """What a failed attempt means: was the request sent, may a retry help, is it our configuration?"""
    detail = describe_exception(exc)
    causes = list(_causes(exc))
    if _is_configuration(exc):
        # Bad URL, a token that cannot be sent in a header, an unreadable CA bundle: nothing was sent.
        return AttemptFailure(detail, sent=False, transient=False, configuration=True)
    if isinstance(exc, requests.exceptions.SSLError):
        # A certificate failure happens during the handshake, before the request: it was certainly not sent.
        verify = any(isinstance(c, ssl.SSLCertVerificationError) for c in causes)
        return AttemptFailure(f"TLS failed: {detail}", sent=not verify, transient=False)
    if any(isinstance(c, NewConnectionError | ConnectTimeoutError | requests.ConnectTimeout) for c in causes):
        return AttemptFailure(detail, sent=False, transient=True)
    if isinstance(exc, requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError):
        return AttemptFailure(detail, sent=True, transient=True)
    if isinstance(exc, requests.exceptions.ContentDecodingError | Urllib3Error | http.client.HTTPException):
        # Cut off, unreadable or undecodable on the way in (urllib3's own errors come from reading the body).
        return AttemptFailure(detail, sent=True, transient=True)
    # TooManyRedirects, RetryError and anything else requests may add: sent, and not worth repeating.
    return AttemptFailure(detail, sent=True, transient=False)


def _is_configuration(exc: BaseException) -> bool:
    if isinstance(
        exc,
        requests.exceptions.InvalidURL
        | requests.exceptions.InvalidSchema
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidHeader
        | LocationValueError
        | UnicodeError,
    ):
        return True
    # A bare ValueError or OSError comes from preparing the request (header encoding, CA bundle path),
    # not from the network: requests and urllib3 wrap network failures in their own classes.
    return isinstance(exc, ValueError | OSError) and not isinstance(exc, requests.RequestException | Urllib3Error)


def _causes(exc: BaseException, depth: int = 0) -> Iterator[BaseException]:
    """``exc`` and what it wraps: exception arguments (requests wraps urllib3's errors that way), ``reason``
    (MaxRetryError), ``__cause__`` and ``__context__``."""
    yield exc
    if depth >= 6:
        return
    inner: list[object] = [*exc.args, getattr(exc, "reason", None), exc.__cause__, exc.__context__]
    for candidate in inner:
        if isinstance(candidate, BaseException) and candidate is not exc:
            yield from _causes(candidate, depth + 1)
