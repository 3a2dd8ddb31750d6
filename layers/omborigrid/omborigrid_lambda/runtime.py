"""Build the library's collaborators inside Lambda, once per execution environment (not at import)."""

from __future__ import annotations

import json
import os
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from omborigrid_export.bucket_owner import pin_bucket_owner
from omborigrid_export.client import OmboriGridClient, TokenProvider
from omborigrid_export.errors import ConfigurationError
from omborigrid_export.exporter import Exporter
from omborigrid_export.ledger import Ledger
from omborigrid_export.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: How long a secret is cached before it is read again (Powertools Parameters max_age).
SECRET_MAX_AGE_SECONDS = 300


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
        if not token:
            raise ConfigurationError(f"The secret {self._secret_id} is empty.")
        return token


@cache
def settings() -> Settings:
    return Settings.from_env()


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigurationError(f"The function is missing its {name} setting.")
    return value


def token_provider(current: Settings) -> TokenProvider | str:
    if current.token_secret:
        return SecretToken(current.token_secret)
    if current.token:
        return current.token
    raise ConfigurationError("Neither OMBORIGRID_TOKEN_SECRET nor OMBORIGRID_TOKEN is set.")


@cache
def client() -> OmboriGridClient:
    current = settings()
    return OmboriGridClient(
        current.api_url,
        token_provider(current),
        connect_timeout=current.api_connect_timeout,
        read_timeout=current.api_read_timeout,
    )


@cache
def aws(service: str) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        config=Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32),
    )


def s3() -> S3Client:
    result: S3Client = aws("s3")
    owner = os.environ.get("EXPORT_BUCKET_OWNER")
    if owner:
        pin_bucket_owner(result, owner)
    return result


@cache
def exporter() -> Exporter:
    return Exporter(settings(), client(), s3())


@cache
def ledger() -> Ledger:
    return Ledger(aws("dynamodb"), env("LEDGER_TABLE"))


def reset() -> None:
    """Forget cached settings and clients (tests change the environment between invocations)."""
    for cached in (settings, client, aws, exporter, ledger):
        cached.cache_clear()
