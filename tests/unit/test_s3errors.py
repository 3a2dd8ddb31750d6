"""The one S3 error mapping: every botocore failure becomes a typed error whose class says what to do."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from omborigrid_export.errors import ConfigurationError, IntegrityError, TransferFailed
from omborigrid_export.s3errors import NOT_FOUND_CODES, error_code, is_not_found, map_s3_errors


def refusal(code: str, message: str = "refused", operation: str = "HeadObject") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def test_given_no_credentials_anywhere_when_s3_is_called_then_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A real client with nowhere to find credentials: botocore raises NoCredentialsError before any request.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s3 = boto3.session.Session(region_name="eu-west-1").client("s3", endpoint_url="http://127.0.0.1:9")
    expected = r"No usable AWS credentials were found for the check of s3://b/k"
    with pytest.raises(ConfigurationError, match=expected), map_s3_errors("the check of s3://b/k"):
        s3.head_object(Bucket="b", Key="k")


@pytest.mark.parametrize(
    ("raised", "expected", "words"),
    [
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9/b"), ConfigurationError, "Could not connect to S3"),
        (ConnectTimeoutError(endpoint_url="https://s3.example"), TransferFailed, "did not answer in time"),
        (ReadTimeoutError(endpoint_url="https://s3.example"), TransferFailed, "did not answer in time"),
        (ConnectionClosedError(endpoint_url="https://s3.example"), TransferFailed, "The S3 client failed during"),
        (refusal("InvalidAccessKeyId"), ConfigurationError, "Check the bucket name and the credentials"),
        (refusal("SignatureDoesNotMatch"), ConfigurationError, "Check the bucket name and the credentials"),
        (refusal("NoSuchBucket"), ConfigurationError, "Check the bucket name and the credentials"),
        (refusal("AccessDenied"), TransferFailed, "S3 refused the upload of part 2"),
        (refusal("InternalError"), TransferFailed, "S3 refused the upload of part 2"),
        (refusal("NoSuchKey"), TransferFailed, "S3 refused the upload of part 2"),
    ],
)
def test_given_a_botocore_failure_when_mapped_then_a_typed_error_naming_the_operation(
    raised: Exception, expected: type[Exception], words: str
) -> None:
    with pytest.raises(expected) as caught, map_s3_errors("the upload of part 2 to s3://b/k"):
        raise raised
    assert type(caught.value) is expected
    assert words in str(caught.value)
    assert "the upload of part 2 to s3://b/k" in str(caught.value)
    # Nothing of botocore's tree is chained along (it would reach Lambda's error JSON as a cause).
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True


def test_given_a_timeout_then_it_is_retryable_and_a_missing_setting_is_not() -> None:
    with pytest.raises(TransferFailed) as slow, map_s3_errors("x"):
        raise ReadTimeoutError(endpoint_url="https://s3.example")
    with pytest.raises(ConfigurationError) as unreachable, map_s3_errors("x"):
        raise EndpointConnectionError(endpoint_url="https://s3.example")
    assert slow.value.retryable is True
    assert unreachable.value.retryable is False


def test_given_our_own_error_inside_the_block_then_it_passes_unchanged() -> None:
    original = IntegrityError("the size lies")
    with pytest.raises(IntegrityError) as caught, map_s3_errors("x"):
        raise original
    assert caught.value is original


@pytest.mark.parametrize("code", ["404", "NoSuchKey", "NotFound"])
def test_given_any_not_found_code_then_not_found(code: str) -> None:
    assert is_not_found(refusal(code))
    assert code in NOT_FOUND_CODES


@pytest.mark.parametrize("code", ["403", "AccessDenied", "NoSuchBucket", "NoSuchUpload", ""])
def test_given_another_code_then_not_not_found(code: str) -> None:
    assert not is_not_found(refusal(code))
    assert error_code(refusal(code)) == code
