"""DynamoDB's failures in our terms: one translation for every call the ledger makes.

boto3 reports a failed condition, a throttled request, a conflicting transaction and a missing table alike as a
``ClientError`` whose code (and, for transactions, cancellation reasons) tell them apart. They are told apart here
once, in the manner of httpx's ``map_httpcore_exceptions``, so that the ledger's callers see what each means: a
failed condition is the ledger's own business (:class:`ConditionFailed`, never leaving the ledger), a busy or
unreachable DynamoDB is :class:`~.errors.LedgerUnavailable` (retryable), the rest :class:`~.errors.LedgerError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from .errors import LedgerError, LedgerUnavailable
from .redact import describe_exception

#: Error codes that mean "busy or briefly unavailable" once the SDK's own retries are spent.
BUSY_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TransactionConflictException",
        "TransactionInProgressException",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
#: Cancellation reasons of a transaction that mean the same (the others are a failed condition or a bad request).
BUSY_REASONS = frozenset({"ThrottlingError", "TransactionConflict", "ProvisionedThroughputExceeded"})
CONDITION_REASONS = frozenset({"ConditionalCheckFailed", "None"})
_REASONS_IN_MESSAGE = re.compile(r"\[([^\]]*)\]")


class ConditionFailed(Exception):
    """A conditional write found the entry in another state; the caller knows what that means."""


@contextmanager
def dynamodb_errors(action: str) -> Iterator[None]:
    """Translate what boto3 raises while the ledger does ``action`` ("read the entry of t1 2026-01-01")."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code == "ConditionalCheckFailedException":
            raise ConditionFailed from None
        if code == "TransactionCanceledException":
            reasons = cancellation_reasons(exc)
            if reasons and reasons <= CONDITION_REASONS and "ConditionalCheckFailed" in reasons:
                raise ConditionFailed from None
            if reasons & BUSY_REASONS:
                raise LedgerUnavailable(
                    f"The export ledger could not {action}: the transaction was cancelled "
                    f"({', '.join(sorted(reasons & BUSY_REASONS))}); nothing changed and a retry may succeed."
                ) from None
            named = ", ".join(sorted(reasons)) or "no reason given"
            raise LedgerError(
                f"The export ledger could not {action}: the transaction was cancelled ({named})."
            ) from None
        if code in BUSY_CODES:
            raise LedgerUnavailable(
                f"The export ledger could not {action}: DynamoDB answered {code} after the SDK's retries; "
                "a retry may succeed."
            ) from None
        raise LedgerError(f"The export ledger could not {action}: {describe_exception(exc)}") from None
    except (BotoConnectionError, HTTPClientError) as exc:
        raise LedgerUnavailable(
            f"The export ledger could not {action}: DynamoDB could not be reached ({describe_exception(exc)})."
        ) from None
    except BotoCoreError as exc:
        raise LedgerError(f"The export ledger could not {action}: {describe_exception(exc)}") from None


def cancellation_reasons(exc: ClientError) -> frozenset[str]:
    """The reason codes of a cancelled transaction (parsed by botocore, else read from the message)."""
    parsed = exc.response.get("CancellationReasons")
    if isinstance(parsed, list):
        return frozenset(str(r.get("Code", "None")) for r in parsed if isinstance(r, dict))
    found = _REASONS_IN_MESSAGE.search(str(exc.response.get("Error", {}).get("Message", "")))
    return frozenset(r.strip() for r in found.group(1).split(",")) if found else frozenset()
