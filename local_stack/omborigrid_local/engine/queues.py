"""The SQS event source mapping as Lambda runs it, where moto's falls short.

moto invokes the mapped function once, synchronously, inside ``SendMessage``, and deletes the message unless the
invocation raised: a record the function reports in ``batchItemFailures`` (ReportBatchItemFailures) is deleted
all the same, and a message left visible after a failed invocation is never polled again. On AWS both come back
after the visibility timeout, until the queue's ``maxReceiveCount`` sends them to the DLQ.

:class:`EventSourceFidelity` fixes the first (a reported record counts as failed: the message stays); and
:func:`poll_until_empty` is the mapping's later polls: it receives what is visible, invokes the function with
those records and deletes the ones it handled, until the queue is empty (moto's ``ReceiveMessage`` moves a
message past its receive count to the DLQ). The fault harness installs both; the rest of the suite keeps moto's
behaviour, which its tests were written against.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .stack import LocalStack


class EventSourceFidelity:
    """Patch of moto's ``LambdaBackend._send_sqs_message``: failed when the invocation failed or reported the
    record in ``batchItemFailures``."""

    def __init__(self) -> None:
        self._original: Any = None

    def install(self) -> None:
        from moto.awslambda.models import LambdaBackend

        self._original = LambdaBackend._send_sqs_message

        def send(backend: Any, function_arn: str, message: Any, queue_arn: str) -> bool:
            event = {"Records": [_record(message, queue_arn, backend.region_name)]}
            response_headers: dict[str, Any] = {}
            payload = backend.invoke(
                function_name=function_arn,
                qualifier=None,
                body=json.dumps(event),
                headers={},
                response_headers=response_headers,
            )
            if "x-amz-function-error" in response_headers:
                return False
            return message.id not in _reported_failures(payload)

        LambdaBackend._send_sqs_message = send  # type: ignore[method-assign,assignment]

    def uninstall(self) -> None:
        from moto.awslambda.models import LambdaBackend

        if self._original is not None:
            LambdaBackend._send_sqs_message = self._original  # type: ignore[method-assign]
            self._original = None


def _record(message: Any, queue_arn: str, region: str) -> dict[str, Any]:
    return {
        "messageId": message.id,
        "receiptHandle": message.receipt_handle,
        "body": message.body,
        "attributes": {"ApproximateReceiveCount": str(getattr(message, "approximate_receive_count", 1))},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def _reported_failures(payload: Any) -> set[str]:
    try:
        answer = json.loads(payload or b"null")
    except (TypeError, ValueError):
        return set()
    failures = answer.get("batchItemFailures") if isinstance(answer, dict) else None
    if not isinstance(failures, list):
        return set()
    return {str(f.get("itemIdentifier")) for f in failures if isinstance(f, dict)}


def poll_until_empty(stack: LocalStack, *, function: str = "StartExportFunction", rounds: int = 10) -> int:
    """The event source mapping's next polls of the stack's job queue: returns how many records it delivered."""
    from .stack import FunctionError

    sqs = stack.client("sqs")
    queue_arn = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    delivered = 0
    for _ in range(rounds):
        page = sqs.receive_message(
            QueueUrl=stack.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0, AttributeNames=["All"]
        )
        messages = page.get("Messages", [])
        if not messages:
            return delivered
        records = [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": stack.region,
            }
            for m in messages
        ]
        delivered += len(records)
        try:
            answer = stack.invoke(function, {"Records": records})
        except FunctionError:  # a failed poll leaves the batch visible, as on AWS
            continue
        failed = _reported_failures(json.dumps(answer))
        for message in messages:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
    return delivered
