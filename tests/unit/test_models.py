"""models.py: tenant ids, dates, export requests and the API's job documents, validated at the edge."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from omborigrid_export.errors import ExportFailed, InvalidApiResponse, InvalidInput
from omborigrid_export.models import (
    ExportJob,
    ExportRequest,
    JobStatus,
    parse_date,
    validate_job_id,
    validate_tenant_id,
)

TENANT = "621e1fc633350f0007637a0c"
SIGNED_URL = (
    "https://exports.example.com/621e/file.parquet?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=deadbeefcafe0123456789"
)


def seed_job(**overrides: Any) -> dict[str, Any]:
    """A done job exactly as the API documents it (7 fractional digits, Z suffix)."""
    body: dict[str, Any] = {
        "status": "done",
        "id": "65f1c0ffee0123456789abcd",
        "tenantId": TENANT,
        "jobExpiryDate": "2023-09-25T19:19:04.4491234Z",
        "dataDateFrom": "2023-09-17",
        "dataDateTo": "2023-09-17",
        "createdAt": "2023-09-18T19:19:04.449Z",
        "updatedAt": "2023-09-18T19:25:10.1234567Z",
        "filename": "analytics_621e1fc633350f0007637a0c_2023-09-17.parquet",
        "downloadUrl": SIGNED_URL,
        "fileSize": 123456,
    }
    body.update(overrides)
    return body


# --- validate_tenant_id -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tenant",
    [TENANT, "a", "A9", "tenant.one", "tenant_one", "tenant-one", "x" * 128, "0" + "._-" * 42],
)
def test_given_conservative_tenant_id_when_validated_then_returned_unchanged(tenant: str) -> None:
    assert validate_tenant_id(tenant) == tenant


@pytest.mark.parametrize(
    "tenant",
    [
        "",
        "a/b",
        "/abc",
        "a..b",
        "..",
        ".hidden",
        "-dash-first",
        "_under",
        "a b",
        " abc",
        "abc ",
        "abc\n",
        "ab\tc",
        "ab\x00c",
        "ab\x7fc",
        "x" * 129,
        "tenant\u00e9",
        "a\\b",
        "a:b",
    ],
)
def test_given_unsafe_tenant_id_when_validated_then_invalid_input(tenant: str) -> None:
    with pytest.raises(InvalidInput):
        validate_tenant_id(tenant)


@pytest.mark.parametrize("value", [None, 123, b"abc", ["abc"], {"id": "abc"}])
def test_given_non_string_tenant_id_when_validated_then_invalid_input(value: object) -> None:
    with pytest.raises(InvalidInput, match="missing or not a string"):
        validate_tenant_id(value)


def test_given_custom_what_when_tenant_rejected_then_message_names_it() -> None:
    with pytest.raises(InvalidInput, match="tenantId in the body"):
        validate_tenant_id("a/b", what="tenantId in the body")


def test_given_very_long_bad_tenant_when_rejected_then_message_quotes_it_shortened() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_tenant_id("/" * 5000)
    assert len(str(caught.value)) < 400


# --- validate_job_id ----------------------------------------------------------------------------


@pytest.mark.parametrize("job_id", ["65f1c0ffee0123456789abcd", "job_1-2", "A", "j" * 128])
def test_given_plausible_job_id_when_validated_then_returned(job_id: str) -> None:
    assert validate_job_id(job_id) == job_id


@pytest.mark.parametrize(
    "job_id",
    [
        None,
        42,
        "",
        "j" * 129,
        ".",
        "..",
        "a/b",
        "a\\b",
        "a b",
        "job.1",  # '.' could form '..' in a key built from the {jobId} placeholder
        "job:1",  # not allowed in Step Functions execution names
        "job\n",  # a trailing newline must not slip past the end anchor
        "job\x00",
        "job\x7f",
        "j\u00f6b",  # non-ASCII letters
        "\uff11\uff12",  # full-width digits match \d but not [0-9]
        "job%2F",
        "job?x=1",
    ],
)
def test_given_unsafe_job_id_when_validated_then_invalid_input_naming_the_alphabet(job_id: object) -> None:
    with pytest.raises(InvalidInput, match="letters, digits, '_' or '-'"):
        validate_job_id(job_id)


# --- parse_date ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01", date(2026, 1, 1)),
        ("2024-02-29", date(2024, 2, 29)),
        ("2000-02-29", date(2000, 2, 29)),
        ("2026-12-31", date(2026, 12, 31)),
    ],
)
def test_given_strict_iso_date_when_parsed_then_calendar_date(text: str, expected: date) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", ["2026-02-29", "1900-02-29", "2026-13-01", "2026-04-31", "2026-00-10", "2026-01-00"])
def test_given_impossible_calendar_date_when_parsed_then_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput, match="not a real calendar date"):
        parse_date(text)


@pytest.mark.parametrize(
    "text",
    [
        "2026-1-01",
        "2026-01-1",
        "26-01-01",
        "20260101",
        "2026/01/01",
        "2026-01-01T00:00:00",
        "2026-01-01T00:00:00Z",
        "2026-01-01 ",
        " 2026-01-01",
        "2026-01-01\n",
        "2026-W01-1",
        "",
        "\uff12\uff10\uff12\uff16-01-01",  # full-width digits
    ],
)
def test_given_non_strict_date_text_when_parsed_then_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_date(text)


@pytest.mark.parametrize("value", [None, 20260101, datetime(2026, 1, 1, tzinfo=UTC)])
def test_given_non_date_value_when_parsed_then_invalid_input(value: object) -> None:
    with pytest.raises(InvalidInput, match="YYYY-MM-DD"):
        parse_date(value)


def test_given_date_object_when_parsed_then_returned_as_is() -> None:
    assert parse_date(date(2026, 3, 4)) == date(2026, 3, 4)


def test_given_what_when_date_rejected_then_message_names_the_field() -> None:
    with pytest.raises(InvalidInput, match="from date"):
        parse_date("yesterday", what="from date")


# --- ExportRequest ------------------------------------------------------------------------------


def test_given_reversed_range_when_request_built_then_invalid_input_names_both_dates() -> None:
    with pytest.raises(InvalidInput, match=r"2026-01-02\.\.2026-01-01 is reversed"):
        ExportRequest(TENANT, date(2026, 1, 2), date(2026, 1, 1))


def test_given_unsafe_tenant_when_request_built_then_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        ExportRequest("../other", date(2026, 1, 1), date(2026, 1, 1))


def test_given_strings_when_request_parsed_then_dates_converted() -> None:
    request = ExportRequest.parse(TENANT, "2026-01-01", "2026-01-03")
    assert request == ExportRequest(TENANT, date(2026, 1, 1), date(2026, 1, 3))


def test_given_bad_to_date_when_request_parsed_then_message_names_to_date() -> None:
    with pytest.raises(InvalidInput, match="to date"):
        ExportRequest.parse(TENANT, "2026-01-01", "2026-02-30")


def test_given_range_across_month_and_leap_day_when_split_daily_then_inclusive_in_order() -> None:
    request = ExportRequest(TENANT, date(2024, 2, 27), date(2024, 3, 2))

    days = request.split_daily()

    assert [d.date_from for d in days] == [
        date(2024, 2, 27),
        date(2024, 2, 28),
        date(2024, 2, 29),
        date(2024, 3, 1),
        date(2024, 3, 2),
    ]
    assert all(d.date_from == d.date_to and d.tenant_id == TENANT for d in days)


def test_given_single_day_when_split_daily_then_itself() -> None:
    request = ExportRequest(TENANT, date(2026, 5, 5), date(2026, 5, 5))
    assert request.split_daily() == [request]


def test_given_full_year_when_split_daily_then_one_request_per_day() -> None:
    days = ExportRequest(TENANT, date(2025, 1, 1), date(2025, 12, 31)).split_daily()
    assert len(days) == 365
    assert days[0].date_from == date(2025, 1, 1)
    assert days[-1].date_to == date(2025, 12, 31)
    assert len({d.date_from for d in days}) == 365


def test_given_single_day_when_labelled_then_one_date() -> None:
    assert ExportRequest("t1", date(2026, 5, 5), date(2026, 5, 5)).label == "t1 2026-05-05"


def test_given_range_when_labelled_then_both_dates() -> None:
    assert ExportRequest("t1", date(2026, 5, 5), date(2026, 5, 7)).label == "t1 2026-05-05..2026-05-07"


def test_given_request_when_to_api_then_seed_body() -> None:
    assert ExportRequest(TENANT, date(2026, 5, 5), date(2026, 5, 7)).to_api() == {
        "tenantId": TENANT,
        "dataDateFrom": "2026-05-05",
        "dataDateTo": "2026-05-07",
    }


# --- ExportJob.from_api: the happy path ---------------------------------------------------------


def test_given_seed_done_job_when_parsed_then_every_field_is_read() -> None:
    job = ExportJob.from_api(seed_job())

    assert job.id == "65f1c0ffee0123456789abcd"
    assert job.status is JobStatus.DONE
    assert job.tenant_id == TENANT
    assert job.date_from == date(2023, 9, 17)
    assert job.date_to == date(2023, 9, 17)
    assert job.filename == "analytics_621e1fc633350f0007637a0c_2023-09-17.parquet"
    assert job.created_at == datetime(2023, 9, 18, 19, 19, 4, 449000, tzinfo=UTC)
    # Seven fractional digits are truncated to six; Z is UTC.
    assert job.updated_at == datetime(2023, 9, 18, 19, 25, 10, 123456, tzinfo=UTC)
    assert job.expires_at == datetime(2023, 9, 25, 19, 19, 4, 449123, tzinfo=UTC)
    assert job.file_size == 123456
    assert job.download_url == SIGNED_URL
    assert job.request == ExportRequest(TENANT, date(2023, 9, 17), date(2023, 9, 17))


@pytest.mark.parametrize("status", ["queued", "processing"])
def test_given_unfinished_job_without_url_or_size_when_parsed_then_accepted(status: str) -> None:
    body = seed_job(status=status)
    del body["downloadUrl"], body["fileSize"]

    job = ExportJob.from_api(body)

    assert job.status is JobStatus(status)
    assert job.download_url is None
    assert job.file_size is None


def test_given_optional_timestamps_absent_when_parsed_then_none() -> None:
    body = seed_job(status="queued")
    for key in ("createdAt", "updatedAt", "jobExpiryDate", "downloadUrl", "fileSize"):
        del body[key]

    job = ExportJob.from_api(body)

    assert (job.created_at, job.updated_at, job.expires_at) == (None, None, None)


def test_given_empty_download_url_on_queued_job_when_parsed_then_none() -> None:
    assert ExportJob.from_api(seed_job(status="queued", downloadUrl="")).download_url is None


def test_given_timestamp_with_offset_when_parsed_then_aware_and_public_form_is_utc() -> None:
    job = ExportJob.from_api(seed_job(createdAt="2023-09-18T21:19:04+02:00"))

    assert job.created_at == datetime(2023, 9, 18, 19, 19, 4, tzinfo=UTC)
    assert job.to_public_dict()["createdAt"] == "2023-09-18T19:19:04Z"


def test_given_naive_timestamp_when_parsed_then_taken_as_utc() -> None:
    job = ExportJob.from_api(seed_job(createdAt="2023-09-18T19:19:04"))
    assert job.created_at == datetime(2023, 9, 18, 19, 19, 4, tzinfo=UTC)


def test_given_data_dates_as_midnight_timestamps_when_parsed_then_dates() -> None:
    job = ExportJob.from_api(seed_job(dataDateFrom="2023-09-17T00:00:00.000Z", dataDateTo="2023-09-18T00:00:00Z"))

    assert job.date_from == date(2023, 9, 17)
    assert job.date_to == date(2023, 9, 18)


@pytest.mark.parametrize(("raw", "expected"), [("123456", 123456), ("0", 0), (0, 0), (5 * 1024**4, 5 * 1024**4)])
def test_given_file_size_as_int_or_digit_string_when_parsed_then_integer(raw: object, expected: int) -> None:
    assert ExportJob.from_api(seed_job(fileSize=raw)).file_size == expected


@pytest.mark.parametrize("raw", [-1, "-5", True, False, 12.0, 1.5, "12 bytes", "", "0x10", [1], {"n": 1}])
def test_given_bad_file_size_when_parsed_then_invalid_api_response(raw: object) -> None:
    with pytest.raises(InvalidApiResponse, match="fileSize"):
        ExportJob.from_api(seed_job(fileSize=raw))


def test_given_job_from_api_when_round_tripped_through_public_dict_then_stable() -> None:
    job = ExportJob.from_api(seed_job())

    public = job.to_public_dict()

    assert public == {
        "jobId": "65f1c0ffee0123456789abcd",
        "status": "done",
        "tenantId": TENANT,
        "dataDateFrom": "2023-09-17",
        "dataDateTo": "2023-09-17",
        "filename": "analytics_621e1fc633350f0007637a0c_2023-09-17.parquet",
        "createdAt": "2023-09-18T19:19:04.449000Z",
        "updatedAt": "2023-09-18T19:25:10.123456Z",
        "jobExpiryDate": "2023-09-25T19:19:04.449123Z",
        "fileSize": 123456,
    }


def test_given_job_without_timestamps_when_public_dict_then_nulls() -> None:
    body = seed_job(status="queued")
    for key in ("createdAt", "updatedAt", "jobExpiryDate", "downloadUrl", "fileSize"):
        del body[key]
    public = ExportJob.from_api(body).to_public_dict()
    assert (public["createdAt"], public["updatedAt"], public["jobExpiryDate"], public["fileSize"]) == (
        None,
        None,
        None,
        None,
    )


# --- ExportJob: secrets -------------------------------------------------------------------------


def test_given_done_job_when_repr_then_no_download_url_or_signature() -> None:
    job = ExportJob.from_api(seed_job())

    text = repr(job) + str(job)

    assert "X-Amz-Signature" not in text
    assert "deadbeefcafe" not in text
    assert "exports.example.com" not in text
    assert job.id in text  # the repr is still useful


def test_given_done_job_when_public_dict_then_no_download_url_anywhere() -> None:
    public = ExportJob.from_api(seed_job()).to_public_dict()

    assert "downloadUrl" not in public
    assert all("deadbeefcafe" not in str(v) for v in public.values())


# --- ExportJob.from_api: rejections -------------------------------------------------------------


@pytest.mark.parametrize("field", ["id", "status", "tenantId", "filename", "dataDateFrom", "dataDateTo"])
@pytest.mark.parametrize("how", ["missing", "empty", "null", "number"])
def test_given_required_field_missing_or_empty_when_parsed_then_message_names_field(field: str, how: str) -> None:
    body = seed_job()
    if how == "missing":
        del body[field]
    else:
        body[field] = {"empty": "", "null": None, "number": 7}[how]

    with pytest.raises(InvalidApiResponse, match=f"'{field}'"):
        ExportJob.from_api(body)


@pytest.mark.parametrize("status", ["failed", "FAILED", "error", "cancelled", "Done"])
def test_given_unknown_status_when_parsed_then_export_failed_naming_status(status: str) -> None:
    with pytest.raises(ExportFailed, match=repr(status)) as caught:
        ExportJob.from_api(seed_job(status=status))
    assert "65f1c0ffee0123456789abcd" in str(caught.value)


@pytest.mark.parametrize("body", [None, [], ["id"], "job", 3, b"{}"])
def test_given_non_object_body_when_parsed_then_invalid_api_response(body: object) -> None:
    with pytest.raises(InvalidApiResponse, match=type(body).__name__):
        ExportJob.from_api(body)


@pytest.mark.parametrize(
    "filename",
    [
        "../etc/passwd",
        "a/b.parquet",
        "..",
        "file..parquet",
        ".hidden",
        "with space.parquet",
        "back\\slash.zip",
        "x" * 256,
        "nul\x00.zip",
    ],
)
def test_given_unsafe_filename_when_parsed_then_invalid_api_response(filename: str) -> None:
    with pytest.raises(InvalidApiResponse, match="not a safe file name"):
        ExportJob.from_api(seed_job(filename=filename))


@pytest.mark.parametrize("missing", ["downloadUrl", "fileSize"])
def test_given_done_job_without_url_or_size_when_parsed_then_invalid_api_response(missing: str) -> None:
    body = seed_job()
    del body[missing]
    with pytest.raises(InvalidApiResponse, match="done but without downloadUrl or fileSize"):
        ExportJob.from_api(body)


def test_given_done_job_with_empty_url_when_parsed_then_invalid_api_response() -> None:
    with pytest.raises(InvalidApiResponse, match="done but without"):
        ExportJob.from_api(seed_job(downloadUrl=""))


def test_given_non_string_download_url_when_parsed_then_invalid_api_response() -> None:
    with pytest.raises(InvalidApiResponse, match="downloadUrl"):
        ExportJob.from_api(seed_job(downloadUrl=["https://x"]))


@pytest.mark.parametrize("field", ["createdAt", "updatedAt", "jobExpiryDate"])
@pytest.mark.parametrize("value", ["yesterday", "2023-13-01T00:00:00Z", "", 1695064744])
def test_given_malformed_timestamp_when_parsed_then_invalid_api_response_naming_field(
    field: str, value: object
) -> None:
    with pytest.raises(InvalidApiResponse, match=field):
        ExportJob.from_api(seed_job(**{field: value}))


@pytest.mark.parametrize("value", ["2023-02-30", "2023-9-17", "17/09/2023", "2023-09-17T25:00:00Z"])
def test_given_bad_data_date_when_parsed_then_invalid_api_response_naming_field(value: str) -> None:
    with pytest.raises(InvalidApiResponse, match="dataDateTo"):
        ExportJob.from_api(seed_job(dataDateTo=value))


@pytest.mark.parametrize("tenant", ["../x", "a/b", "a b"])
def test_given_unsafe_tenant_in_response_when_parsed_then_invalid_api_response(tenant: str) -> None:
    with pytest.raises(InvalidApiResponse, match="tenantId in the API response"):
        ExportJob.from_api(seed_job(tenantId=tenant))


@pytest.mark.parametrize("job_id", ["a/b", "x" * 129, "id with space", "..", "a.b", "a:b", "a\tb"])
def test_given_unsafe_job_id_when_parsed_then_invalid_api_response(job_id: str) -> None:
    with pytest.raises(InvalidApiResponse, match="job id"):
        ExportJob.from_api(seed_job(id=job_id))


def test_given_reversed_data_dates_when_parsed_then_invalid_api_response() -> None:
    with pytest.raises(InvalidApiResponse):
        ExportJob.from_api(seed_job(dataDateFrom="2023-09-18", dataDateTo="2023-09-17"))


def test_given_data_date_as_afternoon_timestamp_when_parsed_then_invalid_api_response() -> None:
    # The code's own comment: "accept a midnight timestamp form too, but nothing vaguer".
    with pytest.raises(InvalidApiResponse):
        ExportJob.from_api(seed_job(dataDateFrom="2023-09-17T15:30:00Z"))


# --- ExportJob.is_expired -----------------------------------------------------------------------


def test_given_expiry_when_checked_then_expired_from_that_instant() -> None:
    job = ExportJob.from_api(seed_job())
    expiry = datetime(2023, 9, 25, 19, 19, 4, 449123, tzinfo=UTC)

    assert not job.is_expired(expiry - timedelta(microseconds=1))
    assert job.is_expired(expiry)
    assert job.is_expired(expiry.astimezone(timezone(timedelta(hours=-5))) + timedelta(seconds=1))


def test_given_no_expiry_when_checked_then_never_expired() -> None:
    body = seed_job()
    del body["jobExpiryDate"]
    assert not ExportJob.from_api(body).is_expired(datetime(9999, 1, 1, tzinfo=UTC))


def test_given_a_pinned_identity_when_an_answer_names_another_tenant_day_or_id_then_it_is_an_integrity_error():
    from omborigrid_export.errors import IntegrityError
    from omborigrid_export.models import JobIdentity

    asked = ExportRequest.parse("621e1fc633350f0007637a0c", "2026-11-01", "2026-11-01")
    identity = JobIdentity("6560f1a2b3c4d5e6f7a8b9c0", asked)
    same = ExportJob(identity.job_id, JobStatus.QUEUED, asked.tenant_id, asked.date_from, asked.date_to, "f.parquet")
    assert identity.confirm(same) is same
    for other in (
        dataclasses.replace(same, tenant_id="621e1fc633350f0007637aff"),
        dataclasses.replace(same, date_to=asked.date_to + timedelta(days=1)),
        dataclasses.replace(same, id="6560f1a2b3c4d5e6f7a8b9ff"),
    ):
        with pytest.raises(IntegrityError, match="was asked about"):
            identity.confirm(other)
