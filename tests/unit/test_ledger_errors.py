"""dynamodb.py and the ledger: DynamoDB's failures in our terms, one translation for every call."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from omborigrid_export.dynamodb import ConditionFailed, dynamodb_errors
from omborigrid_export.errors import LedgerError, LedgerUnavailable
from omborigrid_export.ledger import Ledger
from omborigrid_export.models import ExportRequest

REQUEST = ExportRequest("t1", date(2026, 1, 1), date(2026, 1, 1))


def client_error(code: str, operation: str = "TransactWriteItems", reasons: list[str] | None = None) -> ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": f"{code} happened"}}
    if reasons is not None:
        response["CancellationReasons"] = [{"Code": r} for r in reasons]
    return ClientError(response, operation)  # type: ignore[arg-type]


class FailingDynamoDB:
    """Every call raises the given error (what boto3 raises once its own retries are spent)."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def call(**kwargs: Any) -> Any:
            self.calls.append(name)
            raise self.error

        return call


@pytest.mark.parametrize(
    "error",
    [
        client_error("ProvisionedThroughputExceededException", "PutItem"),
        client_error("ThrottlingException", "GetItem"),
        client_error("TransactionCanceledException", reasons=["None", "ThrottlingError"]),
        client_error("TransactionCanceledException", reasons=["TransactionConflict", "None"]),
        EndpointConnectionError(endpoint_url="https://dynamodb.eu-west-1.amazonaws.com"),
        ReadTimeoutError(endpoint_url="https://dynamodb.eu-west-1.amazonaws.com"),
    ],
    ids=["throughput", "throttling", "tx-throttled", "tx-conflict", "unreachable", "read-timeout"],
)
def test_given_a_busy_or_unreachable_dynamodb_then_ledger_unavailable_which_is_retryable(error: Exception) -> None:
    with (
        pytest.raises(LedgerUnavailable, match="could not plan t1 2026-01-01") as caught,
        dynamodb_errors("plan t1 2026-01-01"),
    ):
        raise error
    assert caught.value.retryable is True
    assert caught.value.__cause__ is None


@pytest.mark.parametrize(
    "error",
    [
        client_error("AccessDeniedException", "GetItem"),
        client_error("ResourceNotFoundException", "Query"),
        client_error("TransactionCanceledException", reasons=["ValidationError", "None"]),
        client_error("TransactionCanceledException"),
        NoCredentialsError(),
    ],
    ids=["access-denied", "no-table", "tx-invalid", "tx-no-reason", "no-credentials"],
)
def test_given_a_failure_a_retry_cannot_fix_then_ledger_error_not_retryable(error: Exception) -> None:
    with pytest.raises(LedgerError) as caught, dynamodb_errors("read the entry of t1 2026-01-01"):
        raise error
    assert type(caught.value) is LedgerError
    assert caught.value.retryable is False
    assert "read the entry of t1 2026-01-01" in str(caught.value)


@pytest.mark.parametrize(
    "error",
    [
        client_error("ConditionalCheckFailedException", "UpdateItem"),
        client_error("TransactionCanceledException", reasons=["ConditionalCheckFailed", "None"]),
        ClientError(
            {"Error": {"Code": "TransactionCanceledException", "Message": "cancelled [None, ConditionalCheckFailed]"}},
            "TransactWriteItems",
        ),
    ],
    ids=["update", "transaction", "reasons-only-in-message"],
)
def test_given_a_failed_condition_then_condition_failed_for_the_ledger_to_interpret(error: Exception) -> None:
    with pytest.raises(ConditionFailed), dynamodb_errors("finish the entry"):
        raise error


def test_given_a_throttled_finish_then_the_ledger_raises_instead_of_calling_it_already_finished() -> None:
    """Before, any cancelled transaction read as "already finished": a throttled mark_landed left the day QUEUED
    with its slot taken for good. Now the Download is retried."""
    db = FailingDynamoDB(client_error("TransactionCanceledException", reasons=["ThrottlingError", "None"]))
    ledger = Ledger(db, "ledger")  # type: ignore[arg-type]
    with pytest.raises(LedgerUnavailable, match="ThrottlingError"):
        ledger.mark_landed(REQUEST, "job-1", "k", "m")
    assert db.calls == ["transact_write_items"]


def test_given_a_conflicting_dispatch_then_ledger_unavailable_not_a_silent_skip() -> None:
    db = FailingDynamoDB(client_error("TransactionCanceledException", reasons=["None", "TransactionConflict"]))
    with pytest.raises(LedgerUnavailable, match="TransactionConflict"):
        Ledger(db, "ledger").dispatch(REQUEST, cap=5)  # type: ignore[arg-type]


def test_given_a_read_denied_then_ledger_error_naming_the_entry_and_never_transfer_failed() -> None:
    db = FailingDynamoDB(client_error("AccessDeniedException", "GetItem"))
    with pytest.raises(LedgerError, match="read the entry of t1 2026-01-01: ClientError") as caught:
        Ledger(db, "ledger").load_checkpoint(REQUEST, "job-1")  # type: ignore[arg-type]
    assert type(caught.value).__name__ == "LedgerError"
