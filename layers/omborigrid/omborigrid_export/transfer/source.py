"""The download URL of one job: safe opening, redirects, a fresh URL on 403, one session per thread.

Every URL (and every redirect target) is checked before it is connected to; the URL itself never reaches a
log or an exception, only its host.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable

import requests

from ..errors import DownloadUrlExpired, IntegrityError, TransferFailed
from ..models import ExportJob, JobStatus
from ..redact import host_of
from ..settings import TransferSettings
from ..urlsafety import check_download_url
from .limits import MAX_REDIRECTS

logger = logging.getLogger(__name__)

JobRefresher = Callable[[], ExportJob]
_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class TransferStats:
    """Counters of one transfer (reported on the landed object); safe to add to from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: dict[str, int] = {
            "requests": 0,
            "resumes": 0,
            "restarts": 0,
            "url_refreshes": 0,
            "parts_uploaded": 0,
            "bytes_received": 0,
        }

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.values[name] = self.values.get(name, 0) + amount


class RangeIgnored(Exception):
    """The server answered a ranged request with 200: the whole file is coming instead of the part."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__("range ignored")
        self.response = response


class DownloadSource:
    """Opens byte ranges of one job's file."""

    def __init__(
        self,
        job: ExportJob,
        refresh_job: JobRefresher,
        settings: TransferSettings,
        *,
        allow_local_urls: bool,
        session_factory: Callable[[], requests.Session],
        stats: TransferStats,
    ) -> None:
        if job.download_url is None:
            raise TransferFailed(f"Job {job.id} has no download URL.")
        self.job = job
        self._url = job.download_url
        self._refresh_job = refresh_job
        self._settings = settings
        self._allow_local = allow_local_urls
        self._session_factory = session_factory
        self.stats = stats
        self._local = threading.local()
        self._lock = threading.Lock()
        self._generation = 0
        self._sessions: list[requests.Session] = []
        check_download_url(self._url, allow_local=allow_local_urls)

    @property
    def host(self) -> str:
        return host_of(self._url)

    @property
    def size(self) -> int:
        return self.job.file_size or 0

    def close(self) -> None:
        for session in self._sessions:
            session.close()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._session_factory()
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _refresh(self, seen_generation: int) -> None:
        """Get a fresh URL unless another thread already did since ``seen_generation``."""
        with self._lock:
            if self._generation != seen_generation:
                return
            if self._generation >= self._settings.max_url_refreshes:
                raise DownloadUrlExpired(
                    f"The download URL on {self.host} kept being refused (HTTP 403) after "
                    f"{self._generation} refreshes; the export may have been archived."
                )
            job = self._refresh_job()
            if job.status is not JobStatus.DONE or job.download_url is None:
                raise TransferFailed(f"Job {job.id} is no longer done (status {job.status.value}); cannot download.")
            if job.file_size != self.job.file_size:
                raise IntegrityError(
                    f"Job {job.id} changed its fileSize from {self.job.file_size} to {job.file_size} mid-transfer."
                )
            check_download_url(job.download_url, allow_local=self._allow_local)
            self._url = job.download_url
            self._generation += 1
            self.stats.add("url_refreshes")
            logger.info("refreshed the download URL for job %s (host %s)", job.id, self.host)

    def open(self, start: int, end: int | None) -> requests.Response:
        """GET bytes start..end (inclusive; None = to the end).

        A 403 (the presigned URL expired) is answered by getting a fresh URL and asking again, at most
        ``max_url_refreshes`` times per transfer. Raises RangeIgnored when a range was asked but 200 came back.
        """
        headers = {"Accept-Encoding": "identity"}
        if start > 0 or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end}"
        while True:
            with self._lock:
                url, generation = self._url, self._generation
            response = self._follow(url, headers)
            if response.status_code != 403:
                break
            response.close()
            self._refresh(generation)
        if "Range" in headers and response.status_code == 200:
            raise RangeIgnored(response)
        expected = 206 if "Range" in headers else 200
        if response.status_code != expected:
            status = response.status_code
            response.close()
            raise TransferFailed(f"The download on {self.host} answered HTTP {status} where {expected} was expected.")
        return response

    def _follow(self, url: str, headers: dict[str, str]) -> requests.Response:
        """GET ``url``, following at most MAX_REDIRECTS redirects, each target checked before connecting."""
        session = self._session()
        for _ in range(MAX_REDIRECTS + 1):
            self.stats.add("requests")
            response = session.get(
                url,
                headers=headers,
                stream=True,
                allow_redirects=False,
                timeout=(self._settings.connect_timeout, self._settings.read_timeout),
            )
            if not response.is_redirect:
                return response
            location = response.headers.get("Location", "")
            response.close()
            url = requests.compat.urljoin(url, location)
            check_download_url(url, allow_local=self._allow_local)
        raise TransferFailed(f"The download on {self.host} redirected more than {MAX_REDIRECTS} times.")

    def check_content_range(self, response: requests.Response, start: int, end: int) -> None:
        """The 206 answers exactly the range asked for, of a file of the job's size."""
        size = self.size
        match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", ""))
        if not match:
            raise TransferFailed(f"The download on {self.host} answered 206 without a valid Content-Range.")
        got_start, got_end, total = int(match[1]), int(match[2]), match[3]
        if total != "*" and int(total) != size:
            raise IntegrityError(
                f"The download on {self.host} is {total} bytes but the job's fileSize says {size}; not landing it."
            )
        if got_start != start or got_end != min(end, size - 1):
            raise TransferFailed(
                f"The download on {self.host} answered bytes {got_start}-{got_end} for a request of {start}-{end}."
            )

    def check_length(self, response: requests.Response) -> None:
        """A whole-file answer announces the job's size (when it announces one)."""
        header = response.headers.get("Content-Length")
        if header is not None and header.isdigit() and int(header) != self.size:
            response.close()
            raise IntegrityError(
                f"The download on {self.host} is {header} bytes but the job's fileSize says {self.size}; "
                "not landing it."
            )
