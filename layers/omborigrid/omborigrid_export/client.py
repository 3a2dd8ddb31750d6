"""The OmboriGrid export API client.

Three rules shape it:

- **A create-job POST is repeated only where the job was certainly not created**: the connection was never
  made, or the server said 429/503. An ambiguous failure (a read timeout, a 500 or a garbled 200 after the
  request went out) raises :class:`AmbiguousCreate`, because a blind second POST could create a second job.
- **Every call has a total deadline**, not only a per-read timeout: ``call_deadline`` seconds, shortened to
  what the caller has left (``time_left``: the CLI's ``--timeout``, a Lambda's remaining time). Connect and
  read timeouts shrink to it, the body is read in pieces against it, and no retry or ``Retry-After`` wait
  sleeps past it, and at the deadline the connection is cut whatever it is doing (:mod:`http_deadline`) —
  so a slow drip of bytes, in the headers or the body, cannot hold anyone past their budget.
- **Nothing leaves untyped**: every requests, urllib3, codec and JSON failure becomes one of :mod:`errors`
  with a sentence. Bodies are capped (a job is small); a 200 whose body is not JSON is
  :class:`GarbledResponse` on a GET (transient: the poll loop asks again) and ambiguous on a POST.

Retries live in this module's own loop (urllib3's are switched off), so that one deadline bounds them all.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import DecodeError
from urllib3.util.retry import Retry

from .api_attempts import ATTEMPT_ERRORS, AttemptFailure, RetryPolicy, classify_failure, retry_after_seconds
from .errors import (
    AmbiguousCreate,
    ApiUnavailable,
    AuthError,
    ConfigurationError,
    GarbledResponse,
    IntegrityError,
    JobNotFound,
    OmboriGridExportError,
    RequestRejected,
)
from .http_deadline import DeadlineAdapter, cut_at
from .models import ExportJob, ExportRequest, JobIdentity, validate_job_id
from .redact import describe_exception, host_of, server_text

logger = logging.getLogger(__name__)

JOBS_PATH = "/api/analytics-export-job"
USER_AGENT = "omborigrid-export/0.1 (+https://github.com/omborigrid-export)"
#: A job document is well under a kilobyte; anything near this is not a job.
MAX_BODY_BYTES = 1024 * 1024
#: Of an error answer only the start is read, for the server's message.
MAX_ERROR_BODY_BYTES = 64 * 1024
#: Total seconds one API call (all its attempts and waits included) may take unless the caller has less.
DEFAULT_CALL_DEADLINE = 45.0
_READ_PIECE = 16 * 1024
_GET_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Statuses after which a POST certainly did not create anything.
POST_SAFE_STATUSES = frozenset({429, 503})

TimeLeft = Callable[[], float]


class TokenProvider(Protocol):
    """Where the bearer token comes from. ``refresh=True`` asks for a fresh read (after a 401)."""

    def __call__(self, *, refresh: bool = False) -> str: ...


class StaticToken:
    """A token given directly (CLI, tests). It cannot be refreshed."""

    def __init__(self, token: str) -> None:
        if not token or any(c.isspace() for c in token):
            raise ConfigurationError("The OmboriGrid token is empty or contains whitespace.")
        self._token = token

    def __call__(self, *, refresh: bool = False) -> str:  # noqa: ARG002 - nothing to re-read
        return self._token

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    retry_after: float | None
    #: Why the body could not be read whole (too large, undecodable); None when it was.
    unreadable: str | None = None


class _DeadlinePassed(Exception):
    """The call's deadline passed; ``sent`` says whether the request may have reached the server."""

    def __init__(self, *, sent: bool) -> None:
        super().__init__("deadline passed")
        self.sent = sent


