"""volume.py: a day judged against the median of the last N landed days before it."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from omborigrid_export.errors import ConfigurationError
from omborigrid_export.volume import Baseline, Verdict, VolumeRule

DAY0 = date(2026, 3, 1)


def landed(*rows: int, start: date = DAY0) -> list[tuple[date, int]]:
    return [(start + timedelta(days=i), r) for i, r in enumerate(rows)]


RULE = VolumeRule(history_days=7, min_history=5, low_ratio=0.5, high_ratio=3.0)


@pytest.mark.parametrize(
    ("rows", "verdict", "anomalous"),
    [
        (1000, Verdict.NORMAL, False),
        (50, Verdict.LOW, True),
        (499, Verdict.LOW, True),
        (500, Verdict.NORMAL, False),
        (3001, Verdict.HIGH, True),
        (0, Verdict.EMPTY, False),
    ],
)
def test_given_a_steady_history_then_the_day_is_judged_against_its_median(
    rows: int, verdict: Verdict, anomalous: bool
) -> None:
    history = landed(1000, 990, 1010, 1000, 5, 1000, 1000)  # one earlier outage does not move the median
    check = RULE.judge(DAY0 + timedelta(days=7), rows, history)
    assert check.verdict is verdict
    assert check.median == 1000
    assert check.anomalous is anomalous


def test_given_an_empty_day_then_it_alerts_only_when_the_rule_says_so() -> None:
    history = landed(*[1000] * 7)
    day = DAY0 + timedelta(days=7)
    assert RULE.judge(day, 0, history).anomalous is False
    alerting = VolumeRule(history_days=7, min_history=5, alert_on_empty=True)
    check = alerting.judge(day, 0, history)
    assert (check.verdict, check.anomalous) == (Verdict.EMPTY, True)
    assert (
        check.describe()
        == f"{day} landed with 0 rows (an empty day); the median of the last 7 landed days is 1000 rows"
    )


def test_given_too_little_history_then_no_verdict_and_no_alert_even_for_a_tiny_day() -> None:
    check = RULE.judge(DAY0 + timedelta(days=4), 1, landed(1000, 1000, 1000, 1000))
    assert (check.verdict, check.anomalous, check.median) == (Verdict.NO_BASELINE, False, None)
    assert "only 4 earlier days have landed, fewer than the 5 needed" in check.describe()


def test_given_days_landed_after_the_day_judged_then_they_are_not_its_history() -> None:
    # A backfill lands out of order: day 3 is judged while days 4..20 already landed; only days 0..2 count.
    history = landed(*[1000] * 20)
    check = RULE.judge(DAY0 + timedelta(days=3), 10, history)
    assert (check.verdict, check.history) == (Verdict.NO_BASELINE, 3)


def test_given_more_history_than_n_then_only_the_last_n_days_count() -> None:
    history = landed(*[10] * 30, *[1000] * 7)  # an old regime of 10 rows a day, then 1000 for the last 7 days
    check = RULE.judge(DAY0 + timedelta(days=37), 1000, history)
    assert (check.verdict, check.median, check.history) == (Verdict.NORMAL, 1000, 7)


def test_given_same_weekday_baseline_then_weekends_are_judged_against_weekends() -> None:
    # Weekdays 1000 rows, weekends 100: against all days a Sunday of 100 is low, against Sundays it is normal.
    start = date(2026, 3, 2)  # a Monday
    history = [
        (start + timedelta(days=i), 100 if (start + timedelta(days=i)).weekday() >= 5 else 1000) for i in range(42)
    ]
    sunday = start + timedelta(days=48)
    assert sunday.weekday() == 6
    assert VolumeRule(history_days=7, min_history=5).judge(sunday, 100, history).verdict is Verdict.LOW
    weekly = VolumeRule(history_days=5, min_history=5, baseline=Baseline.SAME_WEEKDAY)
    check = weekly.judge(sunday, 100, history)
    assert (check.verdict, check.median, check.history) == (Verdict.NORMAL, 100, 5)


@pytest.mark.parametrize(
    "kwargs", [{"min_history": 0}, {"min_history": 15, "history_days": 14}, {"low_ratio": 1.0}, {"high_ratio": 0.9}]
)
def test_given_an_impossible_rule_then_configuration_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError, match="anomaly"):
        VolumeRule(**kwargs)  # type: ignore[arg-type]


def test_given_a_table_of_a_handful_of_rows_a_day_then_no_verdict_however_it_moves() -> None:
    history = landed(9, 8, 10, 9, 9, 7, 9)
    check = RULE.judge(DAY0 + timedelta(days=7), 1, history)
    assert (check.verdict, check.anomalous, check.median) == (Verdict.TOO_FEW_ROWS, False, 9)
    assert check.describe().endswith("is 9 rows, below the 100 rows a day a verdict needs")
    assert VolumeRule(min_rows=5).judge(DAY0 + timedelta(days=7), 1, history).verdict is Verdict.LOW
