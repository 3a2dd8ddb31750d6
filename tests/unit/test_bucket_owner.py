"""The bucket owner pin: every S3 request of a pinned client names the expected owner. No network: botocore's
Stubber answers, and a hook registered after every other one reads the parameters the request is built from."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from omborigrid_export.bucket_owner import pin_bucket_owner
from omborigrid_export.errors import ConfigurationError

OWNER = "123456789012"


def s3_client() -> Any:
    return boto3.client("s3", region_name="eu-west-1", aws_access_key_id="k", aws_secret_access_key="s")


def sent_params(client: Any) -> list[dict[str, Any]]:
    """The final parameters of every request the client makes from now on."""
    sent: list[dict[str, Any]] = []

    def keep(params: dict[str, Any], **_: Any) -> None:
        sent.append(dict(params))

    client.meta.events.register_last("before-parameter-build.s3", keep)
    return sent


def test_every_operation_that_takes_an_owner_names_it() -> None:
    client = s3_client()
    pin_bucket_owner(client, OWNER)
    pin_bucket_owner(client, OWNER)  # a second registration (a cached client) changes nothing
    sent = sent_params(client)
    with Stubber(client) as stub:
        stub.add_response("head_object", {})
        stub.add_response("copy_object", {})
        client.head_object(Bucket="lake", Key="k")
        client.copy_object(Bucket="lake", Key="k2", CopySource="lake/k")
    assert [p.get("ExpectedBucketOwner") for p in sent] == [OWNER, OWNER]
    assert sent[1].get("ExpectedSourceBucketOwner") == OWNER


def test_an_owner_set_by_the_caller_is_kept_and_an_unpinned_client_sends_none() -> None:
    pinned, plain = s3_client(), s3_client()
    pin_bucket_owner(pinned, OWNER)
    pinned_sent, plain_sent = sent_params(pinned), sent_params(plain)
    with Stubber(pinned) as pinned_stub, Stubber(plain) as plain_stub:
        pinned_stub.add_response("head_object", {})
        plain_stub.add_response("head_object", {})
        pinned.head_object(Bucket="lake", Key="k", ExpectedBucketOwner="210987654321")
        plain.head_object(Bucket="lake", Key="k")
    assert pinned_sent[0]["ExpectedBucketOwner"] == "210987654321"
    assert "ExpectedBucketOwner" not in plain_sent[0]


def test_a_malformed_owner_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="12-digit"):
        pin_bucket_owner(s3_client(), "my-account")