class OmboriGridClient:
    """Create and read export jobs. Use an instance from one thread at a time."""

    def __init__(
        self,
        base_url: str,
        token: TokenProvider | str,
        *,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        call_deadline: float = DEFAULT_CALL_DEADLINE,
        time_left: TimeLeft | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        _check_url(self.base_url + JOBS_PATH)
        self._token: TokenProvider = StaticToken(token) if isinstance(token, str) else token
        self._retry = retry or RetryPolicy()
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._call_deadline = call_deadline
        self._time_left = time_left
        self._clock = clock
        self._sleep = sleep
        self._session = session or requests.Session()
        # Retries happen in this module's loop, bounded by the call's deadline; urllib3 must not add its own.
        adapter = DeadlineAdapter(max_retries=Retry(total=0, read=False, redirect=False, raise_on_status=False))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["User-Agent"] = USER_AGENT
        self._session.headers["Accept"] = "application/json"
        # A job is tiny: nothing to gain from compression, and no decompression to bound.
        self._session.headers["Accept-Encoding"] = "identity"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> OmboriGridClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def budget(self, time_left: TimeLeft) -> Iterator[OmboriGridClient]:
        """Bound every call made inside the block by ``time_left()`` seconds (e.g. a Lambda's remaining time)."""
        previous, self._time_left = self._time_left, time_left
        try:
            yield self
        finally:
            self._time_left = previous

    def create_job(self, request: ExportRequest) -> ExportJob:
        body = self._call("POST", JOBS_PATH, json_body=request.to_api(), what=f"create the export for {request.label}")
        job = ExportJob.from_api(body)
        if job.request != request:
            raise IntegrityError(
                f"The API created job {job.id} for {job.request.label}, but {request.label} was asked for."
            )
        logger.info("created export job %s for %s (%s)", job.id, request.label, job.status.value)
        return job

    def get_job(self, job_id: str) -> ExportJob:
        validate_job_id(job_id)
        body = self._call("GET", f"{JOBS_PATH}/{job_id}", what=f"get export job {job_id}", job_id=job_id)
        job = ExportJob.from_api(body)
        if job.id != job_id:
            raise IntegrityError(f"The API answered a request for job {job_id} with job {job.id}.")
        return job

    def get_pinned_job(self, identity: JobIdentity) -> ExportJob:
        """The job as it is now, refused with :class:`IntegrityError` unless it still carries ``identity``."""
        return identity.confirm(self.get_job(identity.job_id))

    # -- one call: attempts, waits and the deadline ------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json_body: dict[str, Any] | None = None,
        job_id: str | None = None,
    ) -> Any:
        deadline = self._deadline()
        retries = 0
        refreshed = False
        while True:
            try:
                answer = self._exchange(method, path, json_body, refresh=refreshed, deadline=deadline)
            except _DeadlinePassed as passed:
                raise self._too_slow(method, what, sent=passed.sent) from None
            except ATTEMPT_ERRORS as exc:
                retries += 1
                self._after_failure(classify_failure(exc), method=method, what=what, retries=retries, deadline=deadline)
                continue
            if answer.status in (401, 403) and not refreshed:
                # The secret may have been rotated since it was cached: read it again once.
                refreshed = True
                continue
            if self._should_retry(method, answer.status):
                retries += 1
                if self._wait_for_retry(retries, answer.retry_after, deadline):
                    continue
                raise ApiUnavailable(
                    f"Could not {what}: {self._host} kept answering HTTP {answer.status} "
                    f"({_attempts(retries)} within the time allowed for the call)."
                )
            return self._interpret(answer, method=method, what=what, job_id=job_id)

    def _after_failure(self, failure: AttemptFailure, *, method: str, what: str, retries: int, deadline: float) -> None:
        """Return (after the backoff) when the attempt may be repeated; raise the typed error otherwise."""
        if failure.configuration:
            raise ConfigurationError(
                f"Could not {what}: the request to {self._host} cannot be made ({failure.detail}). "
                "Check OMBORIGRID_API_URL and the token."
            )
        if failure.transient and self._clock() >= deadline:
            # A read cut short by the deadline itself (each read waits at most for what is left).
            raise self._too_slow(method, what, sent=failure.sent)
        if method == "POST" and failure.sent:
            raise AmbiguousCreate(
                f"Could not {what}: the request to {self._host} failed after it was sent ({failure.detail}), "
                "so the job may or may not exist. It was not repeated, to avoid a duplicate job."
            )
        if not failure.transient or not self._wait_for_retry(retries, None, deadline):
            raise ApiUnavailable(
                f"Could not {what}: {self._host} is unreachable after {_attempts(retries)} ({failure.detail})."
            )

    def _deadline(self) -> float:
        seconds = self._call_deadline
        if self._time_left is not None:
            seconds = min(seconds, self._time_left())
        return self._clock() + seconds

    @staticmethod
    def _should_retry(method: str, status: int) -> bool:
        if method == "POST":
            return status in POST_SAFE_STATUSES
        return status in _GET_RETRY_STATUSES

    def _wait_for_retry(self, retry: int, retry_after: float | None, deadline: float) -> bool:
        """Sleep before retry number ``retry``; False (and no sleep) when it is not allowed or would not fit."""
        if retry > self._retry.attempts:
            return False
        delay = self._retry.delay(retry, retry_after)
        if self._clock() + delay >= deadline:
            return False
        self._sleep(delay)
        return True

    def _too_slow(self, method: str, what: str, *, sent: bool) -> OmboriGridExportError:
        if not sent:
            return ApiUnavailable(f"Could not {what}: no time was left to call {self._host}.")
        if method == "POST":
            return AmbiguousCreate(
                f"Could not {what}: {self._host} did not answer completely within the time allowed for the call, "
                "so the job may or may not exist. It was not repeated, to avoid a duplicate job."
            )
        return ApiUnavailable(
            f"Could not {what}: {self._host} did not answer completely within the time allowed for the call."
        )

    # -- one attempt -------------------------------------------------------------------------------

    def _exchange(
        self, method: str, path: str, json_body: dict[str, Any] | None, *, refresh: bool, deadline: float
    ) -> _Answer:
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise _DeadlinePassed(sent=False)
        headers = {"Authorization": f"Bearer {self._token(refresh=refresh)}"}
        # Whatever phase the exchange is in at the deadline (connecting, headers, body), its socket is cut.
        with cut_at(time.monotonic() + remaining):
            response = self._session.request(
                method,
                self.base_url + path,
                json=json_body,
                headers=headers,
                timeout=(min(self._connect_timeout, remaining), min(self._read_timeout, remaining)),
                allow_redirects=False,
                stream=True,
            )
            with response:
                return self._answer(response, deadline)

    def _answer(self, response: requests.Response, deadline: float) -> _Answer:
        ok = 200 <= response.status_code < 300
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        cap = MAX_BODY_BYTES if ok else MAX_ERROR_BODY_BYTES
        try:
            body, complete = self._read_body(response, cap=cap, deadline=deadline)
        except DecodeError as exc:
            return _Answer(response.status_code, b"", retry_after, f"a body that cannot be decoded ({exc})")
        if not complete and ok:
            return _Answer(response.status_code, body, retry_after, f"a body larger than {cap // 1024} KiB")
        return _Answer(response.status_code, body, retry_after)

    def _read_body(self, response: requests.Response, *, cap: int, deadline: float) -> tuple[bytes, bool]:
        """The body, or its first ``cap`` bytes, read against the deadline; and whether it was complete."""
        declared = response.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > cap:
            return b"", False
        body = bytearray()
        while True:
            if self._clock() >= deadline:
                raise _DeadlinePassed(sent=True)
            piece = response.raw.read1(min(_READ_PIECE, cap + 1 - len(body)), decode_content=True)
            if not piece:
                if self._clock() >= deadline:  # the end of a body cut at the deadline is no end
                    raise _DeadlinePassed(sent=True)
                return bytes(body), True
            body += piece
            if len(body) > cap:
                return bytes(body[:cap]), False

    # -- what the answer means ---------------------------------------------------------------------

    @property
    def _host(self) -> str:
        return host_of(self.base_url)

    def _interpret(self, answer: _Answer, *, method: str, what: str, job_id: str | None) -> Any:
        status = answer.status
        if status in (401, 403):
            raise AuthError(
                f"The OmboriGrid API at {self._host} refused the token (HTTP {status}) when trying to {what}: it is "
                "missing, wrong or expired. Create a new access token in the Grid console (Developer tab)."
            )
        if status == 404 and job_id is not None:
            raise JobNotFound(f"The OmboriGrid API does not know export job {job_id} (HTTP 404); it may be archived.")
        if status in (400, 422):
            raise RequestRejected(f"The OmboriGrid API rejected the request to {what}: {_server_message(answer)}")
        if status == 429 or status >= 500:
            if method == "POST" and status not in POST_SAFE_STATUSES:
                raise AmbiguousCreate(
                    f"Could not {what}: {self._host} answered HTTP {status} after the request was sent, so the job "
                    "may or may not exist. It was not repeated, to avoid a duplicate job."
                )
            raise ApiUnavailable(f"Could not {what}: {self._host} kept answering HTTP {status} after retries.")
        if not 200 <= status < 300:
            raise RequestRejected(
                f"The OmboriGrid API answered HTTP {status} when trying to {what}: {_server_message(answer)}"
            )
        document, problem = _parse(answer)
        if problem is None:
            return document
        if method == "POST":
            raise AmbiguousCreate(
                f"Could not {what}: {self._host} answered HTTP {status} with {problem}, so the job may or may not "
                "exist. It was not repeated, to avoid a duplicate job."
            )
        raise GarbledResponse(f"The OmboriGrid API answered the request to {what} with {problem}.")


