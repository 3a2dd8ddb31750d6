"""Sending a job's message to the export queue, with SQS's failures typed.

A message that SQS did not take leaves its job QUEUED and not sent (the ledger has no ``enqueuedAt``): the next
CreateJob run sends it (:func:`.scheduling.send_unsent`), so the trigger's retry heals it. A queue that does not
exist or refuses the function is the deployment's problem, not a transient one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from .errors import ConfigurationError, QueueUnavailable
from .redact import describe_exception

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

#: Codes that say the queue or the function's access to it is wrong: retrying will not help.
MISCONFIGURED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
)


def send_job_message(sqs: SQSClient, queue_url: str, body: str) -> None:
    """Send one job's message; :class:`QueueUnavailable` (retryable) or :class:`ConfigurationError`."""
    try:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in MISCONFIGURED_CODES:
            raise ConfigurationError(
                f"The job queue refused the job's message ({code}): check the queue and CreateJob's access to it."
            ) from None
        raise QueueUnavailable(
            f"The job queue did not take the job's message ({describe_exception(exc)}); the next run sends it again."
        ) from None
    except BotoCoreError as exc:
        raise QueueUnavailable(
            f"The job queue could not be reached ({describe_exception(exc)}); the next run sends the message again."
        ) from None
