"""One mapping of S3's failures to our typed errors, and one definition of "not found".

botocore raises its own exception tree (``ClientError`` for every answer S3 refused, ``BotoCoreError`` for
everything that never got an answer). None of it may cross a boundary: Step Functions routes by our class
names, and the CLI decides its exit code by them. :func:`map_s3_errors` is the one place that translates, as
httpx's ``map_httpcore_exceptions`` does for httpcore:

* no credentials, an endpoint that cannot be reached, refused credentials or a bucket that does not exist
  → :class:`~.errors.ConfigurationError` (fix the deployment; the CLI exits 2);
* a timeout, a dropped connection, or any other refusal → :class:`~.errors.TransferFailed` (retryable).

Each message names what was being done and never holds a secret (botocore quotes endpoints, not keys).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from .errors import ConfigurationError, OmboriGridExportError, TransferFailed
from .redact import describe_exception

#: The codes S3 (and its emulators) answer for a key or object that is not there, whatever the operation.
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
#: A conditional write lost to another writer: S3 answers 412, or 409 while two conditional writes race.
CONDITION_LOST_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
#: Refusals that no retry can fix: the credentials are wrong or the bucket does not exist.
CONFIGURATION_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket"})

_NO_CREDENTIALS = (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)


def error_code(exc: ClientError) -> str:
    """The error code of a refusal ("" when S3 gave none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_not_found(exc: ClientError) -> bool:
    return error_code(exc) in NOT_FOUND_CODES


@contextmanager
def map_s3_errors(what: str) -> Iterator[None]:
    """Translate botocore's exceptions raised inside the block; ``what`` names the operation, e.g.
    "the check of s3://bucket/key". Our own typed errors pass through unchanged."""
    try:
        yield
    except OmboriGridExportError:
        raise
    except _NO_CREDENTIALS as exc:
        raise ConfigurationError(
            f"No usable AWS credentials were found for {what} ({describe_exception(exc)}). Configure credentials "
            "for the account that owns the bucket (environment, profile or role) and run again."
        ) from None
    except EndpointConnectionError as exc:
        # ConnectTimeoutError is not one of these: a slow endpoint is retried, an unreachable one is a setting.
        raise ConfigurationError(
            f"Could not connect to S3 for {what} ({describe_exception(exc)}). Check the S3 endpoint URL, the "
            "region and the network."
        ) from None
    except (ConnectTimeoutError, ReadTimeoutError) as exc:
        raise TransferFailed(f"S3 did not answer in time for {what} ({describe_exception(exc)}).") from None
    except ClientError as exc:
        if error_code(exc) in CONFIGURATION_CODES:
            raise ConfigurationError(
                f"S3 refused {what} ({describe_exception(exc)}). Check the bucket name and the credentials."
            ) from None
        raise TransferFailed(f"S3 refused {what} ({describe_exception(exc)}).") from None
    except BotoCoreError as exc:
        raise TransferFailed(f"The S3 client failed during {what} ({describe_exception(exc)}).") from None
