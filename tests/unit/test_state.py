"""state.py: the job reference and the document the export state machine carries."""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

import pytest

from omborigrid_export.errors import InvalidInput
from omborigrid_export.models import ExportRequest
from omborigrid_export.polling import PollState
from omborigrid_export.state import ExportState, JobRef
from omborigrid_export.transfer import Checkpoint

TENANT = "621e1fc633350f0007637a0c"
JOB_ID = "65f1c0ffee0123456789abcd"
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def job_dict(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "jobId": JOB_ID,
        "tenantId": TENANT,
        "dataDateFrom": "2026-01-01",
        "dataDateTo": "2026-01-02",
    }
    data.update(overrides)
    return data


def ref(tenant: str = TENANT, job_id: str = JOB_ID, day: date = date(2026, 1, 1)) -> JobRef:
    return JobRef(job_id=job_id, request=ExportRequest(tenant, day, day))


# --- JobRef.from_dict / from_message ------------------------------------------------------------


def test_given_valid_job_when_from_dict_then_fields_parsed() -> None:
    result = JobRef.from_dict(job_dict(), force=True)

    assert result.job_id == JOB_ID
    assert result.request == ExportRequest(TENANT, date(2026, 1, 1), date(2026, 1, 2))
    assert result.force is True


def test_given_no_force_when_from_dict_then_false() -> None:
    assert JobRef.from_dict(job_dict()).force is False


@pytest.mark.parametrize("data", [None, [], "job", 1])
def test_given_non_object_job_when_from_dict_then_invalid_input(data: object) -> None:
    with pytest.raises(InvalidInput, match="no 'job' object"):
        JobRef.from_dict(data)


@pytest.mark.parametrize("force", ["true", 1, 0, None, "yes"])
def test_given_non_bool_force_when_from_dict_then_invalid_input(force: object) -> None:
    with pytest.raises(InvalidInput, match="'force'"):
        JobRef.from_dict(job_dict(), force=force)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"jobId": None}, "job id"),
        ({"jobId": "a/b"}, "job id"),
        ({"tenantId": "../x"}, "tenant id"),
        ({"tenantId": None}, "tenant id"),
        ({"dataDateFrom": "2026-02-30"}, "from date"),
        ({"dataDateTo": None}, "to date"),
        ({"dataDateFrom": "2026-01-03"}, "reversed"),
    ],
)
def test_given_bad_job_field_when_from_dict_then_invalid_input(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        JobRef.from_dict(job_dict(**overrides))


def test_given_queue_message_when_from_message_then_job_and_force_read() -> None:
    result = JobRef.from_message(json.dumps({**job_dict(), "force": True}))
    assert result == JobRef(JOB_ID, ExportRequest(TENANT, date(2026, 1, 1), date(2026, 1, 2)), force=True)


def test_given_queue_message_without_force_when_from_message_then_false() -> None:
    assert JobRef.from_message(json.dumps(job_dict())).force is False


@pytest.mark.parametrize("body", ["", "not json", "{", "{'jobId': 1}"])
def test_given_non_json_message_when_from_message_then_invalid_input(body: str) -> None:
    with pytest.raises(InvalidInput, match="not JSON"):
        JobRef.from_message(body)


@pytest.mark.parametrize("body", ["[]", "null", '"job"', "42"])
def test_given_json_non_object_message_when_from_message_then_invalid_input(body: str) -> None:
    with pytest.raises(InvalidInput, match="not a JSON object"):
        JobRef.from_message(body)


def test_given_message_with_string_force_when_from_message_then_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="'force'"):
        JobRef.from_message(json.dumps({**job_dict(), "force": "false"}))


# --- execution_input ----------------------------------------------------------------------------


def test_given_ref_when_execution_input_then_documented_shape() -> None:
    result = JobRef.from_dict(job_dict(), force=True).execution_input()
    assert result == {"job": job_dict(), "force": True}


@pytest.mark.parametrize("force", [False, True])
def test_given_execution_input_when_parsed_back_then_same_ref(force: bool) -> None:
    original = JobRef.from_dict(job_dict(), force=force)

    document = json.loads(json.dumps(original.execution_input()))

    assert ExportState.from_event(document).ref == original
    assert JobRef.from_dict(document["job"], force=document["force"]) == original


# --- execution_name -----------------------------------------------------------------------------


def test_given_plain_ids_when_execution_name_then_readable_and_deterministic() -> None:
    name = ref().execution_name()

    assert name == f"{TENANT}_20260101-20260101_{JOB_ID}"
    assert ref().execution_name() == name


def test_given_range_when_execution_name_then_both_dates_in_it() -> None:
    result = JobRef(JOB_ID, ExportRequest("t1", date(2026, 1, 1), date(2026, 3, 31))).execution_name()
    assert result == f"t1_20260101-20260331_{JOB_ID}"


