"""The OmboriGrid export API client.

Retries live in urllib3's ``Retry`` (mounted on the session), with one twist: a create-job POST is
repeated only where the job was certainly not created — the connection was never made, or the server
said 429/503. An ambiguous failure (a read timeout, a 500 after the request went out) raises
:class:`AmbiguousCreate` instead, because a blind second POST could create a second job.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError
from urllib3.util.retry import Retry

from .errors import (
    AmbiguousCreate,
    ApiUnavailable,
    AuthError,
    ConfigurationError,
    IntegrityError,
    InvalidApiResponse,
    JobNotFound,
    RequestRejected,
)
from .models import ExportJob, ExportRequest, JobIdentity, validate_job_id
from .redact import describe_exception, host_of, scrub

logger = logging.getLogger(__name__)

JOBS_PATH = "/api/analytics-export-job"
USER_AGENT = "omborigrid-export/0.1 (+https://github.com/omborigrid-export)"


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


class ApiRetry(Retry):
    """urllib3 Retry that never repeats an ambiguous POST and caps Retry-After."""

    #: Statuses after which a POST certainly did not create anything.
    POST_SAFE_STATUSES = frozenset({429, 503})

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if method.upper() == "POST":
            return bool(self.total) and status_code in self.POST_SAFE_STATUSES
        return super().is_retry(method, status_code, has_retry_after)


def build_retry(*, attempts: int = 5, backoff: float = 0.5, retry_after_cap: int = 60) -> ApiRetry:
    return ApiRetry(
        total=attempts,
        connect=attempts,
        # Read errors are retried only for GET (urllib3 checks allowed_methods for read errors).
        read=attempts,
        status=attempts,
        other=0,
        allowed_methods=frozenset({"GET"}),
        status_forcelist=frozenset({429, 500, 502, 503, 504}),
        backoff_factor=backoff,
        backoff_max=30,
        backoff_jitter=backoff,
        respect_retry_after_header=True,
        retry_after_max=retry_after_cap,
        raise_on_status=False,
        raise_on_redirect=True,
        redirect=0,
    )


class OmboriGridClient:
    """Create and read export jobs. Thread-safe for use from one thread at a time per instance."""

    def __init__(
        self,
        base_url: str,
        token: TokenProvider | str,
        *,
        session: requests.Session | None = None,
        retry: Retry | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token: TokenProvider = StaticToken(token) if isinstance(token, str) else token
        self._timeout = (connect_timeout, read_timeout)
        self._session = session or requests.Session()
        adapter = HTTPAdapter(max_retries=retry or build_retry())
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["User-Agent"] = USER_AGENT
        self._session.headers["Accept"] = "application/json"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> OmboriGridClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    # -- plumbing -------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json_body: dict[str, Any] | None = None,
        job_id: str | None = None,
    ) -> Any:
        response = self._send(method, path, json_body=json_body, what=what, refresh=False)
        if response.status_code in (401, 403):
            # The secret may have been rotated since it was cached: read it again once.
            response.close()
            response = self._send(method, path, json_body=json_body, what=what, refresh=True)
        with response:
            return self._interpret(response, method=method, what=what, job_id=job_id)

    def _send(
        self, method: str, path: str, *, json_body: dict[str, Any] | None, what: str, refresh: bool
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {self._token(refresh=refresh)}"}
        try:
            return self._session.request(
                method,
                self.base_url + path,
                json=json_body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise self._transport_error(exc, method=method, what=what) from None

    def _transport_error(self, exc: requests.RequestException, *, method: str, what: str) -> Exception:
        host = host_of(self.base_url)
        detail = describe_exception(exc)
        if method == "POST" and not _certainly_not_sent(exc):
            return AmbiguousCreate(
                f"Could not {what}: the request to {host} failed after it was sent ({detail}), so the job may or "
                "may not exist. It was not repeated, to avoid a duplicate job."
            )
        return ApiUnavailable(f"Could not {what}: {host} is unreachable after retries ({detail}).")

    def _interpret(self, response: requests.Response, *, method: str, what: str, job_id: str | None) -> Any:
        status = response.status_code
        host = host_of(self.base_url)
        if status in (401, 403):
            raise AuthError(
                f"The OmboriGrid API at {host} refused the token (HTTP {status}) when trying to {what}: it is "
                "missing, wrong or expired. Create a new access token in the Grid console (Developer tab)."
            )
        if status == 404 and job_id is not None:
            raise JobNotFound(f"The OmboriGrid API does not know export job {job_id} (HTTP 404); it may be archived.")
        if status in (400, 422):
            raise RequestRejected(f"The OmboriGrid API rejected the request to {what}: {_server_message(response)}")
        if status == 429 or status >= 500:
            if method == "POST" and status not in ApiRetry.POST_SAFE_STATUSES:
                raise AmbiguousCreate(
                    f"Could not {what}: {host} answered HTTP {status} after the request was sent, so the job may or "
                    "may not exist. It was not repeated, to avoid a duplicate job."
                )
            raise ApiUnavailable(f"Could not {what}: {host} kept answering HTTP {status} after retries.")
        if not 200 <= status < 300:
            raise RequestRejected(
                f"The OmboriGrid API answered HTTP {status} when trying to {what}: {_server_message(response)}"
            )
        try:
            return response.json()
        except (ValueError, json.JSONDecodeError):
            snippet = scrub(response.text[:120])
            raise InvalidApiResponse(
                f"The OmboriGrid API answered the request to {what} with a body that is not JSON: {snippet!r}"
            ) from None


def _certainly_not_sent(exc: requests.RequestException) -> bool:
    """True when the connection was never established, so a POST cannot have reached the server."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.ReadTimeout):
        reason: object = exc.args[0] if exc.args else None
        if isinstance(reason, MaxRetryError):
            reason = reason.reason
        return isinstance(reason, NewConnectionError | ConnectTimeoutError)
    return False


def _server_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    message: object = None
    if isinstance(body, dict):
        message = body.get("message") or body.get("error") or body.get("errors")
    text = str(message) if message else response.text or f"HTTP {response.status_code}"
    text = scrub(" ".join(text.split()))
    return text if len(text) <= 300 else text[:297] + "..."
