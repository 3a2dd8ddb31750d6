"""What IAM checks for each recorded AWS call: the actions, resource ARNs and condition keys it needs.

Not only the action named like the operation (AWS's Service Authorization Reference, per operation):

- S3: ``HeadObject``/``GetObject``/``GetObjectAttributes`` of a missing key answer 404 only with
  ``s3:ListBucket`` on the bucket (403 without it), so a 404 needs it; the multipart operations are
  ``s3:PutObject``; ``ListParts`` is ``s3:ListMultipartUploadParts``; ``ListMultipartUploads`` is
  ``s3:ListBucketMultipartUploads``; a version id adds the ``...Version`` action. Under a customer managed KMS
  key (the response names the key), a put needs ``kms:GenerateDataKey``, a get ``kms:Decrypt``, a multipart
  upload both, on that key, through S3 (``kms:ViaService``). The AWS managed ``aws/s3`` key needs no grant (its
  key policy allows the account's principals through S3).
- DynamoDB: a transaction needs the item action of each of its items on each table; a query of an index needs
  the index ARN.
- Secrets Manager: the secret's full ARN (with its 6-character suffix) from the response.
- EventBridge: each entry of a ``PutEvents`` is checked on its bus, with ``events:source``/``events:detail-type``.

An operation not listed here fails the check (:class:`UnmappedOperation`): the mapping is extended on purpose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

from .calls import Call
from .iam import Request


class UnmappedOperation(Exception):
    """A recorded call whose IAM needs this module does not know yet."""


@dataclass(frozen=True, slots=True)
class Where:
    """The account and region the calls are made in (the local stack's)."""

    account: str
    region: str
    partition: str = "aws"

    def arn(self, service: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{resource}"


def requests_of(call: Call, where: Where) -> list[Request]:
    """The IAM requests one call makes (none for calls that need no permission)."""
    mapper = _MAPPERS.get(call.service)
    if mapper is None:
        raise UnmappedOperation(f"{call.label}: no IAM mapping for the {call.service} service")
    base = {"aws:SecureTransport": ("true" if call.secure_transport else "false",)}
    return [
        Request(action, resource, tuple(sorted({**base, **extra}.items())))
        for action, resource, extra in mapper(call, where)
    ]


Need = tuple[str, str, dict[str, tuple[str, ...]]]


# ----------------------------------------------------------------------------------------------- S3
_S3_OBJECT_ACTIONS = {
    "HeadObject": ("s3:GetObject", "s3:GetObjectVersion"),
    "GetObject": ("s3:GetObject", "s3:GetObjectVersion"),
    "GetObjectAttributes": ("s3:GetObjectAttributes", "s3:GetObjectVersionAttributes"),
    "PutObject": ("s3:PutObject", None),
    "CreateMultipartUpload": ("s3:PutObject", None),
    "UploadPart": ("s3:PutObject", None),
    "CompleteMultipartUpload": ("s3:PutObject", None),
    "AbortMultipartUpload": ("s3:AbortMultipartUpload", None),
    "ListParts": ("s3:ListMultipartUploadParts", None),
    "DeleteObject": ("s3:DeleteObject", "s3:DeleteObjectVersion"),
}
_S3_BUCKET_ACTIONS = {
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
}
_S3_READS_WITH_404 = frozenset({"HeadObject", "GetObject", "GetObjectAttributes"})
_KMS_FOR_S3 = {
    "GetObject": ("kms:Decrypt",),
    "PutObject": ("kms:GenerateDataKey",),
    "CreateMultipartUpload": ("kms:GenerateDataKey", "kms:Decrypt"),
    "UploadPart": ("kms:GenerateDataKey", "kms:Decrypt"),
    "CompleteMultipartUpload": ("kms:GenerateDataKey", "kms:Decrypt"),
}


def _s3(call: Call, where: Where) -> list[Need]:
    params, op = call.params, call.operation
    bucket = str(params.get("Bucket", ""))
    bucket_arn = f"arn:{where.partition}:s3:::{bucket}"
    keys: dict[str, tuple[str, ...]] = {"s3:ResourceAccount": (where.account,)}
    if params.get("ServerSideEncryption"):
        keys["s3:x-amz-server-side-encryption"] = (str(params["ServerSideEncryption"]),)
    needs: list[Need] = []
    if op in _S3_OBJECT_ACTIONS:
        action, version_action = _S3_OBJECT_ACTIONS[op]
        object_arn = f"{bucket_arn}/{params.get('Key', '')}"
        needs.append((version_action if params.get("VersionId") and version_action else action, object_arn, keys))
        if op == "DeleteObject" and params.get("IfMatch", "*") != "*":
            # A conditional delete on an ETag reads the object to compare: S3 asks for s3:GetObject as well.
            needs.append(("s3:GetObject", object_arn, keys))
        if op in _S3_READS_WITH_404 and call.status == 404:
            needs.append(("s3:ListBucket", bucket_arn, keys))
    elif op in _S3_BUCKET_ACTIONS:
        prefix = {"s3:prefix": (str(params["Prefix"]),)} if "Prefix" in params else {}
        needs.append((_S3_BUCKET_ACTIONS[op], bucket_arn, {**keys, **prefix}))
    else:
        raise UnmappedOperation(f"{call.label}: no IAM mapping for this S3 operation")
    key_id = str(call.response.get("SSEKMSKeyId") or params.get("SSEKMSKeyId") or "")
    if key_id and call.response.get("ServerSideEncryption", "aws:kms") == "aws:kms":
        key_arn = key_id if key_id.startswith("arn:") else where.arn("kms", f"key/{key_id}")
        via: dict[str, tuple[str, ...]] = {
            "kms:ViaService": (f"s3.{where.region}.amazonaws.com",),
            "kms:CallerAccount": (where.account,),
        }
        needs.extend((action, key_arn, via) for action in _KMS_FOR_S3.get(op, ()))
    return needs


# ----------------------------------------------------------------------------------------------- DynamoDB
_TRANSACT_ITEM_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}
_DYNAMODB_TABLE_OPERATIONS = frozenset(
    {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "DescribeTable"}
)


def _table_arn(name: str, where: Where) -> str:
    return name if name.startswith("arn:") else where.arn("dynamodb", f"table/{name}")


def _dynamodb(call: Call, where: Where) -> list[Need]:
    params, op = call.params, call.operation
    if op in _DYNAMODB_TABLE_OPERATIONS:
        arn = _table_arn(str(params["TableName"]), where)
        if params.get("IndexName"):
            arn = f"{arn}/index/{params['IndexName']}"
        return [(f"dynamodb:{op}", arn, {})]
    if op in ("TransactWriteItems", "TransactGetItems"):
        needs: list[Need] = []
        for item in params.get("TransactItems", []):
            for kind, body in item.items():
                needs.append((_TRANSACT_ITEM_ACTIONS[kind], _table_arn(str(body["TableName"]), where), {}))
        return needs
    if op in ("BatchWriteItem", "BatchGetItem"):
        return [(f"dynamodb:{op}", _table_arn(str(t), where), {}) for t in params.get("RequestItems", {})]
    raise UnmappedOperation(f"{call.label}: no IAM mapping for this DynamoDB operation")


# ----------------------------------------------------------------------------------------------- the others
def _sqs(call: Call, where: Where) -> list[Need]:
    path = urlparse(str(call.params.get("QueueUrl", ""))).path.strip("/").split("/")
    if len(path) != 2:
        raise UnmappedOperation(f"{call.label}: no queue URL to take the queue's ARN from")
    return [(f"sqs:{call.operation}", f"arn:{where.partition}:sqs:{where.region}:{path[0]}:{path[1]}", {})]


def _secretsmanager(call: Call, _where: Where) -> list[Need]:
    if call.operation != "GetSecretValue":
        raise UnmappedOperation(f"{call.label}: no IAM mapping for this Secrets Manager operation")
    # The policy matches the full ARN (name + "-" + 6 random characters), whatever the caller passed.
    arn = str(call.response.get("ARN") or call.params.get("SecretId", ""))
    return [("secretsmanager:GetSecretValue", arn, {})]


def _states(call: Call, _where: Where) -> list[Need]:
    params = call.params
    arn = params.get("executionArn") or params.get("stateMachineArn")
    if call.operation not in ("StartExecution", "DescribeExecution", "StopExecution") or not arn:
        raise UnmappedOperation(f"{call.label}: no IAM mapping for this Step Functions operation")
    return [(f"states:{call.operation}", str(arn), {})]


def _events(call: Call, where: Where) -> list[Need]:
    if call.operation != "PutEvents":
        raise UnmappedOperation(f"{call.label}: no IAM mapping for this EventBridge operation")
    needs: list[Need] = []
    for entry in call.params.get("Entries", []):
        bus = str(entry.get("EventBusName") or "default")
        arn = bus if bus.startswith("arn:") else where.arn("events", f"event-bus/{bus}")
        keys: dict[str, tuple[str, ...]] = {
            "events:source": (str(entry.get("Source", "")),),
            "events:detail-type": (str(entry.get("DetailType", "")),),
        }
        needs.append(("events:PutEvents", arn, keys))
    return needs


def _lambda(call: Call, where: Where) -> list[Need]:
    if call.operation != "Invoke":
        raise UnmappedOperation(f"{call.label}: no IAM mapping for this Lambda operation")
    name = str(call.params.get("FunctionName", ""))
    arn = name if name.startswith("arn:") else where.arn("lambda", f"function:{name}")
    if call.params.get("Qualifier"):
        arn = f"{arn}:{call.params['Qualifier']}"
    return [("lambda:InvokeFunction", arn, {})]


def _sts(call: Call, _where: Where) -> list[Need]:
    if call.operation != "GetCallerIdentity":
        raise UnmappedOperation(f"{call.label}: no IAM mapping for this STS operation")
    return []  # answers every caller, whatever its policies


_MAPPERS: dict[str, Callable[[Call, Where], list[Need]]] = {
    "s3": _s3,
    "dynamodb": _dynamodb,
    "sqs": _sqs,
    "secretsmanager": _secretsmanager,
    "states": _states,
    "events": _events,
    "lambda": _lambda,
    "sts": _sts,
}


def describe(request: Request) -> str:
    extra = ", ".join(f"{k}={'|'.join(v)}" for k, v in request.context if k != "aws:SecureTransport")
    return f"{request.action} on {request.resource}" + (f" ({extra})" if extra else "")
