"""What the stricter S3 (LocalStack) refuses and moto accepts — why the integration tier lands files there.

Each rule is asserted on what the server does with a raw S3 call; where moto differs, the same call on moto
is shown beside it, so the moto half proves the difference (if moto starts refusing it, that test fails and
this module should be revisited). Then our own transfer lands a file on the stricter S3, byte-identical
and with its full-object CRC32 recorded; last, the server listens on loopback only and a failed start is
reported with its log.
"""

from __future__ import annotations

import base64
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from omborigrid_export.client import OmboriGridClient
from omborigrid_export.models import ExportJob, ExportRequest, JobStatus
from omborigrid_export.settings import MIB, TransferSettings
from omborigrid_export.transfer import Landed, Transfer
from tests.conftest import S3_BACKEND_VARIABLE, TENANT, object_keys, open_uploads, s3_backend
from tests.s3servers import LocalStackS3, LocalStackUnavailable

pytestmark = pytest.mark.skipif(
    s3_backend() == "moto", reason=f"{S3_BACKEND_VARIABLE}=moto: LocalStack was not asked for"
)

#: S3's smallest part but the last one: a two-part upload is 5 MiB + a little.
FIRST_PART = b"a" * (5 * MIB)
LAST_PART = b"b" * 1000


def crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def client(endpoint: str) -> Any:
    # Checksums only where the call names them, so each test sends exactly the checksum it means to.
    config = Config(request_checksum_calculation="when_required", response_checksum_validation="when_required")
    return boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-1", config=config)


@pytest.fixture
def strict(strict_s3: str) -> Any:
    return client(strict_s3)


@pytest.fixture
def moto(moto_server: str) -> Any:
    return client(moto_server)


def new_bucket(s3: Any) -> str:
    name = f"strict-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return name


@dataclass
class Upload:
    """A two-part CRC32 multipart upload, as the transfer makes them (FULL_OBJECT unless told otherwise)."""

    s3: Any
    checksum_type: str = "FULL_OBJECT"
    bucket: str = ""
    key: str = "lake/day.parquet"
    upload_id: str = ""
    parts: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bucket = new_bucket(self.s3)
        created = self.s3.create_multipart_upload(
            Bucket=self.bucket, Key=self.key, ChecksumAlgorithm="CRC32", ChecksumType=self.checksum_type
        )
        self.upload_id = created["UploadId"]

    def upload_part(self, number: int, body: bytes, checksum: str | None = None) -> None:
        sent = checksum or crc32(body)
        answer = self.s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=body, ChecksumCRC32=sent
        )
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"], "ChecksumCRC32": sent})

    def upload_both_parts(self) -> None:
        self.upload_part(1, FIRST_PART)
        self.upload_part(2, LAST_PART)

    def complete(self, parts: list[dict[str, Any]] | None = None, **checksum: str) -> dict[str, Any]:
        return dict(
            self.s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts if parts is None else parts},
                **checksum,
            )
        )

    def complete_full_object(self, value: str) -> dict[str, Any]:
        return self.complete(ChecksumCRC32=value, ChecksumType="FULL_OBJECT")


def error_code(raised: pytest.ExceptionInfo[ClientError]) -> str:
    return str(raised.value.response["Error"]["Code"])


WRONG_CRC = crc32(b"not the object")
RIGHT_CRC = crc32(FIRST_PART + LAST_PART)


# -- a wrong full-object CRC32 on CompleteMultipartUpload -------------------------------------------------


def test_strict_s3_refuses_a_wrong_full_object_crc32_and_nothing_lands(strict: Any) -> None:
    upload = Upload(strict)
    upload.upload_both_parts()
    with pytest.raises(ClientError) as raised:
        upload.complete_full_object(WRONG_CRC)
    assert error_code(raised) in ("BadDigest", "InvalidRequest")
    assert object_keys(strict, upload.bucket) == []
    # Refused, not consumed: the same upload completes once the right CRC is sent.
    assert upload.complete_full_object(RIGHT_CRC)["ChecksumCRC32"] == RIGHT_CRC
    head = strict.head_object(Bucket=upload.bucket, Key=upload.key, ChecksumMode="ENABLED")
    assert (head["ChecksumCRC32"], head["ChecksumType"]) == (RIGHT_CRC, "FULL_OBJECT")


def test_moto_accepts_the_same_wrong_full_object_crc32_and_keeps_the_object(moto: Any) -> None:
    upload = Upload(moto)
    upload.upload_both_parts()
    upload.complete_full_object(WRONG_CRC)
    body = moto.get_object(Bucket=upload.bucket, Key=upload.key)["Body"].read()
    assert body == FIRST_PART + LAST_PART
    assert object_keys(moto, upload.bucket) == [upload.key]


# -- a wrong part checksum on UploadPart ------------------------------------------------------------------


def test_strict_s3_refuses_a_part_whose_crc32_is_wrong(strict: Any) -> None:
    upload = Upload(strict)
    with pytest.raises(ClientError) as raised:
        upload.upload_part(1, FIRST_PART, checksum=WRONG_CRC)
    assert error_code(raised) == "BadDigest"
    listed = strict.list_parts(Bucket=upload.bucket, Key=upload.key, UploadId=upload.upload_id)
    assert listed.get("Parts", []) == []