def _attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


def _parse(answer: _Answer) -> tuple[Any, str | None]:
    """The JSON document of a 2xx answer, or why there is none."""
    if answer.unreadable is not None:
        return None, answer.unreadable
    try:
        return _json(answer.body), None
    except (ValueError, RecursionError):
        # Scrubbed before it is cut, so a secret the server echoed cannot survive in part.
        snippet = server_text(answer.body[:4096].decode("utf-8", "replace"), 120)
        return None, f"a body that is not JSON: {snippet!r}"


def _json(body: bytes) -> Any:
    return json.loads(body)


def _check_url(url: str) -> None:
    """Refuse an API URL that requests cannot send to, before any call (a configuration error)."""
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not an http(s) URL with a host")
        parts.hostname.encode("idna")  # what the connection will do: a label over 63 characters fails here
        requests.Request("GET", url).prepare()
    except (requests.RequestException, ValueError) as exc:
        raise ConfigurationError(
            f"OMBORIGRID_API_URL is not a usable URL ({describe_exception(exc)}); use https://host[:port]."
        ) from None


def _server_message(answer: _Answer) -> str:
    try:
        body = _json(answer.body)
    except (ValueError, RecursionError):
        body = None
    message: object = None
    if isinstance(body, dict):
        message = body.get("message") or body.get("error") or body.get("errors")
    text = str(message) if message else answer.body.decode("utf-8", "replace") or f"HTTP {answer.status}"
    return server_text(text, 300)
