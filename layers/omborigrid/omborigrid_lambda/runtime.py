"""Build the library's collaborators inside Lambda, once per execution environment (not at import)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar, cast

import boto3
from botocore.config import Config

from omborigrid_export.bucket_owner import pin_bucket_owner
from omborigrid_export.client import OmboriGridClient, TokenProvider
from omborigrid_export.errors import ConfigurationError
from omborigrid_export.executions import Executions
from omborigrid_export.exporter import Exporter
from omborigrid_export.ledger import Ledger
from omborigrid_export.redact import register_secret
from omborigrid_export.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: How long a secret is cached before it is read again (Powertools Parameters max_age).
SECRET_MAX_AGE_SECONDS = 300


class FunctionSettings(Protocol):
    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self: ...


S = TypeVar("S", bound=FunctionSettings)
_settings: dict[type[Any], Any] = {}


class SecretToken:
    """The API token from Secrets Manager, cached by Powertools Parameters and re-read on a 401.

    The secret may hold the token as plain text or as JSON ``{"token": "..."}``.
    """

    def __init__(self, secret_id: str) -> None:
        self._secret_id = secret_id

    def __call__(self, *, refresh: bool = False) -> str:
        from aws_lambda_powertools.utilities import parameters

        value = parameters.get_secret(self._secret_id, max_age=SECRET_MAX_AGE_SECONDS, force_fetch=refresh)
        text = value.decode() if isinstance(value, bytes) else str(value)
        if text.lstrip().startswith("{"):
            try:
                text = str(json.loads(text)["token"])
            except (ValueError, KeyError):
                raise ConfigurationError(f"The secret {self._secret_id} is JSON but has no 'token' field.") from None
        token = text.strip()
        # Known from here on: scrub() removes this exact value from every log record, trace and message.
        register_secret(token)
        if not token:
            raise ConfigurationError(f"The secret {self._secret_id} is empty.")
        return token


def settings(model: type[S]) -> S:
    """The function's settings, read from its environment on the first invocation and kept afterwards."""
    found = _settings.get(model)
    if found is None:
        found = _settings[model] = model.from_env(os.environ)
    return cast(S, found)


def token_provider(current: Settings) -> TokenProvider | str:
    if current.token_secret:
        return SecretToken(current.token_secret)
    if current.token:
        return current.token
    raise ConfigurationError("Neither OMBORIGRID_TOKEN_SECRET nor OMBORIGRID_TOKEN is set.")


#: Seconds an API call leaves in hand before the invocation's end: time to raise a typed error and return it.
API_RESERVE_SECONDS = 5.0


class _Invocation:
    """The Lambda context of the invocation running now (one at a time per execution environment)."""

    context: Any = None


def begin_invocation(context: Any) -> None:
    """Called by the handler boundary on entry: API calls are then bounded by this invocation's time."""
    _Invocation.context = context


def api_time_left() -> float:
    """Seconds an API call may still take: the invocation's remaining time less a reserve (no bound outside one)."""
    context = _Invocation.context
    if context is None:
        return math.inf
    return float(context.get_remaining_time_in_millis()) / 1000 - API_RESERVE_SECONDS


@cache
def client(current: Settings) -> OmboriGridClient:
    return OmboriGridClient(
        current.api_url,
        token_provider(current),
        connect_timeout=current.api_connect_timeout,
        read_timeout=current.api_read_timeout,
        time_left=api_time_left,
    )


@cache
def aws(service: str) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        config=Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32),
    )


@cache
def s3(expected_owner: str | None = None) -> S3Client:
    """An S3 client; with ``expected_owner`` every call it makes names that account as the bucket's owner."""
    result: S3Client = boto3.client(
        "s3", config=Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32)
    )
    if expected_owner:
        pin_bucket_owner(result, expected_owner)
    return result


@cache
def exporter(current: Settings) -> Exporter:
    return Exporter(current, client(current), s3(current.expected_bucket_owner))


@cache
def ledger(table: str) -> Ledger:
    return Ledger(aws("dynamodb"), table)


@cache
def executions(state_machine_arn: str) -> Executions:
    return Executions(aws("stepfunctions"), state_machine_arn)


def reset() -> None:
    """Forget cached settings and clients (tests change the environment between invocations)."""
    _settings.clear()
    for cached in (client, aws, s3, exporter, ledger, executions):
        cached.cache_clear()
