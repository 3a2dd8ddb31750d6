"""The verified streaming transfer against the simulator (real HTTP) and moto's S3 server.

Each fault ends in one of two ways: a byte-identical object under the final key, or a typed failure with
nothing under the final key and no multipart upload left open.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from omborigrid_export import checksum
from omborigrid_export.client import OmboriGridClient
from omborigrid_export.errors import (
    ConfigurationError,
    DownloadUrlExpired,
    IntegrityError,
    LandingConflict,
    TransferFailed,
    UnsafeUrl,
)
from omborigrid_export.models import ExportJob, ExportRequest, JobStatus
from omborigrid_export.settings import MIB, TransferSettings
from omborigrid_export.transfer import (
    Checkpoint,
    Continued,
    Landed,
    LandedObject,
    MultipartUpload,
    StreamedParts,
    Transfer,
    TransferOutcome,
)
from tests.conftest import TENANT, free_port, object_keys, open_uploads

FAST = TransferSettings(part_size=5 * MIB, concurrency=3, max_attempts=4)


def done_job(sim: Any, client: OmboriGridClient, day: str = "2026-11-01") -> ExportJob:
    job = client.create_job(ExportRequest.parse(TENANT, day, day))
    deadline = time.monotonic() + 30
    while job.status is not JobStatus.DONE:
        assert time.monotonic() < deadline, "the simulator job never finished"
        time.sleep(0.05)
        job = client.get_job(job.id)
    return job


@pytest.fixture
def client(simulator: Any) -> OmboriGridClient:
    return OmboriGridClient(simulator.base_url, simulator.token)


def land(s3: Any, client: OmboriGridClient, job: ExportJob, bucket: str, **kwargs: Any) -> Any:
    transfer = Transfer(
        s3, kwargs.pop("settings", FAST), allow_local_urls=kwargs.pop("allow_local", True), sleep=lambda _s: None
    )
    return transfer.land(job, lambda: client.get_job(job.id), bucket=bucket, key=kwargs.pop("key", "k/file"), **kwargs)


def landed_object(outcome: TransferOutcome) -> LandedObject:
    assert isinstance(outcome, Landed), outcome
    return outcome.object


def source_bytes(sim: Any, job: ExportJob) -> bytes:
    return sim.job_file(job.id).read_bytes()


def assert_identical(s3: Any, bucket: str, key: str, expected: bytes) -> None:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert len(body) == len(expected)
    assert body == expected


def assert_nothing_landed(s3: Any, bucket: str) -> None:
    assert object_keys(s3, bucket) == []
    assert open_uploads(s3, bucket) == []


def test_given_a_multi_part_file_when_landed_then_object_is_identical_and_verified(simulator, client, s3, bucket):
    simulator.configure(target_bytes=12 * MIB)
    job = done_job(simulator, client)
    outcome = land(s3, client, job, bucket)
    landed = landed_object(outcome)
    expected = source_bytes(simulator, job)
    assert_identical(s3, bucket, "k/file", expected)
    assert landed.bytes == len(expected) == job.file_size
    assert landed.parts == 3
    assert landed.ranged is True
    assert landed.content_kind == "parquet"
    assert landed.checksum_crc32 == checksum.to_base64(zlib.crc32(expected))
    head = s3.head_object(Bucket=bucket, Key="k/file", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == landed.checksum_crc32
    assert head["Metadata"]["omborigrid-job-id"] == job.id
    # Every part came as its own byte range.
    ranges = [r for r in simulator.stats().download_ranges if r]
    assert {"bytes=0-5242879", "bytes=5242880-10485759"} <= set(ranges)
    assert open_uploads(s3, bucket) == []


def test_given_a_landed_object_when_landed_again_then_nothing_is_downloaded_or_rewritten(simulator, client, s3, bucket):
    job = done_job(simulator, client)
    first = landed_object(land(s3, client, job, bucket))
    downloads = simulator.stats().by_route.get("GET /download", 0)
    second = landed_object(land(s3, client, job, bucket))
    assert second.already_existed is True
    assert first.already_existed is False
    assert second.checksum_crc32 == first.checksum_crc32
    assert simulator.stats().by_route.get("GET /download", 0) == downloads


def test_given_a_dropped_connection_mid_part_then_it_resumes_from_the_last_byte(simulator, client, s3, bucket):
    simulator.configure(target_bytes=7 * MIB)
    job = done_job(simulator, client)
    simulator.configure(drop_after_bytes=3 * MIB + 17, drop_count=1)
    outcome = land(s3, client, job, bucket, settings=TransferSettings(part_size=5 * MIB, concurrency=1))
    assert_identical(s3, bucket, "k/file", source_bytes(simulator, job))
    stats = simulator.stats()
    assert stats.connections_dropped == 1
    # The resume asked for exactly the bytes after the ones received.
    resume_ranges = [
        r
        for r in stats.download_ranges
        if r and r.startswith("bytes=") and r.split("=")[1].split("-")[0] not in ("0", "5242880")
    ]
    assert resume_ranges, stats.download_ranges
    start = int(resume_ranges[0].split("=")[1].split("-")[0])
    assert 0 < start < 5 * MIB or start > 5 * MIB
    assert landed_object(outcome).stats["resumes"] == 1


def test_given_a_source_that_ignores_range_and_drops_then_the_stream_restarts_cleanly(simulator, client, s3, bucket):
    simulator.configure(target_bytes=11 * MIB)
    job = done_job(simulator, client)
    simulator.configure(ignore_range=True, drop_after_bytes=6 * MIB, drop_count=1)
    outcome = land(s3, client, job, bucket)
    landed = landed_object(outcome)
    assert landed.ranged is False
    assert landed.stats["restarts"] == 1
    assert_identical(s3, bucket, "k/file", source_bytes(simulator, job))
    assert open_uploads(s3, bucket) == []


def test_given_an_expired_download_url_then_a_fresh_one_is_fetched(simulator, client, s3, bucket):
    job = done_job(simulator, client)
    gets_before = simulator.stats().by_route.get("GET /api/analytics-export-job", 0)
    simulator.configure(expire_next_downloads=2)
    outcome = land(s3, client, job, bucket)
    assert landed_object(outcome).stats["url_refreshes"] == 2
    assert simulator.stats().by_route["GET /api/analytics-export-job"] == gets_before + 2
    assert_identical(s3, bucket, "k/file", source_bytes(simulator, job))


def test_given_urls_that_never_stop_expiring_then_it_fails_cleanly(simulator, client, s3, bucket):
    job = done_job(simulator, client)
    simulator.configure(expire_next_downloads=100)
    with pytest.raises(DownloadUrlExpired) as caught:
        land(s3, client, job, bucket)
    assert "X-Sim-Signature" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)
    assert_nothing_landed(s3, bucket)


@pytest.mark.parametrize("delta", [10, -10])
def test_given_a_file_size_that_lies_then_nothing_lands(simulator, client, s3, bucket, delta):
    simulator.configure(file_size_delta=delta)
    job = done_job(simulator, client)
    with pytest.raises(IntegrityError, match="fileSize"):
        land(s3, client, job, bucket)
    assert_nothing_landed(s3, bucket)


def test_given_a_file_size_that_lies_on_a_stream_source_then_nothing_lands(simulator, client, s3, bucket):
    simulator.configure(file_size_delta=-5, ignore_range=True)
    job = done_job(simulator, client)
    with pytest.raises(IntegrityError):
        land(s3, client, job, bucket)
    assert_nothing_landed(s3, bucket)


def test_given_a_zip_delivery_named_parquet_then_it_is_recognised_by_its_bytes(simulator, client, s3, bucket):
    simulator.configure(delivery="zip", filename_override="export.parquet")
    job = done_job(simulator, client)
    landed = landed_object(land(s3, client, job, bucket))
    assert job.filename == "export.parquet"
    assert landed.content_kind == "zip"
    assert_identical(s3, bucket, "k/file", source_bytes(simulator, job))


def test_given_a_loopback_url_without_permission_then_it_is_refused_before_connecting(simulator, client, s3, bucket):
    job = done_job(simulator, client)
    downloads = simulator.stats().by_route.get("GET /download", 0)
    with pytest.raises(UnsafeUrl, match="only https is followed"):
        land(s3, client, job, bucket, allow_local=False)
    assert simulator.stats().by_route.get("GET /download", 0) == downloads
    assert_nothing_landed(s3, bucket)


def test_given_connections_that_keep_dropping_then_it_fails_cleanly(simulator, client, s3, bucket):
    job = done_job(simulator, client)
    simulator.configure(drop_after_bytes=100, drop_count=50)
    with pytest.raises(TransferFailed, match="failed 4 times"):
        land(s3, client, job, bucket)
    assert_nothing_landed(s3, bucket)


def test_given_a_different_object_under_the_key_then_it_is_kept_unless_replacing(simulator, client, s3, bucket):
    job = done_job(simulator, client)
    s3.put_object(Bucket=bucket, Key="k/file", Body=b"older export")
    with pytest.raises(LandingConflict, match="not replaced unless forced"):
        land(s3, client, job, bucket)
    assert s3.get_object(Bucket=bucket, Key="k/file")["Body"].read() == b"older export"
    land(s3, client, job, bucket, replace=True)
    assert_identical(s3, bucket, "k/file", source_bytes(simulator, job))


def test_given_a_deadline_then_a_checkpoint_is_returned_and_the_next_call_resumes(simulator, client, s3, bucket):
    simulator.configure(target_bytes=16 * MIB)
    job = done_job(simulator, client)
    settings = TransferSettings(part_size=5 * MIB, concurrency=1)
    calls = {"n": 0}

    def two_parts_of_time() -> float:
        calls["n"] += 1
        return 1000.0 if calls["n"] <= 2 else 0.0

    first = land(s3, client, job, bucket, settings=settings, time_left=two_parts_of_time)
    assert isinstance(first, Continued)
    checkpoint = first.checkpoint
    assert checkpoint.part_numbers == [1, 2]
    assert checkpoint.bytes_done == 10 * MIB
    assert object_keys(s3, bucket) == []  # nothing visible yet
    resumed = land(s3, client, job, bucket, settings=settings, resume=type(checkpoint).from_dict(checkpoint.to_dict()))
    assert landed_object(resumed).parts == 4
    assert_identical(s3, bucket, "k/file", source_bytes(simulator, job))
    # The resumed call fetched only the missing parts.
    ranges = [r for r in simulator.stats().download_ranges if r]
    assert ranges.count("bytes=0-5242879") == 1


def test_given_a_checkpoint_holding_the_last_part_then_the_tail_is_read_again_for_the_format_check(
    simulator, client, s3, bucket
):
    simulator.configure(target_bytes=12 * MIB)
    job = done_job(simulator, client)
    data = source_bytes(simulator, job)
    upload = MultipartUpload.create(s3, bucket, "k/file", job, size=len(data), part_size=5 * MIB)
    last = upload.part_count
    record = upload.upload_part(last, data[(last - 1) * 5 * MIB :], (last - 1) * 5 * MIB)
    checkpoint = Checkpoint(job.id, bucket, "k/file", upload.upload_id, len(data), 5 * MIB, {last: record.crc32})
    simulator.reset_stats()
    landed = landed_object(land(s3, client, job, bucket, resume=checkpoint))
    assert landed.content_kind == "parquet"
    assert_identical(s3, bucket, "k/file", data)
    ranges = simulator.stats().download_ranges
    assert f"bytes={len(data) - 65_557}-{len(data) - 1}" in ranges
    assert not any(r and r.startswith(f"bytes={(last - 1) * 5 * MIB}-") for r in ranges)


def test_given_a_checkpoint_whose_upload_is_gone_then_it_starts_over(simulator, client, s3, bucket):
    simulator.configure(target_bytes=6 * MIB)
    job = done_job(simulator, client)
    assert job.file_size is not None
    gone = Checkpoint(job.id, bucket, "k/file", "no-such-upload", job.file_size, 5 * MIB, {1: 123})
    landed = landed_object(land(s3, client, job, bucket, resume=gone))
    assert landed.parts == 2
    assert_identical(s3, bucket, "k/file", source_bytes(simulator, job))


class FailingFirstGets(requests.Session):
    """A session whose first ``failures`` GETs (across every session of a transfer) die with a raw OSError,
    as a socket reset before requests wraps it does."""

    failures = 0

    def get(self, url: str | bytes, **kwargs: Any) -> requests.Response:
        if FailingFirstGets.failures > 0:
            FailingFirstGets.failures -= 1
            raise ConnectionResetError(104, "Connection reset by peer")
        return super().get(url, **kwargs)


def test_given_a_raw_socket_error_on_the_first_request_then_the_probe_retries_it(simulator, client, s3, bucket):
    # Before one set of transient errors, the probe retried only requests' errors: this escaped untyped.
    job = done_job(simulator, client)
    FailingFirstGets.failures = 2
    slept: list[float] = []
    transfer = Transfer(s3, FAST, allow_local_urls=True, session_factory=FailingFirstGets, sleep=slept.append)
    outcome = transfer.land(job, lambda: client.get_job(job.id), bucket=bucket, key="k/file")
    assert FailingFirstGets.failures == 0
    assert slept == [1.0, 2.0]  # the starting backoff
    assert landed_object(outcome).stats["requests"] >= 3
    assert_identical(s3, bucket, "k/file", source_bytes(simulator, job))


def test_given_an_unreachable_s3_endpoint_then_configuration_error_before_any_download(simulator, client):
    job = done_job(simulator, client)
    downloads = simulator.stats().by_route.get("GET /download", 0)
    nowhere = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region_name="eu-west-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    with pytest.raises(ConfigurationError, match=r"Could not connect to S3 for the check of s3://lake/k/file"):
        land(nowhere, client, job, "lake")
    assert simulator.stats().by_route.get("GET /download", 0) == downloads


def test_given_a_bucket_that_does_not_exist_then_configuration_error_and_nothing_downloaded(simulator, client, s3):
    job = done_job(simulator, client)
    downloads = simulator.stats().by_route.get("GET /download", 0)
    with pytest.raises(ConfigurationError, match="NoSuchBucket"):
        land(s3, client, job, "no-such-bucket-here")
    assert simulator.stats().by_route.get("GET /download", 0) == downloads


def lie_about_recorded_checksums(s3: Any) -> list[str]:
    """Make S3 report a CRC32 other than the one it stored, on every HeadObject that reports one (as an S3
    that accepts a completion whose checksum does not match would). Returns the CRCs it replaced."""
    replaced: list[str] = []

    def lie(parsed: dict[str, Any], **_: Any) -> None:
        if "ChecksumCRC32" in parsed:
            replaced.append(parsed["ChecksumCRC32"])
            parsed["ChecksumCRC32"] = checksum.to_base64(0xDEADBEEF)

    s3.meta.events.register("after-call.s3.HeadObject", lie)
    return replaced


def all_versions(s3: Any, bucket: str) -> list[tuple[str, str]]:
    listed = s3.list_object_versions(Bucket=bucket)
    return sorted(
        [("version", v["Key"]) for v in listed.get("Versions", [])]
        + [("delete marker", m["Key"]) for m in listed.get("DeleteMarkers", [])]
    )


@pytest.mark.parametrize("versioned", [False, True])
def test_given_s3_records_another_checksum_than_sent_then_the_new_object_is_removed(
    simulator, client, s3, bucket, versioned
):
    if versioned:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    job = done_job(simulator, client)
    replaced = lie_about_recorded_checksums(s3)
    with pytest.raises(IntegrityError, match="were sent; the object was removed") as caught:
        land(s3, client, job, bucket)
    assert checksum.to_base64(zlib.crc32(source_bytes(simulator, job))) in str(caught.value)
    assert replaced, "the check never saw the object"
    assert_nothing_landed(s3, bucket)
    # Removed by its version where the bucket keeps versions: no bad version, not even a delete marker.
    assert all_versions(s3, bucket) == []


def test_given_a_replacement_that_fails_its_check_then_the_replaced_object_is_back(simulator, client, s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="k/file", Body=b"older export")
    job = done_job(simulator, client)
    lie_about_recorded_checksums(s3)
    with pytest.raises(IntegrityError, match="the object was removed"):
        land(s3, client, job, bucket, replace=True)
    assert s3.get_object(Bucket=bucket, Key="k/file")["Body"].read() == b"older export"
    assert all_versions(s3, bucket) == [("version", "k/file")]
    assert open_uploads(s3, bucket) == []


def test_given_the_removal_after_a_failed_check_fails_too_then_the_error_says_so(simulator, client, s3, bucket):
    job = done_job(simulator, client)
    lie_about_recorded_checksums(s3)

    def refuse_delete(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "DeleteObject")

    s3.meta.events.register("before-call.s3.DeleteObject", refuse_delete)
    with pytest.raises(
        IntegrityError, match=r"Removing it failed too \(S3 refused the removal of s3://.*delete it by hand"
    ):
        land(s3, client, job, bucket)
    assert object_keys(s3, bucket) == ["k/file"]  # left, and said so


def test_given_a_stream_cut_into_parts_by_streamed_parts_then_the_object_is_identical(s3, bucket):
    # What archive deliveries use to land an inflated member: chunks of any size in, whole parts out.
    data = bytes(range(256)) * (12 * MIB // 256) + b"tail"
    job = ExportJob.from_api(
        {
            "id": "job-parts",
            "tenantId": TENANT,
            "dataDateFrom": "2026-11-01",
            "dataDateTo": "2026-11-01",
            "status": "done",
            "filename": "member.parquet",
            "downloadUrl": "https://example.invalid/x",
            "fileSize": len(data),
        }
    )
    upload = MultipartUpload.create(s3, bucket, "k/member", job, size=len(data), part_size=5 * MIB)
    sizes = [1, 7, MIB - 3, 3 * MIB + 11, 1234567]
    with StreamedParts(upload, uploads=2) as parts:
        offset, i = 0, 0
        while offset < len(data):
            chunk = data[offset : offset + sizes[i % len(sizes)]]
            parts.write(chunk)
            offset, i = offset + len(chunk), i + 1
        parts.finish()
    assert parts.received == len(data)
    assert sorted(upload.parts) == [1, 2, 3]
    assert [upload.parts[n].size for n in (1, 2)] == [5 * MIB, 5 * MIB]
    upload.complete(upload.combined_crc(), replace=False)
    assert_identical(s3, bucket, "k/member", data)
    assert upload.combined_crc() == zlib.crc32(data)
