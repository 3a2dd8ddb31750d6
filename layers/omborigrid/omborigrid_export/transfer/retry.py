"""One retry loop for every read from the download source, with its policies named once.

What is worth another attempt is one set, :data:`TRANSIENT_ERRORS`: the connection could not be made, was
dropped or timed out (``OSError``, which ``requests``' errors are, and the ``urllib3`` errors a body read
raises), or the answer ended before its last byte (:class:`Truncated`). Everything else — our typed errors, a
wrong ``Content-Range``, a size that lies — fails at once. A refused URL (403) is not a failure here: the
source gets a fresh one, bounded by its own limit. How long to wait between attempts is a :class:`Backoff`;
the two in use are named below.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import urllib3

from ..errors import TransferFailed
from ..redact import describe_exception
from .context import Sleep

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Truncated(Exception):
    """A response ended before the bytes it announced arrived."""

    def __str__(self) -> str:
        return "the response ended before the whole file arrived"


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, urllib3.exceptions.HTTPError, Truncated)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits that double after each failure, from ``first`` up to ``longest`` seconds."""

    first: float
    longest: float

    def delay(self, failures: int) -> float:
        return float(min(self.first * 2 ** (failures - 1), self.longest))


#: Starting a download (the probe, the peek): the server may need a moment to come back.
STARTING = Backoff(first=1.0, longest=10.0)
#: Continuing one (a part, the stream, the tail): a connection dropped mid-file; resume soon.
CONTINUING = Backoff(first=0.4, longest=5.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    """How many attempts, how long between them, and how to sleep (injected, so tests do not wait)."""

    attempts: int
    backoff: Backoff
    sleep: Sleep

    def call(self, attempt: Callable[[], T], *, what: Callable[[], str]) -> T:
        """``attempt()`` until it returns, retrying transient errors; then TransferFailed naming ``what()``.

        ``what`` is called when a message is needed, so it can say how far an attempt got.
        """
        failures = 0
        while True:
            try:
                return attempt()
            except TRANSIENT_ERRORS as exc:
                failures += 1
                if failures >= self.attempts:
                    raise TransferFailed(f"{what()} failed {failures} times ({describe_exception(exc)}).") from None
                delay = self.backoff.delay(failures)
                logger.info("%s failed (%s); retrying in %.1f s", what(), describe_exception(exc), delay)
                self.sleep(delay)