@pytest.mark.parametrize(
    ("tenant", "job_id"),
    [
        (TENANT, JOB_ID),
        ("t" * 128, JOB_ID),
        (TENANT, "j" * 128),
        ("t" * 128, "j" * 128),
        ("tenant.with.dots", "job:with:colons"),
        ("a", "b"),
    ],
)
def test_given_any_ids_when_execution_name_then_step_functions_safe(tenant: str, job_id: str) -> None:
    name = ref(tenant, job_id).execution_name()
    assert NAME_RE.fullmatch(name), name
    assert name == ref(tenant, job_id).execution_name()


def test_given_long_ids_differing_only_at_the_end_when_named_then_names_differ() -> None:
    base_tenant, base_job = "t" * 127, "j" * 127
    refs = [
        ref(base_tenant + "1", base_job + "1"),
        ref(base_tenant + "2", base_job + "1"),
        ref(base_tenant + "1", base_job + "2"),
        ref(base_tenant + "2", base_job + "2"),
    ]

    names = [r.execution_name() for r in refs]

    assert len(set(names)) == len(names)
    assert all(NAME_RE.fullmatch(n) for n in names)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("a.b", "job"), ("a-b", "job")),
        (("a.b", "job"), ("a_b", "job")),
        (("tenant", "job:1"), ("tenant", "job-1")),
        (("tenant", "job.1"), ("tenant", "job:1")),
        (("x.y", "j.k"), ("x-y", "j-k")),
    ],
)
def test_given_ids_that_sanitise_alike_when_named_then_names_differ(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    assert ref(*first).execution_name() != ref(*second).execution_name()


def test_given_same_ids_on_different_days_when_named_then_names_differ() -> None:
    assert ref(day=date(2026, 1, 1)).execution_name() != ref(day=date(2026, 1, 2)).execution_name()


def test_given_many_random_like_jobs_when_named_then_no_collisions() -> None:
    tenants = ["t1", "t1.", "t1-", "t1_", "T1", "t" * 100, "t" * 100 + ".x"]
    jobs = ["j1", "j1.", "j1:", "j1-", "j" * 100, "j" * 100 + ":x", "j" * 100 + ".x"]
    names = {ref(t, j).execution_name() for t in tenants for j in jobs}
    assert len(names) == len(tenants) * len(jobs)


# --- ExportState.from_event ---------------------------------------------------------------------


def checkpoint() -> Checkpoint:
    return Checkpoint(
        job_id="job-1",
        bucket="lake",
        key="p/f.parquet",
        upload_id="u-1",
        size=20 * 1024 * 1024,
        part_size=16 * 1024 * 1024,
        part_crcs={1: 12345},
        head=b"PAR1",
    )


def test_given_start_event_when_from_event_then_no_poll_or_checkpoint() -> None:
    event = {"job": job_dict(), "force": False}

    state = ExportState.from_event(event)

    assert state.ref.job_id == JOB_ID
    assert state.poll is None
    assert state.checkpoint is None
    assert state.raw is event


def test_given_event_with_poll_when_from_event_then_poll_parsed() -> None:
    poll = PollState(attempt=2, wait_seconds=240, waited_seconds=180)
    state = ExportState.from_event({"job": job_dict(), "poll": poll.to_dict()})
    assert state.poll == poll


def test_given_event_with_null_poll_when_from_event_then_none() -> None:
    assert ExportState.from_event({"job": job_dict(), "poll": None}).poll is None


def test_given_event_with_bad_poll_when_from_event_then_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="waitSeconds"):
        ExportState.from_event({"job": job_dict(), "poll": {"attempt": 1}})


def test_given_event_with_checkpoint_when_from_event_then_checkpoint_parsed() -> None:
    event = {"job": job_dict(), "transfer": {"checkpoint": checkpoint().to_dict()}}
    assert ExportState.from_event(event).checkpoint == checkpoint()


@pytest.mark.parametrize("transfer", [None, {}, {"checkpoint": None}, {"landed": {"key": "x"}}, "text"])
def test_given_event_without_checkpoint_when_from_event_then_none(transfer: object) -> None:
    assert ExportState.from_event({"job": job_dict(), "transfer": transfer}).checkpoint is None


def test_given_event_with_malformed_checkpoint_when_from_event_then_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="checkpoint"):
        ExportState.from_event({"job": job_dict(), "transfer": {"checkpoint": {"jobId": JOB_ID}}})


def test_given_event_with_force_when_from_event_then_force_on_ref() -> None:
    assert ExportState.from_event({"job": job_dict(), "force": True}).ref.force is True


@pytest.mark.parametrize("event", [None, [], "event", {"force": False}, {"job": "x"}])
def test_given_event_without_job_object_when_from_event_then_invalid_input(event: object) -> None:
    with pytest.raises(InvalidInput):
        ExportState.from_event(event)
