"""polling.py: bounded exponential backoff, carried as data between status checks."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from omborigrid_export.errors import ExportTimedOut, GarbledResponse, InvalidApiResponse, InvalidInput, JobExpired
from omborigrid_export.models import ExportJob, JobStatus
from omborigrid_export.polling import (
    DEFAULT_INITIAL_WAIT,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_TOTAL_SECONDS,
    DEFAULT_MAX_WAIT,
    PollState,
)

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def job(status: JobStatus = JobStatus.PROCESSING, expires_at: datetime | None = None) -> ExportJob:
    done = status is JobStatus.DONE
    return ExportJob(
        id="job-1",
        status=status,
        tenant_id="t1",
        date_from=date(2026, 1, 9),
        date_to=date(2026, 1, 9),
        filename="f.parquet",
        expires_at=expires_at,
        file_size=10 if done else None,
        download_url="https://x.example/f?sig=1" if done else None,
    )


def test_given_defaults_when_built_then_documented_values() -> None:
    state = PollState()
    assert (state.attempt, state.wait_seconds, state.max_wait_seconds) == (0, 60, 600)
    assert (state.max_attempts, state.max_total_seconds, state.waited_seconds) == (200, 48 * 3600, 0)
    assert (DEFAULT_INITIAL_WAIT, DEFAULT_MAX_WAIT) == (60, 600)


def test_given_pending_job_when_checked_repeatedly_then_wait_doubles_up_to_cap() -> None:
    state = PollState()
    waits = [state.wait_seconds]
    for _ in range(7):
        state = state.after_check(job(), NOW)
        waits.append(state.wait_seconds)

    assert waits == [60, 120, 240, 480, 600, 600, 600, 600]


def test_given_pending_job_when_checked_then_attempts_and_waited_seconds_accumulate() -> None:
    state = PollState()
    state = state.after_check(job(), NOW)
    assert (state.attempt, state.waited_seconds) == (1, 60)
    state = state.after_check(job(), NOW)
    assert (state.attempt, state.waited_seconds) == (2, 180)
    state = state.after_check(job(), NOW)
    assert (state.attempt, state.waited_seconds) == (3, 420)


def test_given_state_when_checked_then_original_is_not_mutated() -> None:
    state = PollState()
    state.after_check(job(), NOW)
    assert (state.attempt, state.waited_seconds, state.wait_seconds) == (0, 0, 60)


def test_given_next_wait_would_pass_total_limit_when_checked_then_wait_is_trimmed() -> None:
    state = PollState(wait_seconds=100, max_wait_seconds=1000, max_total_seconds=250)

    state = state.after_check(job(), NOW)  # waited 100; 150 left

    assert state.wait_seconds == 150


def test_given_done_job_when_checked_then_returned_without_raising_even_past_limits() -> None:
    state = PollState(attempt=4, max_attempts=5, wait_seconds=10, max_total_seconds=10)
    expired = NOW - timedelta(days=1)

    after = state.after_check(job(JobStatus.DONE, expires_at=expired), NOW)

    assert (after.attempt, after.waited_seconds) == (5, 10)
    assert after.wait_seconds == 10  # no backoff computed for a finished job


def test_given_max_attempts_reached_when_checked_then_export_timed_out() -> None:
    state = PollState(max_attempts=3, wait_seconds=1, max_wait_seconds=1)
    state = state.after_check(job(), NOW)
    state = state.after_check(job(), NOW)

    with pytest.raises(ExportTimedOut, match="after 3 checks over 3 seconds") as caught:
        state.after_check(job(), NOW)
    assert "job-1" in str(caught.value)
    assert "processing" in str(caught.value)


def test_given_one_allowed_attempt_when_first_check_pending_then_timed_out() -> None:
    with pytest.raises(ExportTimedOut):
        PollState(max_attempts=1).after_check(job(JobStatus.QUEUED), NOW)


def test_given_total_seconds_reached_when_checked_then_export_timed_out() -> None:
    state = PollState(wait_seconds=60, max_total_seconds=100, waited_seconds=40)

    with pytest.raises(ExportTimedOut, match="100 seconds"):
        state.after_check(job(), NOW)


def test_given_total_seconds_not_yet_reached_when_checked_then_continues() -> None:
    state = PollState(wait_seconds=60, max_total_seconds=101, waited_seconds=40)
    after = state.after_check(job(), NOW)
    assert after.waited_seconds == 100
    assert after.wait_seconds == 1


def test_given_expiry_passed_when_pending_job_checked_then_job_expired() -> None:
    expiry = NOW - timedelta(seconds=1)
    with pytest.raises(JobExpired, match="expiry date") as caught:
        PollState().after_check(job(expires_at=expiry), NOW)
    assert expiry.isoformat() in str(caught.value)


def test_given_expiry_exactly_now_when_checked_then_job_expired() -> None:
    with pytest.raises(JobExpired):
        PollState().after_check(job(expires_at=NOW), NOW)


def test_given_expiry_in_future_when_checked_then_keeps_polling() -> None:
    after = PollState().after_check(job(expires_at=NOW + timedelta(seconds=1)), NOW)
    assert after.attempt == 1


def test_given_both_expired_and_out_of_attempts_when_checked_then_expiry_reported() -> None:
    with pytest.raises(JobExpired):
        PollState(max_attempts=1).after_check(job(expires_at=NOW - timedelta(hours=1)), NOW)


def test_given_defaults_when_job_takes_an_hour_then_seen_done_within_ten_checks() -> None:
    # Simulate the loop: each check happens after waiting wait_seconds; the job is done once 3600 s passed.
    state = PollState()
    checks = 0
    while True:
        waited_at_check = state.waited_seconds + state.wait_seconds
        status = JobStatus.DONE if waited_at_check >= 3600 else JobStatus.PROCESSING
        state = state.after_check(job(status), NOW + timedelta(seconds=waited_at_check))
        checks += 1
        if status is JobStatus.DONE:
            break
        assert checks < 50, "polling never saw the job done"

    assert checks <= 10
    assert checks == 9  # 60+120+240+480+600*5 = 3900 s
    assert state.waited_seconds == 3900
    assert state.waited_seconds - 3600 < DEFAULT_MAX_WAIT  # seen done less than one capped wait late


def test_given_defaults_when_job_never_finishes_then_times_out_after_max_attempts() -> None:
    # With the defaults the 200-check limit comes first: 60+120+240+480 + 196*600 = 118,500 s (about 33 h),
    # inside the 48 h total.
    state = PollState()
    for _ in range(DEFAULT_MAX_ATTEMPTS - 1):
        state = state.after_check(job(), NOW)
    assert state.attempt == DEFAULT_MAX_ATTEMPTS - 1
    assert state.waited_seconds + state.wait_seconds == 118_500 < DEFAULT_MAX_TOTAL_SECONDS

    with pytest.raises(ExportTimedOut, match="after 200 checks over 118500 seconds"):
        state.after_check(job(), NOW)


def test_given_generous_attempts_when_job_never_finishes_then_times_out_at_total_seconds() -> None:
    state = PollState(max_attempts=10_000)
    while state.waited_seconds + state.wait_seconds < DEFAULT_MAX_TOTAL_SECONDS:
        state = state.after_check(job(), NOW)
    # The last wait was trimmed so the final check lands exactly on the limit.
    assert state.waited_seconds + state.wait_seconds == DEFAULT_MAX_TOTAL_SECONDS

    with pytest.raises(ExportTimedOut, match=f"over {DEFAULT_MAX_TOTAL_SECONDS} seconds"):
        state.after_check(job(), NOW)


def test_given_state_when_round_tripped_through_dict_then_equal() -> None:
    state = PollState(
        attempt=3, wait_seconds=240, max_wait_seconds=900, max_attempts=50, max_total_seconds=7200, waited_seconds=420
    )

    data = state.to_dict()

    assert data == {
        "attempt": 3,
        "waitSeconds": 240,
        "maxWaitSeconds": 900,
        "maxAttempts": 50,
        "maxTotalSeconds": 7200,
        "waitedSeconds": 420,
        "garbledInARow": 0,
        "garbledLimit": 3,
    }
    assert PollState.from_dict(data) == state


def test_given_only_wait_seconds_when_from_dict_then_defaults_fill_the_rest() -> None:
    assert PollState.from_dict({"waitSeconds": 30}) == PollState(wait_seconds=30)


def test_given_missing_wait_seconds_when_from_dict_then_invalid_input_naming_it() -> None:
    with pytest.raises(InvalidInput, match="waitSeconds"):
        PollState.from_dict({"attempt": 1})


@pytest.mark.parametrize("data", [None, [], "poll", 60])
def test_given_non_object_when_from_dict_then_invalid_input(data: object) -> None:
    with pytest.raises(InvalidInput, match="not an object"):
        PollState.from_dict(data)


@pytest.mark.parametrize(
    "field",
    [
        "attempt",
        "waitSeconds",
        "maxWaitSeconds",
        "maxAttempts",
        "maxTotalSeconds",
        "waitedSeconds",
        "garbledInARow",
        "garbledLimit",
    ],
)
@pytest.mark.parametrize("value", [-1, True, False, 1.5, "60", None])
def test_given_bad_value_when_from_dict_then_invalid_input(field: str, value: Any) -> None:
    data = PollState().to_dict()
    data[field] = value
    with pytest.raises(InvalidInput):
        PollState.from_dict(data)


@pytest.mark.parametrize("field", ["wait_seconds", "max_wait_seconds", "max_attempts"])
def test_given_zero_wait_or_attempts_when_built_then_invalid_input(field: str) -> None:
    with pytest.raises(InvalidInput, match="at least 1"):
        replace(PollState(), **{field: 0})


def test_given_zero_waited_and_attempt_when_built_then_accepted() -> None:
    assert PollState(attempt=0, waited_seconds=0, max_total_seconds=0).max_total_seconds == 0


# --- fractions of a second (the CLI) and whole seconds (the state machine) ------------------------------


def test_given_fractional_waits_then_they_double_up_to_a_fractional_cap() -> None:
    state = PollState(wait_seconds=0.25, max_wait_seconds=1.5, max_total_seconds=60)
    waits = [state.wait_seconds]
    for _ in range(4):
        state = state.after_check(job(), NOW)
        waits.append(state.wait_seconds)
    assert waits == [0.25, 0.5, 1.0, 1.5, 1.5]
    assert state.waited_seconds == pytest.approx(3.25)


def test_given_whole_waits_then_every_wait_stays_whole_for_the_wait_state() -> None:
    state = PollState(wait_seconds=7, max_wait_seconds=100, max_total_seconds=1000)
    for _ in range(12):
        state = state.after_check(job(), NOW)
        assert type(state.wait_seconds) is int
        assert type(state.waited_seconds) is int
    assert PollState.from_dict(state.to_dict()) == state


def test_given_a_fractional_total_when_timed_out_then_the_sentence_shows_the_fractions() -> None:
    state = PollState(wait_seconds=0.5, max_wait_seconds=0.5, max_total_seconds=1.25, max_attempts=100)
    state = state.after_check(job(), NOW)
    state = state.after_check(job(), NOW)
    with pytest.raises(ExportTimedOut, match=r"after 3 checks over 1\.5 seconds; .*, 1\.25 seconds\)"):
        state.after_check(job(), NOW)


@pytest.mark.parametrize("value", [0, -0.5, float("nan"), float("inf"), True, "1"])
def test_given_a_bad_wait_when_built_then_invalid_input(value: Any) -> None:
    with pytest.raises(InvalidInput):
        PollState(wait_seconds=value)


# --- garbled status answers ------------------------------------------------------------------------------

GARBLED = GarbledResponse("The OmboriGrid API answered the request to get export job j with a body that is not JSON.")


def test_given_fewer_garbled_answers_than_the_limit_then_each_costs_one_check_and_the_next_wait() -> None:
    state = PollState(wait_seconds=10, max_wait_seconds=100)
    state = state.after_garbled(GARBLED)
    state = state.after_garbled(GARBLED)
    assert (state.attempt, state.waited_seconds, state.wait_seconds, state.garbled_in_a_row) == (2, 30, 40, 2)


def test_given_a_readable_answer_between_garbled_ones_then_the_count_starts_again() -> None:
    state = PollState(wait_seconds=1, max_wait_seconds=1)
    for _ in range(5):
        state = state.after_garbled(GARBLED).after_garbled(GARBLED)
        assert state.garbled_in_a_row == 2
        state = state.after_check(job(), NOW)
        assert state.garbled_in_a_row == 0
    assert state.attempt == 15


def test_given_the_limit_of_garbled_answers_in_a_row_then_invalid_api_response_quoting_the_last() -> None:
    state = PollState(wait_seconds=1).after_garbled(GARBLED).after_garbled(GARBLED)
    with pytest.raises(InvalidApiResponse, match=r"3 status answers in a row could not be read.*not JSON"):
        state.after_garbled(GARBLED)


def test_given_garbled_answers_when_the_attempts_run_out_then_export_timed_out() -> None:
    state = PollState(max_attempts=2, garbled_limit=10).after_garbled(GARBLED)
    with pytest.raises(ExportTimedOut, match="could not be read"):
        state.after_garbled(GARBLED)


def test_given_a_garbled_count_when_round_tripped_then_kept() -> None:
    state = PollState(wait_seconds=30).after_garbled(GARBLED)
    assert PollState.from_dict(state.to_dict()).garbled_in_a_row == 1
