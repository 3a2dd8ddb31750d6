"""Landing in an existing bucket encrypted with a customer managed KMS key (ExistingBucketName, BucketKmsKeyArn):
the Download function needs that key through S3, and the template grants exactly that (measured, as in
test_least_privilege.py)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from omborigrid_local.engine import LocalStack
from omborigrid_local.simulator import Simulator

from .helpers import LEAST_PRIVILEGE_LINES, object_keys, request_day, start_stack

BUCKET = f"customer-lake-{secrets.token_hex(4)}"
KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
KMS_GRANT = "DownloadFunctionRole/DownloadFunctionRolePolicy1#UseTheBucketKeyThroughS3"


@pytest.fixture(scope="module")
def stack(module_simulator: Simulator) -> Iterator[LocalStack]:
    local = start_stack(module_simulator, parameters={"ExistingBucketName": BUCKET, "BucketKmsKeyArn": KEY_ARN})
    try:
        yield local
    finally:
        local.close()


def test_landing_under_a_customer_key_uses_exactly_the_key_grant(
    stack: LocalStack, sim: Simulator, pytestconfig: pytest.Config
) -> None:
    """Given a bucket whose default encryption is a customer managed key, when a parquet and a zip delivery land,
    then every object is encrypted with that key, every call is allowed, and both key actions were needed and
    granted (by the statement that exists only with BucketKmsKeyArn)."""
    tenants = [secrets.token_hex(12), secrets.token_hex(12)]
    request_day(stack, tenants[0])
    sim.configure(delivery="zip")
    request_day(stack, tenants[1])
    executions = stack.wait_for_executions(2, timeout=60)
    assert [e["status"] for e in executions] == ["SUCCEEDED", "SUCCEEDED"]
    s3 = stack.client("s3")
    keys = object_keys(stack, stack.prefix)
    assert len(keys) >= 4
    assert {s3.head_object(Bucket=BUCKET, Key=k).get("SSEKMSKeyId") for k in keys} == {KEY_ARN}

    report = stack.least_privilege()

    pytestconfig.stash.setdefault(LEAST_PRIVILEGE_LINES, []).append(f"existing bucket under a key: {report.summary()}")
    assert report.missing == [], report.details()
    kms = {(action, resource) for principal, action, resource in report.checked if action.startswith("kms:")}
    assert kms == {("kms:GenerateDataKey", KEY_ARN), ("kms:Decrypt", KEY_ARN)}
    assert {g.action for g in report.used if g.source == KMS_GRANT} == {"kms:GenerateDataKey", "kms:Decrypt"}
