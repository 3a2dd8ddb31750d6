"""createjob.py: what each trigger asks of CreateJob, and the report of a run."""

from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from omborigrid_export.createjob import (
    CreateJobReport,
    Drain,
    Failed,
    Requested,
    Scheduled,
    SchedulePolicy,
    parse_trigger,
)
from omborigrid_export.errors import ConfigurationError, InvalidInput, StepFunctionsError
from omborigrid_export.executions import execution_arn
from omborigrid_export.models import ExportRequest, Split
from omborigrid_export.scheduling import Outcome, RequestOutcome
from omborigrid_export.state import JobRef

SOURCE = "omborigrid.export"
JOB = {"jobId": "j1", "tenantId": "t1", "dataDateFrom": "2026-01-01", "dataDateTo": "2026-01-01"}


def event(kind: str, detail: Any) -> dict[str, Any]:
    return {"source": SOURCE, "detail-type": kind, "detail": detail}


def test_given_each_trigger_when_parsed_then_what_it_asks_for() -> None:
    assert parse_trigger({"trigger": "schedule"}) == Scheduled()
    assert parse_trigger({"trigger": "drain"}) == Drain()
    assert parse_trigger(event("Export Completed", {"jobId": "j1"})) == Drain()
    requested = parse_trigger(
        event("Export Requested", {"tenantIds": ["t1"], "dataDateFrom": "2026-01-01", "dataDateTo": "2026-01-02"})
    )
    assert isinstance(requested, Requested)
    assert requested.request.split is Split.DAILY
    assert len(requested.request.expand()) == 2


def test_given_an_export_failed_event_then_the_job_and_a_reason_without_anything_else() -> None:
    failed = parse_trigger(event("Export Failed", {**JOB, "error": "IntegrityError", "message": "Not parquet."}))
    assert failed == Failed(JobRef.from_dict(JOB), "IntegrityError: Not parquet.")
    bare = parse_trigger(event("Export Failed", {**JOB, "error": 7}))
    assert isinstance(bare, Failed)
    assert bare.reason == "(not given): (not given)"


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ([], "list where an event object"),
        ("schedule", "str where an event object"),
        (None, "NoneType where an event object"),
        ({"trigger": "weekly"}, "none of them"),
        ({"source": "other", "detail-type": "Export Requested", "detail": {}}, "none of them"),
        (event("Export Failed", "j1"), "no detail object"),
        (event("Export Failed", {**JOB, "jobId": "../j"}), "job id"),
        (event("Export Requested", {"tenantIds": []}), "non-empty list tenantIds"),
    ],
)
def test_given_an_event_that_is_no_trigger_then_invalid_input(raw: Any, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        parse_trigger(raw)


def test_given_failed_requests_then_the_report_fails_naming_the_first() -> None:
    day = ExportRequest("t1", date(2026, 1, 1), date(2026, 1, 1))
    other = ExportRequest("t1", date(2026, 1, 2), date(2026, 1, 2))
    report = CreateJobReport(
        (
            RequestOutcome(day, Outcome.FAILED, None, "ApiUnavailable: down"),
            RequestOutcome(other, Outcome.CREATED, "j"),
        ),
        None,
        1,
    )
    failure = report.failure()
    assert failure is not None
    assert str(failure) == "1 of 2 export requests failed; first: t1 2026-01-01: ApiUnavailable: down"
    assert report.counts == {Outcome.FAILED: 1, Outcome.CREATED: 1}
    assert report.to_dict()["counts"] == {"failed": 1, "created": 1}
    assert CreateJobReport((RequestOutcome(other, Outcome.CREATED, "j"),), (), 1).failure() is None


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"tenants": ("ok", "a/b")}, "TENANT_IDS"),
        ({"lookback_days": -1}, "look-back"),
        ({"max_jobs_in_flight": 0}, "cap on jobs"),
        ({"freshness_hours": 0}, "freshness"),
    ],
)
def test_given_a_bad_policy_then_configuration_error(overrides: dict[str, Any], match: str) -> None:
    values: dict[str, Any] = {
        "tenants": ("t1",),
        "zone": ZoneInfo("UTC"),
        "lookback_days": 7,
        "max_jobs_in_flight": 20,
        "freshness_hours": 36,
    }
    with pytest.raises(ConfigurationError, match=match):
        SchedulePolicy(**{**values, **overrides})


def test_given_a_state_machine_arn_then_the_execution_arn_is_derived_from_the_job_name() -> None:
    ref = JobRef.from_dict(JOB)
    machine = "arn:aws:states:eu-west-1:123456789012:stateMachine:export"
    assert (
        execution_arn(machine, ref) == f"arn:aws:states:eu-west-1:123456789012:execution:export:{ref.execution_name()}"
    )
    with pytest.raises(StepFunctionsError, match="not the ARN of a state machine"):
        execution_arn("arn:aws:lambda:eu-west-1:123456789012:function:export", ref)


def test_given_createjobs_own_export_failed_without_a_job_then_only_a_drain() -> None:
    """A refused token's "Export Failed" (no job, no execution) comes back through the drain rule: its entry is
    FAILED already (and held no slot), so the event is only a drain."""
    detail = {**JOB, "jobId": None, "executionId": None, "error": "AuthError", "message": "Tenant t1: refused."}
    assert parse_trigger(event("Export Failed", detail)) == Drain()
