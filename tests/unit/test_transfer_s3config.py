"""transfer_s3_config: over https an UploadPart carrying our CRC32 is not hashed again for the signature."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config

from omborigrid_export import checksum
from omborigrid_export.transfer import transfer_s3_config


class _Captured(Exception):
    pass


def _signed_upload_part_headers(endpoint: str, config: Config) -> dict[str, str]:
    """The headers (lower-cased) botocore signs and sends for one UploadPart, stopped before the network."""
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="eu-west-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=config,
    )
    seen: dict[str, str] = {}

    def capture(request: Any, **_: Any) -> None:
        seen.update({k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})
        raise _Captured()

    s3.meta.events.register("before-send.s3.UploadPart", capture)
    body = b"x" * 1024
    with pytest.raises(_Captured):
        s3.upload_part(
            Bucket="b",
            Key="k",
            UploadId="u",
            PartNumber=1,
            Body=body,
            ChecksumCRC32=checksum.to_base64(checksum.crc32_of(body)),
        )
    return seen


def test_over_https_the_part_is_not_hashed_but_keeps_our_crc32() -> None:
    endpoint = "https://127.0.0.1:9"
    headers = _signed_upload_part_headers(endpoint, transfer_s3_config(endpoint))
    assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert headers["x-amz-checksum-crc32"] == checksum.to_base64(checksum.crc32_of(b"x" * 1024))
    assert "x-amz-checksum-crc32" in headers["authorization"]  # the CRC32 is among the signed headers


def test_without_the_setting_botocore_hashes_the_part_even_over_https() -> None:
    headers = _signed_upload_part_headers("https://127.0.0.1:9", Config())
    assert headers["x-amz-content-sha256"] != "UNSIGNED-PAYLOAD"


def test_over_plain_http_the_payload_stays_signed() -> None:
    endpoint = "http://127.0.0.1:9"
    headers = _signed_upload_part_headers(endpoint, transfer_s3_config(endpoint))
    assert headers["x-amz-content-sha256"] != "UNSIGNED-PAYLOAD"
