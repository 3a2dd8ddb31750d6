"""Polling bounds and backoff, as data.

The state machine carries a :class:`PollState` between "Check Export Status" invocations; the CLI uses
the same object in its own loop. Waits grow exponentially up to a cap, so a long job costs few polls
(and few Step Functions state transitions), and every loop is bounded by attempts, total wait and the
job's expiry date.

A status answer that cannot be read (:class:`GarbledResponse`: a 200 cut short by a proxy, not JSON) is
transient: it costs one check and the next wait, and only ``garbled_limit`` of them in a row fail the export.

Waits are seconds as numbers: the CLI may poll every half second. What the state machine carries stays in
whole seconds (its ``Wait`` state's ``SecondsPath`` takes only a positive integer): :meth:`from_dict` accepts
only whole numbers, and whole-number waits stay whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from .errors import ExportTimedOut, GarbledResponse, InvalidApiResponse, InvalidInput, JobExpired
from .models import ExportJob, JobStatus

DEFAULT_INITIAL_WAIT = 60
DEFAULT_MAX_WAIT = 600
DEFAULT_MAX_ATTEMPTS = 200
DEFAULT_MAX_TOTAL_SECONDS = 48 * 3600
#: Unreadable status answers in a row that fail the export (fewer are waited out).
DEFAULT_GARBLED_LIMIT = 3

_COUNTS = ("attempt", "max_attempts", "garbled_in_a_row", "garbled_limit")
_SECONDS = ("wait_seconds", "max_wait_seconds", "max_total_seconds", "waited_seconds")


@dataclass(frozen=True, slots=True)
class PollState:
    attempt: int = 0
    wait_seconds: float = DEFAULT_INITIAL_WAIT
    max_wait_seconds: float = DEFAULT_MAX_WAIT
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_total_seconds: float = DEFAULT_MAX_TOTAL_SECONDS
    waited_seconds: float = 0
    garbled_in_a_row: int = 0
    garbled_limit: int = DEFAULT_GARBLED_LIMIT

    def __post_init__(self) -> None:
        for name in _COUNTS:
            value = getattr(self, name)
            if not _is_whole(value) or value < 0:
                raise InvalidInput(f"The poll setting {name} must be a non-negative whole number, not {value!r}.")
        for name in _SECONDS:
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise InvalidInput(f"The poll setting {name} must be a non-negative number of seconds, not {value!r}.")
        if self.wait_seconds <= 0 or self.max_wait_seconds <= 0 or self.max_attempts < 1 or self.garbled_limit < 1:
            raise InvalidInput("Poll waits must be more than 0 seconds, and attempts and the garbled limit at least 1.")

    @classmethod
    def from_dict(cls, data: Any) -> PollState:
        """The state the state machine carries: whole numbers only (a Wait state's SecondsPath needs them)."""
        if not isinstance(data, dict):
            raise InvalidInput("The poll state is missing or not an object.")
        try:
            fields = {
                "attempt": data.get("attempt", 0),
                "wait_seconds": data["waitSeconds"],
                "max_wait_seconds": data.get("maxWaitSeconds", DEFAULT_MAX_WAIT),
                "max_attempts": data.get("maxAttempts", DEFAULT_MAX_ATTEMPTS),
                "max_total_seconds": data.get("maxTotalSeconds", DEFAULT_MAX_TOTAL_SECONDS),
                "waited_seconds": data.get("waitedSeconds", 0),
                "garbled_in_a_row": data.get("garbledInARow", 0),
                "garbled_limit": data.get("garbledLimit", DEFAULT_GARBLED_LIMIT),
            }
        except KeyError as exc:
            raise InvalidInput(f"The poll state lacks {exc.args[0]!r}.") from None
        for name, value in fields.items():
            if not _is_whole(value):
                raise InvalidInput(f"The poll state's {name} must be a whole number, not {value!r}.")
        return cls(**fields)

    def to_dict(self) -> dict[str, float]:
        return {
            "attempt": self.attempt,
            "waitSeconds": self.wait_seconds,
            "maxWaitSeconds": self.max_wait_seconds,
            "maxAttempts": self.max_attempts,
            "maxTotalSeconds": self.max_total_seconds,
            "waitedSeconds": self.waited_seconds,
            "garbledInARow": self.garbled_in_a_row,
            "garbledLimit": self.garbled_limit,
        }

    def after_check(self, job: ExportJob, now: datetime) -> PollState:
        """The state after one status check that just waited ``wait_seconds``.

        Raises :class:`JobExpired` or :class:`ExportTimedOut` when the job can no longer be waited for.
        """
        checked = self._checked(garbled_in_a_row=0)
        if job.status is JobStatus.DONE:
            return checked
        if job.is_expired(now):
            raise JobExpired(
                f"Export job {job.id} for {job.request.label} passed its expiry date "
                f"({job.expires_at.isoformat() if job.expires_at else '?'}) while still {job.status.value}."
            )
        checked._within_bounds(f"Export job {job.id} for {job.request.label} is still {job.status.value}")
        return checked._next_wait()

    def after_garbled(self, error: GarbledResponse) -> PollState:
        """The state after a status check whose answer could not be read: ask again after the next wait.

        Raises :class:`InvalidApiResponse` at the ``garbled_limit``-th unreadable answer in a row, and
        :class:`ExportTimedOut` when the attempts or the total wait run out.
        """
        checked = self._checked(garbled_in_a_row=self.garbled_in_a_row + 1)
        if checked.garbled_in_a_row >= self.garbled_limit:
            raise InvalidApiResponse(
                f"{checked.garbled_in_a_row} status answers in a row could not be read; giving up. The last: {error}"
            )
        checked._within_bounds(f"The export job's status could not be read ({error})")
        return checked._next_wait()

    def _checked(self, *, garbled_in_a_row: int) -> PollState:
        return replace(
            self,
            attempt=self.attempt + 1,
            waited_seconds=self.waited_seconds + self.wait_seconds,
            garbled_in_a_row=garbled_in_a_row,
        )

    def _within_bounds(self, situation: str) -> None:
        if self.attempt >= self.max_attempts or self.waited_seconds >= self.max_total_seconds:
            raise ExportTimedOut(
                f"{situation} after {self.attempt} checks over {_seconds(self.waited_seconds)} seconds; giving up "
                f"(limits: {self.max_attempts} checks, {_seconds(self.max_total_seconds)} seconds)."
            )

    def _next_wait(self) -> PollState:
        left = max(1, self.max_total_seconds - self.waited_seconds)
        return replace(self, wait_seconds=min(self.wait_seconds * 2, self.max_wait_seconds, left))


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _seconds(value: float) -> str:
    """Seconds for a sentence: whole numbers as such, fractions to a hundredth."""
    return f"{value:.2f}".rstrip("0").rstrip(".")
