"""Everything ``run`` checks before the first job exists.

Arguments, settings, key templates, the API URL, AWS credentials and the destination bucket: a mistake in
any of them is exit 2 with one sentence, and the API never sees a job that could not have landed.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from omborigrid_export.bucket_owner import pin_bucket_owner
from omborigrid_export.errors import ConfigurationError, InvalidInput
from omborigrid_export.models import ExportRequest, parse_date, validate_tenant_id
from omborigrid_export.polling import PollState
from omborigrid_export.redact import describe_exception
from omborigrid_export.tenants import TokenMap
from omborigrid_export.transfer import transfer_s3_config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from omborigrid_export.settings import Settings

#: More jobs than this in one run (a year of days for one tenant) need ``--yes``.
MAX_JOBS_WITHOUT_YES = 366
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def parse_dest(value: str) -> tuple[str, str]:
    """``s3://bucket[/prefix]`` → (bucket, prefix)."""
    if not value.startswith("s3://"):
        raise InvalidInput(f"--dest must look like s3://BUCKET[/PREFIX], not {value!r}.")
    bucket, _, prefix = value[len("s3://") :].partition("/")
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise InvalidInput(f"{bucket!r} is not a valid S3 bucket name.")
    return bucket, prefix.strip("/")


@dataclass(frozen=True, slots=True)
class RunPlan:
    """A run whose every input was checked: what to export, where, and within which bounds."""

    settings: Settings
    #: A token (and API host) per tenant; every tenant of the run has one (checked before any job exists).
    tokens: TokenMap
    bucket: str
    requests: list[ExportRequest]
    poll: PollState
    max_in_flight: int
    timeout: float
    force: bool


def plan_run(args: argparse.Namespace, env: Mapping[str, str]) -> RunPlan:
    """Check arguments and configuration; raises InvalidInput or ConfigurationError (exit 2)."""
    from omborigrid_export.layout import KeyLayout
    from omborigrid_export.settings import Settings

    tenants = [validate_tenant_id(t) for t in dict.fromkeys(args.tenant)]
    date_from = parse_date(args.date_from, what="--from date")
    date_to = parse_date(args.date_to, what="--to date")
    bucket, prefix = parse_dest(args.dest)
    if args.poll_initial > args.poll_max:
        raise InvalidInput("--poll-initial must not be larger than --poll-max.")
    requests_: list[ExportRequest] = []
    for tenant in tenants:
        whole = ExportRequest(tenant, date_from, date_to)
        requests_.extend(whole.split_daily() if args.split == "daily" else [whole])
    if len(requests_) > MAX_JOBS_WITHOUT_YES and not args.yes:
        raise InvalidInput(
            f"This run would create {len(requests_):,} export jobs (more than {MAX_JOBS_WITHOUT_YES}); "
            "add --yes to confirm, or ask for fewer days or tenants."
        )
    base = Settings.from_env(env)
    tokens = TokenMap.for_cli(
        getattr(args, "tokens", None), env, api_url=base.api_url, allow_local_urls=base.allow_local_urls
    )
    for tenant in tenants:
        tokens.for_tenant(tenant)  # a tenant without a token is a ConfigurationError naming it, before any job
    # --dest gives the prefix; the templates come from the environment (or their defaults).
    settings = dataclasses.replace(
        base,
        layout=KeyLayout(prefix=prefix, template=base.layout.template),
        archive_layout=KeyLayout(prefix=prefix, template=base.archive_layout.template),
        bucket=bucket,
    )
    _try_templates(settings, requests_[0])
    poll = PollState(wait_seconds=args.poll_initial, max_wait_seconds=args.poll_max, max_total_seconds=args.timeout)
    return RunPlan(
        settings=settings,
        tokens=tokens,
        bucket=bucket,
        requests=requests_,
        poll=poll,
        max_in_flight=args.max_in_flight,
        timeout=args.timeout,
        force=args.force,
    )


def _try_templates(settings: Settings, request: ExportRequest) -> None:
    """Render one key with each template, so a template that only fails when used fails now."""
    try:
        for layout, table in ((settings.layout, "export"), (settings.archive_layout, "table")):
            layout.key_for(
                tenant_id=request.tenant_id,
                date_from=request.date_from,
                date_to=request.date_to,
                job_id="job-id",
                filename="export.parquet",
                table=table,
            )
    except InvalidInput as exc:
        raise ConfigurationError(f"The key template cannot be used: {exc}") from None


def check_destination(s3: S3Client, bucket: str) -> None:
    """One cheap S3 call before any job exists: credentials, endpoint and bucket are usable."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    try:
        s3.head_bucket(Bucket=bucket)
    except (NoCredentialsError, PartialCredentialsError):
        raise ConfigurationError(
            f"No usable AWS credentials were found to write to s3://{bucket}: set AWS_PROFILE (or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or sign in with `aws sso login`."
        ) from None
    except EndpointConnectionError as exc:
        raise ConfigurationError(
            f"The S3 endpoint {exc.kwargs.get('endpoint_url', '')} cannot be reached: check AWS_ENDPOINT_URL_S3 "
            "(or AWS_ENDPOINT_URL), the region and the network."
        ) from None
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404:
            raise ConfigurationError(
                f"The bucket {bucket} does not exist (HTTP 404); create it or fix --dest."
            ) from None
        if status == 403:
            raise ConfigurationError(
                f"Access to the bucket {bucket} is denied (HTTP 403): the credentials need s3:ListBucket, "
                "s3:GetObject and s3:PutObject on it, or it belongs to another account."
            ) from None
        raise ConfigurationError(f"The bucket {bucket} cannot be used: {describe_exception(exc)}.") from None
    except BotoCoreError as exc:
        raise ConfigurationError(f"S3 cannot be used for s3://{bucket}: {describe_exception(exc)}.") from None


def s3_clients(settings: Settings) -> tuple[S3Client, S3Client]:
    """The S3 client for the transfers, and one that fails fast for the start-up check."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    try:
        # A session of its own: credentials and endpoints are read from the environment now.
        session = boto3.session.Session()
        probe = session.client(
            "s3", config=Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=5, read_timeout=15)
        )
        config = Config(
            retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=settings.transfer.concurrency + 4
        )
        # Over https the transfer's own CRC32 of each part stands: no second SHA-256 of every part. The endpoint
        # is the one boto3 resolved (AWS's, or AWS_ENDPOINT_URL_S3's).
        s3 = session.client("s3", config=config.merge(transfer_s3_config(probe.meta.endpoint_url)))
    except (BotoCoreError, ValueError) as exc:
        raise ConfigurationError(f"An S3 client cannot be made: {describe_exception(exc)}.") from None
    if settings.expected_bucket_owner:
        for client in (s3, probe):
            pin_bucket_owner(client, settings.expected_bucket_owner)
    return s3, probe
