"""Polling bounds and backoff, as data.

The state machine carries a :class:`PollState` between "Check Export Status" invocations; the CLI uses
the same object in its own loop. Waits grow exponentially up to a cap, so a long job costs few polls
(and few Step Functions state transitions), and every loop is bounded by attempts, total wait and the
job's expiry date.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from .errors import ExportTimedOut, InvalidInput, JobExpired
from .models import ExportJob, JobStatus

DEFAULT_INITIAL_WAIT = 60
DEFAULT_MAX_WAIT = 600
DEFAULT_MAX_ATTEMPTS = 200
DEFAULT_MAX_TOTAL_SECONDS = 48 * 3600


@dataclass(frozen=True, slots=True)
class PollState:
    attempt: int = 0
    wait_seconds: int = DEFAULT_INITIAL_WAIT
    max_wait_seconds: int = DEFAULT_MAX_WAIT
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_total_seconds: int = DEFAULT_MAX_TOTAL_SECONDS
    waited_seconds: int = 0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidInput(f"The poll setting {name} must be a non-negative whole number, not {value!r}.")
        if self.wait_seconds < 1 or self.max_wait_seconds < 1 or self.max_attempts < 1:
            raise InvalidInput("Poll waits and attempts must be at least 1.")

    @classmethod
    def from_dict(cls, data: Any) -> PollState:
        if not isinstance(data, dict):
            raise InvalidInput("The poll state is missing or not an object.")
        try:
            return cls(
                attempt=data.get("attempt", 0),
                wait_seconds=data["waitSeconds"],
                max_wait_seconds=data.get("maxWaitSeconds", DEFAULT_MAX_WAIT),
                max_attempts=data.get("maxAttempts", DEFAULT_MAX_ATTEMPTS),
                max_total_seconds=data.get("maxTotalSeconds", DEFAULT_MAX_TOTAL_SECONDS),
                waited_seconds=data.get("waitedSeconds", 0),
            )
        except KeyError as exc:
            raise InvalidInput(f"The poll state lacks {exc.args[0]!r}.") from None

    def to_dict(self) -> dict[str, int]:
        return {
            "attempt": self.attempt,
            "waitSeconds": self.wait_seconds,
            "maxWaitSeconds": self.max_wait_seconds,
            "maxAttempts": self.max_attempts,
            "maxTotalSeconds": self.max_total_seconds,
            "waitedSeconds": self.waited_seconds,
        }

    def after_check(self, job: ExportJob, now: datetime) -> PollState:
        """The state after one status check that just waited ``wait_seconds``.

        Raises :class:`JobExpired` or :class:`ExportTimedOut` when the job can no longer be waited for.
        """
        waited = self.waited_seconds + self.wait_seconds
        checked = replace(self, attempt=self.attempt + 1, waited_seconds=waited)
        if job.status is JobStatus.DONE:
            return checked
        if job.is_expired(now):
            raise JobExpired(
                f"Export job {job.id} for {job.request.label} passed its expiry date "
                f"({job.expires_at.isoformat() if job.expires_at else '?'}) while still {job.status.value}."
            )
        if checked.attempt >= self.max_attempts or waited >= self.max_total_seconds:
            raise ExportTimedOut(
                f"Export job {job.id} for {job.request.label} is still {job.status.value} after "
                f"{checked.attempt} checks over {waited} seconds; giving up (limits: {self.max_attempts} checks, "
                f"{self.max_total_seconds} seconds)."
            )
        next_wait = min(self.wait_seconds * 2, self.max_wait_seconds, max(1, self.max_total_seconds - waited))
        return replace(checked, wait_seconds=next_wait)