def test_moto_accepts_a_part_whose_crc32_is_wrong(moto: Any) -> None:
    upload = Upload(moto)
    upload.upload_part(1, FIRST_PART, checksum=WRONG_CRC)
    listed = moto.list_parts(Bucket=upload.bucket, Key=upload.key, UploadId=upload.upload_id)
    assert [p["PartNumber"] for p in listed["Parts"]] == [1]


# -- an aborted upload ------------------------------------------------------------------------------------


def test_strict_s3_answers_no_such_upload_after_an_abort(strict: Any) -> None:
    upload = Upload(strict)
    upload.upload_part(1, FIRST_PART)
    strict.abort_multipart_upload(Bucket=upload.bucket, Key=upload.key, UploadId=upload.upload_id)
    with pytest.raises(ClientError) as late_part:
        upload.upload_part(2, LAST_PART)
    with pytest.raises(ClientError) as late_complete:
        upload.complete_full_object(RIGHT_CRC)
    assert (error_code(late_part), error_code(late_complete)) == ("NoSuchUpload", "NoSuchUpload")
    assert object_keys(strict, upload.bucket) == []
    assert open_uploads(strict, upload.bucket) == []


def test_moto_answers_an_internal_error_to_a_part_after_an_abort(moto: Any) -> None:
    upload = Upload(moto)
    moto.abort_multipart_upload(Bucket=upload.bucket, Key=upload.key, UploadId=upload.upload_id)
    with pytest.raises(ClientError) as late_part:
        upload.upload_part(1, FIRST_PART)
    # A 500 is what a retrying client retries; S3's NoSuchUpload (404) is final.
    assert late_part.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


# -- the parts list of CompleteMultipartUpload ------------------------------------------------------------


def test_strict_s3_refuses_parts_out_of_order(strict: Any) -> None:
    upload = Upload(strict)
    upload.upload_both_parts()
    with pytest.raises(ClientError) as raised:
        upload.complete(list(reversed(upload.parts)), ChecksumCRC32=RIGHT_CRC, ChecksumType="FULL_OBJECT")
    assert error_code(raised) == "InvalidPartOrder"
    assert object_keys(strict, upload.bucket) == []


def test_strict_s3_refuses_a_composite_upload_completed_without_part_checksums(strict: Any) -> None:
    upload = Upload(strict, checksum_type="COMPOSITE")
    upload.upload_both_parts()
    without_checksums = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in upload.parts]
    with pytest.raises(ClientError) as raised:
        upload.complete(without_checksums)
    assert error_code(raised) == "InvalidRequest"
    assert object_keys(strict, upload.bucket) == []


def test_moto_completes_a_composite_upload_without_part_checksums(moto: Any) -> None:
    upload = Upload(moto, checksum_type="COMPOSITE")
    upload.upload_both_parts()
    upload.complete([{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in upload.parts])
    assert object_keys(moto, upload.bucket) == [upload.key]


# -- our transfer on the stricter S3 ----------------------------------------------------------------------


@pytest.fixture
def served(simulator: Any) -> tuple[OmboriGridClient, ExportJob]:
    simulator.configure(target_bytes=12 * MIB)
    api = OmboriGridClient(simulator.base_url, simulator.token)
    job = api.create_job(ExportRequest.parse(TENANT, "2026-11-01", "2026-11-01"))
    deadline = time.monotonic() + 30
    while job.status is not JobStatus.DONE:
        assert time.monotonic() < deadline, "the simulator job never finished"
        time.sleep(0.05)
        job = api.get_job(job.id)
    return api, job


def test_the_transfer_lands_a_byte_identical_file_with_its_full_object_crc32_on_strict_s3(
    strict_s3: str, simulator: Any, served: tuple[OmboriGridClient, ExportJob]
) -> None:
    api, job = served
    s3 = boto3.client("s3", endpoint_url=strict_s3, region_name="eu-west-1")
    bucket = new_bucket(s3)
    transfer = Transfer(s3, TransferSettings(part_size=5 * MIB, concurrency=3), allow_local_urls=True)
    outcome = transfer.land(job, lambda: api.get_job(job.id), bucket=bucket, key="lake/day.parquet")
    expected = simulator.job_file(job.id).read_bytes()
    assert isinstance(outcome, Landed)
    landed = outcome.object
    assert landed.parts == 3
    assert s3.get_object(Bucket=bucket, Key="lake/day.parquet")["Body"].read() == expected
    head = s3.head_object(Bucket=bucket, Key="lake/day.parquet", ChecksumMode="ENABLED")
    assert (head["ChecksumCRC32"], head["ChecksumType"]) == (crc32(expected), "FULL_OBJECT")
    assert landed.checksum_crc32 == crc32(expected)
    assert open_uploads(s3, bucket) == []


# -- the server itself ------------------------------------------------------------------------------------


def listening_addresses(port: int) -> set[str]:
    """The local addresses in LISTEN state on ``port``, from the kernel's socket tables (IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_strict_s3_listens_on_loopback_only(strict_s3_server: LocalStackS3) -> None:
    # 0100007F is 127.0.0.1 as the kernel prints it; 0.0.0.0 or :: would be every interface.
    assert listening_addresses(strict_s3_server.port) == {"0100007F"}


def test_a_server_that_dies_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text("#!/bin/sh\necho 'ImportError: no module named localstack'\nexit 3\n")
    python.chmod(0o755)
    with pytest.raises(LocalStackUnavailable) as raised:
        LocalStackS3(tmp_path / "server", venv=venv).start()
    assert "exited with status 3 while starting" in str(raised.value)
    assert "ImportError: no module named localstack" in str(raised.value)
