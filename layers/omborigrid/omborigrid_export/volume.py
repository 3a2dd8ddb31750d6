"""The volume rule: is a landed day's row count far outside what this tenant's table usually holds?

The baseline is the **median of the rows of the last N landed days** before the day judged (by data date, not by
when they landed, so a backfill that lands days out of order judges each day against the days before it). The
median, not the mean, so that one earlier outage or spike does not move the baseline. By default those N days are
*all* days (``all-days``): the baseline exists after N days instead of N weeks, which is what a new deployment and a
backfill need; a tenant whose weekends are a fraction of its weekdays sets ``same-weekday`` (the last N landed days
of the same weekday) instead, or widens the thresholds.

A day is anomalous when its rows are below ``low_ratio`` × median or above ``high_ratio`` × median. No verdict
before ``min_history`` earlier days have landed: a backfill's first days, and a new tenant's, never alert. Nor for a
table whose median is below ``min_rows``: a table of a handful of rows a day (the clients seen) halves and doubles by
chance, and an alarm on it would be noise. A day
with 0 rows is *empty*, a valid landing; it raises the volume alarm only when ``alert_on_empty`` says so.
"""

from __future__ import annotations

import enum
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from .errors import ConfigurationError


class Baseline(enum.StrEnum):
    ALL_DAYS = "all-days"
    SAME_WEEKDAY = "same-weekday"


class Verdict(enum.StrEnum):
    NORMAL = "normal"
    LOW = "low"
    HIGH = "high"
    EMPTY = "empty"
    #: Fewer than ``min_history`` earlier landed days: nothing to compare with yet.
    NO_BASELINE = "noBaseline"
    #: The baseline's median is below ``min_rows``: too few rows a day for a ratio to mean anything.
    TOO_FEW_ROWS = "tooFewRows"


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeRule:
    history_days: int = 14
    min_history: int = 7
    low_ratio: float = 0.5
    high_ratio: float = 3.0
    baseline: Baseline = Baseline.ALL_DAYS
    alert_on_empty: bool = False
    min_rows: int = 100

    def __post_init__(self) -> None:
        if not 1 <= self.min_history <= self.history_days:
            raise ConfigurationError(
                f"The anomaly rule needs 1 <= minimum history ({self.min_history}) <= history days "
                f"({self.history_days})."
            )
        if self.min_rows < 0:
            raise ConfigurationError(f"The anomaly rule's minimum rows ({self.min_rows}) must not be negative.")
        if not 0 <= self.low_ratio < 1 < self.high_ratio:
            raise ConfigurationError(
                f"The anomaly thresholds must satisfy 0 <= low ({self.low_ratio}) < 1 < high ({self.high_ratio})."
            )

    def baseline_days(self, day: date, landed: Sequence[tuple[date, int]]) -> list[tuple[date, int]]:
        """The days the baseline is made of: the last ``history_days`` landed before ``day`` (and of its
        weekday, for ``same-weekday``), newest first."""
        earlier = sorted(((d, rows) for d, rows in landed if d < day), reverse=True)
        if self.baseline is Baseline.SAME_WEEKDAY:
            earlier = [(d, rows) for d, rows in earlier if d.weekday() == day.weekday()]
        return earlier[: self.history_days]

    def judge(self, day: date, rows: int, landed: Sequence[tuple[date, int]]) -> VolumeCheck:
        """The verdict on ``rows`` for ``day``, given earlier landed days (any order, any number)."""
        history = self.baseline_days(day, landed)
        median = statistics.median(r for _, r in history) if len(history) >= self.min_history else None
        if rows == 0:
            verdict = Verdict.EMPTY
        elif median is None:
            verdict = Verdict.NO_BASELINE
        elif median < self.min_rows:
            verdict = Verdict.TOO_FEW_ROWS
        elif rows < self.low_ratio * median:
            verdict = Verdict.LOW
        elif rows > self.high_ratio * median:
            verdict = Verdict.HIGH
        else:
            verdict = Verdict.NORMAL
        return VolumeCheck(day=day, rows=rows, verdict=verdict, median=median, history=len(history), rule=self)


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeCheck:
    day: date
    rows: int
    verdict: Verdict
    #: The baseline's median, or None when there was not enough history.
    median: float | None
    history: int
    rule: VolumeRule

    @property
    def anomalous(self) -> bool:
        """Whether this day raises "Export Anomalous" (and the volume metric)."""
        if self.verdict is Verdict.EMPTY:
            return self.rule.alert_on_empty
        return self.verdict in (Verdict.LOW, Verdict.HIGH)

    @property
    def ratio(self) -> float | None:
        return None if not self.median else self.rows / self.median

    def describe(self) -> str:
        """A sentence a person acts on (without the tenant and table, which the caller names)."""
        base = (
            f"the median of the last {self.history} landed days is {self.median:g} rows"
            if self.median is not None
            else f"only {self.history} earlier days have landed, fewer than the {self.rule.min_history} needed"
        )
        if self.verdict is Verdict.TOO_FEW_ROWS:
            base += f", below the {self.rule.min_rows} rows a day a verdict needs"
        if self.verdict is Verdict.EMPTY:
            return f"{self.day} landed with 0 rows (an empty day); {base}"
        if self.verdict in (Verdict.LOW, Verdict.HIGH):
            assert self.ratio is not None
            return f"{self.day} landed {self.rows} rows, {self.ratio:.0%} of the usual volume; {base}"
        return f"{self.day} landed {self.rows} rows; {base}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "verdict": self.verdict.value,
            "baselineMedianRows": self.median,
            "baselineDays": self.history,
            "baseline": self.rule.baseline.value,
            "ratio": None if self.ratio is None else round(self.ratio, 4),
            "thresholds": {"low": self.rule.low_ratio, "high": self.rule.high_ratio, "minRows": self.rule.min_rows},
        }
