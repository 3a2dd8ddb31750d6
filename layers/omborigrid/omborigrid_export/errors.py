"""Typed errors.

The class name of each error is an API: Lambda reports it as ``errorType``, and the Step Functions
state machine retries and catches by that name (see ``statemachine/export.asl.json``). Rename one and
the ASL must change with it. Messages are sentences a person can act on; they never contain a token or
a presigned URL (at most the host of one).

``retryable`` says whether the same call may succeed later. The ASL's Retry lists name exactly the retryable
errors a task can raise (``tests/test_template.py`` checks both directions). An error's subclass is a distinct
name to Step Functions (``ErrorEquals`` matches names, not the class tree), so a Catch names both.

    OmboriGridExportError
    ├── InvalidInput, ConfigurationError, AuthError, RequestRejected, JobNotFound, AmbiguousCreate,
    │   InvalidApiResponse, ExportFailed, JobExpired, ExportTimedOut, UnsafeUrl, IntegrityError, LandingConflict,
    │   SchemaQuarantined
    ├── ApiUnavailable, DownloadUrlExpired, TransferFailed            (retryable)
    ├── LedgerError ── LedgerUnavailable                              (retryable)
    ├── StepFunctionsError ── StepFunctionsUnavailable                (retryable)
    ├── QueueUnavailable                                              (retryable)
    └── UnexpectedFailure
"""

from __future__ import annotations


class OmboriGridExportError(Exception):
    """Base class: everything this package raises on purpose."""

    #: Whether retrying the same operation later may succeed (used by the CLI and the ASL Retry lists).
    retryable: bool = False


class InvalidInput(OmboriGridExportError):
    """A CLI argument, event field or setting is not acceptable. Fix the input; retrying will not help."""


class ConfigurationError(OmboriGridExportError):
    """The deployment or environment is misconfigured (missing token, bad URL, bad template)."""


class AuthError(OmboriGridExportError):
    """The API refused the token (401/403)."""


class RequestRejected(OmboriGridExportError):
    """The API rejected the request as invalid (400/422); the message carries the server's words."""


class JobNotFound(OmboriGridExportError):
    """The API does not know the job id (404): archived, or never created."""


class ApiUnavailable(OmboriGridExportError):
    """The API kept failing (connection errors, 429 or 5xx) after the client's own retries."""

    retryable = True


class AmbiguousCreate(OmboriGridExportError):
    """A create-job POST failed in a way that may or may not have created the job (read timeout, 500).

    It is not repeated blindly: a second POST could create a second job for the same data.
    """


class InvalidApiResponse(OmboriGridExportError):
    """The API answered with something that is not a valid export job (not JSON, missing field, bad date,
    unknown status)."""


class ExportFailed(OmboriGridExportError):
    """The export job ended without a file (a final status other than ``done``)."""


class JobExpired(OmboriGridExportError):
    """The job's ``jobExpiryDate`` passed before its file was landed."""


class ExportTimedOut(OmboriGridExportError):
    """The job did not finish within the polling bounds (attempts or total wait)."""


class UnsafeUrl(OmboriGridExportError):
    """A download URL (or a redirect) points somewhere this tool refuses to connect to."""


class DownloadUrlExpired(OmboriGridExportError):
    """The presigned download URL was refused (403) even after getting a fresh one."""

    retryable = True


class TransferFailed(OmboriGridExportError):
    """Streaming the file into S3 failed after bounded attempts; nothing was landed."""

    retryable = True


class IntegrityError(OmboriGridExportError):
    """The bytes received are not what the job promised (size, format or checksum); nothing was landed."""


class LandingConflict(OmboriGridExportError):
    """A different object already sits under the final key and replacing it was not requested."""


class SchemaQuarantined(OmboriGridExportError):
    """With ``SchemaChangePolicy=quarantine``, the file's schema broke with the previous landed day's (or with the
    catalog's table): it landed under ``{prefix}/_quarantine/`` instead of its table, and the day failed. Fix the
    source, or accept the change (``SchemaChangePolicy=land``, or a forced re-export), then re-export."""


class LedgerError(OmboriGridExportError):
    """The export ledger (DynamoDB) refused a read or write for a reason a retry will not fix (access denied, no
    such table, an invalid request)."""


class LedgerUnavailable(LedgerError):
    """The export ledger was throttled, a transaction conflicted with another, or DynamoDB could not be reached,
    after the SDK's own retries. Nothing was changed by the failed call; retrying later may succeed."""

    retryable = True


class StepFunctionsError(OmboriGridExportError):
    """Step Functions refused to start or describe an export execution (access denied, no such state machine)."""


class StepFunctionsUnavailable(StepFunctionsError):
    """Step Functions was throttled or could not be reached after the SDK's own retries; retrying may succeed."""

    retryable = True


class QueueUnavailable(OmboriGridExportError):
    """The job queue (SQS) did not take a job's message after the SDK's own retries (throttled, unreachable, an
    internal error). The job exists and its ledger entry says it was not sent yet, so the next CreateJob run (the
    trigger's retry, any drain) sends it again."""

    retryable = True


class UnexpectedFailure(OmboriGridExportError):
    """Something failed that the code does not anticipate (a bug, or a library failure nobody translated). A
    function raises this at its boundary instead of the original exception, whose type and scrubbed message
    the sentence names; the function's log has the details."""


class GarbledResponse(ApiUnavailable):
    """The API answered a status check with HTTP 200 but a body that cannot be read as JSON (cut short by a
    proxy, not JSON, or too large). Transient: the poll loop asks again, and only several in a row fail."""
