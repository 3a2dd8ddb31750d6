"""Build the library's collaborators inside Lambda, once per execution environment (not at import)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from omborigrid_export.bucket_owner import pin_bucket_owner
from omborigrid_export.client import OmboriGridClient
from omborigrid_export.createjob import SOURCE
from omborigrid_export.errors import ConfigurationError, ExportFailed
from omborigrid_export.executions import Executions
from omborigrid_export.exporter import Exporter
from omborigrid_export.ledger import Ledger
from omborigrid_export.models import ExportJob, ExportRequest
from omborigrid_export.redact import describe_exception, register_secret
from omborigrid_export.settings import Settings
from omborigrid_export.tenant_health import TenantHealthStore
from omborigrid_export.tenants import TenantClient, TokenMap
from omborigrid_export.transfer import transfer_s3_config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: How long a secret is cached before it is read again (Powertools Parameters max_age).
SECRET_MAX_AGE_SECONDS = 300


class FunctionSettings(Protocol):
    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self: ...


S = TypeVar("S", bound=FunctionSettings)
_settings: dict[type[Any], Any] = {}


class SecretTokens:
    """The token map in Secrets Manager (:mod:`omborigrid_export.tenants`), cached by Powertools Parameters.

    ``read(refresh=True)`` reads the secret again (after a 401: it may have been rotated since it was cached).
    """

    def __init__(self, secret_id: str, *, api_url: str, allow_local_urls: bool) -> None:
        self._secret_id = secret_id
        self._api_url = api_url
        self._allow_local_urls = allow_local_urls

    def read(self, *, refresh: bool = False) -> TokenMap:
        from aws_lambda_powertools.utilities import parameters

        value = parameters.get_secret(self._secret_id, max_age=SECRET_MAX_AGE_SECONDS, force_fetch=refresh)
        text = value.decode() if isinstance(value, bytes) else str(value)
        if not text.strip():
            raise ConfigurationError(f"The secret {self._secret_id} is empty.")
        return TokenMap.from_json(
            text, api_url=self._api_url, allow_local_urls=self._allow_local_urls, source=f"The secret {self._secret_id}"
        )


class StaticTokens:
    """A token map given in the environment (OMBORIGRID_TOKEN: local runs and tests); nothing to re-read."""

    def __init__(self, tokens: TokenMap) -> None:
        self._tokens = tokens

    def read(self, *, refresh: bool = False) -> TokenMap:  # noqa: ARG002 - nothing to re-read
        return self._tokens


class TenantToken:
    """One tenant's token, as the client's :class:`TokenProvider`: a refresh re-reads the whole map."""

    def __init__(self, tokens: SecretTokens | StaticTokens, tenant_id: str) -> None:
        self._tokens = tokens
        self._tenant_id = tenant_id

    def __call__(self, *, refresh: bool = False) -> str:
        token = self._tokens.read(refresh=refresh).for_tenant(self._tenant_id)[1]
        # Known from here on: scrub() removes this exact value from every log record, trace and message.
        register_secret(token)
        return token

    def __repr__(self) -> str:
        return f"TenantToken({self._tenant_id}, <redacted>)"


def settings(model: type[S]) -> S:
    """The function's settings, read from its environment on the first invocation and kept afterwards."""
    found = _settings.get(model)
    if found is None:
        found = _settings[model] = model.from_env(os.environ)
    return cast(S, found)


@cache
def tokens(current: Settings) -> SecretTokens | StaticTokens:
    if current.token_secret:
        return SecretTokens(current.token_secret, api_url=current.api_url, allow_local_urls=current.allow_local_urls)
    if current.token:
        return StaticTokens(
            TokenMap.from_json(
                current.token,
                api_url=current.api_url,
                allow_local_urls=current.allow_local_urls,
                source="OMBORIGRID_TOKEN",
            )
        )
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
def client(current: Settings, tenant_id: str) -> OmboriGridClient:
    """The tenant's client: its own host and token (a client per tenant, kept for the execution environment)."""
    source = tokens(current)
    return TenantClient(
        tenant_id,
        source.read().api_url_for(tenant_id),
        TenantToken(source, tenant_id),
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
    # Over https the transfer's own CRC32 of each part stands: no second SHA-256 of every part (transfer_s3_config).
    config = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32)
    result: S3Client = boto3.client("s3", config=config.merge(transfer_s3_config()))
    if expected_owner:
        pin_bucket_owner(result, expected_owner)
    return result


@cache
def exporter(current: Settings, tenant_id: str) -> Exporter:
    """The use cases of one tenant's exports, through that tenant's client."""
    return Exporter(current, client(current, tenant_id), s3(current.expected_bucket_owner))


def create_job(current: Settings) -> Callable[[ExportRequest], ExportJob]:
    """Create a job through the requested tenant's own client (CreateJob serves every tenant in one run)."""

    def create(request: ExportRequest) -> ExportJob:
        return exporter(current, request.tenant_id).create(request)

    return create


@cache
def ledger(table: str) -> Ledger:
    return Ledger(aws("dynamodb"), table)


@cache
def tenant_health(table: str) -> TenantHealthStore:
    return TenantHealthStore(aws("dynamodb"), table)


def publisher(bus: str) -> Callable[[Sequence[tuple[str, dict[str, Any]]]], None]:
    """Put events (detail-type, detail) from ``omborigrid.export`` on ``bus``, ten per PutEvents call."""
    events = aws("events")

    def publish(announcements: Sequence[tuple[str, dict[str, Any]]]) -> None:
        entries = [
            {"Source": SOURCE, "DetailType": kind, "Detail": json.dumps(detail), "EventBusName": bus}
            for kind, detail in announcements
        ]
        for start in range(0, len(entries), 10):
            try:
                response = events.put_events(Entries=entries[start : start + 10])
            except (BotoCoreError, ClientError) as exc:
                raise ExportFailed(f"Could not put events on the bus {bus}: {describe_exception(exc)}") from None
            if response.get("FailedEntryCount"):
                codes = sorted({str(e.get("ErrorCode")) for e in response["Entries"] if e.get("ErrorCode")})
                raise ExportFailed(
                    f"The bus {bus} refused {response['FailedEntryCount']} event(s) ({', '.join(codes)})."
                )

    return publish


@cache
def executions(state_machine_arn: str) -> Executions:
    return Executions(aws("stepfunctions"), state_machine_arn)


def reset() -> None:
    """Forget cached settings and clients (tests change the environment between invocations)."""
    _settings.clear()
    for cached in (tokens, client, aws, s3, exporter, ledger, tenant_health, executions):
        cached.cache_clear()
