"""What the deployed pipeline writes, gathered per channel for a secret scan: outcome events, ledger items, S3
objects (bodies, metadata, tags), S3 write parameters, every AWS call's parameters and the Step Functions history.

Shared by test_no_secret_outputs.py (marker secrets at each failure stage) and the fault campaigns (faults/).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from omborigrid_local.engine import LocalStack

from .helpers import events_for

CHANNELS = ("events", "ledger", "s3 objects", "s3 write params", "aws call params", "sfn history")


def as_text(value: Any) -> str:
    return json.dumps(value, default=repr, sort_keys=True)


def s3_objects_text(stack: LocalStack, tenant: str | Sequence[str]) -> str:
    """Every object under the bucket that names the tenant (any of them): its body, head (metadata) and tags."""
    tenants = (tenant,) if isinstance(tenant, str) else tuple(tenant)
    s3 = stack.client("s3")
    texts: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket):
        for listed in page.get("Contents", []):
            key = listed["Key"]
            if not any(t in key for t in tenants):
                continue
            head = s3.head_object(Bucket=stack.bucket, Key=key)
            tags = s3.get_object_tagging(Bucket=stack.bucket, Key=key)["TagSet"]
            body = s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()
            texts.append(as_text({"key": key, "head": head, "tags": tags}))
            texts.append(body.decode("latin-1"))
    return "\n".join(texts)


def output_channels(stack: LocalStack, tenant: str | Sequence[str], first_call: int, arns: list[str]) -> dict[str, str]:
    """Each channel's text for a tenant (or several): calls recorded since ``first_call``, the histories of
    ``arns``."""
    tenants = (tenant,) if isinstance(tenant, str) else tuple(tenant)
    calls = stack.recorder.since(first_call)
    put_events = [c.params for c in calls if c.service == "events" and c.operation == "PutEvents"]
    s3_writes = [
        c.params
        for c in calls
        if c.service == "s3" and c.operation.startswith(("Put", "Create", "Copy", "Complete", "Upload"))
    ]
    items = stack.client("dynamodb").scan(TableName=stack.table_name, ConsistentRead=True)["Items"]
    sfn = stack.client("stepfunctions")
    executions = [sfn.describe_execution(executionArn=arn) for arn in arns]
    return {
        "events": as_text({"put": put_events, "captured": [e for t in tenants for e in events_for(stack, t)]}),
        "ledger": as_text([item for item in items if any(t in as_text(item) for t in tenants)]),
        "s3 objects": s3_objects_text(stack, tenants),
        "s3 write params": as_text(s3_writes),
        "aws call params": as_text([(c.service, c.operation, c.params) for c in calls]),
        "sfn history": as_text({"executions": executions, "history": [stack.history(arn) for arn in arns]}),
    }


def aws_credentials() -> list[str]:
    """The credentials the functions sign with (moto's), which no output should carry either."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    return [os.environ[name] for name in names if len(os.environ.get(name, "")) >= 8]
