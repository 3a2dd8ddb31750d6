"""``omborigrid-export run``: create → poll → land from this machine, with the library the Lambdas use.

Why it is shaped this way:

- **Everything that can be checked is checked before the first job exists** (arguments, settings, key
  templates, the API URL, AWS credentials and the destination bucket): a mistake there is exit 2 with one
  sentence, and the API never sees a job that could not have landed.
- **Each export stands alone**: its failure, typed or not, is recorded against it and the others go on;
  ``--json`` always prints what landed and what failed, even when the run is interrupted.
- **Paced like the stack**: at most ``--max-in-flight`` jobs are live at the API at once.
- **``--timeout`` bounds the whole run**: every API call gets the time that is left, and so does a transfer.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omborigrid_export.errors import (
    ConfigurationError,
    ExportTimedOut,
    GarbledResponse,
    InvalidInput,
    OmboriGridExportError,
    UnexpectedError,
)
from omborigrid_export.models import ExportJob, ExportRequest, JobIdentity, JobStatus, parse_date, validate_tenant_id
from omborigrid_export.polling import PollState
from omborigrid_export.redact import describe_exception

from .progress import ProgressBar

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from omborigrid_export.exporter import Exporter
    from omborigrid_export.settings import Settings

#: More jobs than this in one run (a year of days for one tenant) need ``--yes``.
MAX_JOBS_WITHOUT_YES = 366
DEFAULT_MAX_IN_FLIGHT = 4
#: The longest the loop sleeps before looking at the clock again.
_MAX_NAP = 5.0
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

logger = logging.getLogger("omborigrid_export.cli")


def parse_dest(value: str) -> tuple[str, str]:
    """``s3://bucket[/prefix]`` → (bucket, prefix)."""
    if not value.startswith("s3://"):
        raise InvalidInput(f"--dest must look like s3://BUCKET[/PREFIX], not {value!r}.")
    bucket, _, prefix = value[len("s3://") :].partition("/")
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise InvalidInput(f"{bucket!r} is not a valid S3 bucket name.")
    return bucket, prefix.strip("/")


def seconds_argument(value: str) -> float:
    """A positive number of seconds; fractions allowed (``--poll-initial 0.5``)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return number


def count_argument(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def add_run_parser(sub: Any) -> None:
    run = sub.add_parser("run", help="create, poll and land exports from this machine")
    run.add_argument("--tenant", action="append", required=True, metavar="ID", help="tenant id (repeatable)")
    run.add_argument("--from", dest="date_from", required=True, metavar="YYYY-MM-DD")
    run.add_argument("--to", dest="date_to", required=True, metavar="YYYY-MM-DD")
    run.add_argument("--dest", required=True, metavar="s3://BUCKET[/PREFIX]")
    run.add_argument("--split", choices=("daily", "none"), default="daily", help="one job per day (default) or one")
    run.add_argument("--poll-initial", type=seconds_argument, default=10, metavar="S", help="first wait (default 10)")
    run.add_argument("--poll-max", type=seconds_argument, default=120, metavar="S", help="longest wait (default 120)")
    run.add_argument(
        "--timeout", type=seconds_argument, default=6 * 3600, metavar="S", help="give up after (default 6h)"
    )
    run.add_argument(
        "--max-in-flight",
        type=count_argument,
        default=DEFAULT_MAX_IN_FLIGHT,
        metavar="N",
        help=f"jobs live at the API at once (default {DEFAULT_MAX_IN_FLIGHT})",
    )
    run.add_argument("--yes", action="store_true", help=f"confirm a run of more than {MAX_JOBS_WITHOUT_YES} jobs")
    run.add_argument("--force", action="store_true", help="replace objects that already landed")
    run.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    run.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


@dataclass
class Tracked:
    """One export of the run and how it stands."""

    request: ExportRequest
    job: ExportJob | None = None
    poll: PollState | None = None
    next_check: float = 0.0
    result: dict[str, Any] | None = None
    error: OmboriGridExportError | None = None

    @property
    def finished(self) -> bool:
        return self.result is not None or self.error is not None

    def failure(self) -> dict[str, Any]:
        assert self.error is not None
        return {
            "tenantId": self.request.tenant_id,
            "dataDateFrom": self.request.date_from.isoformat(),
            "dataDateTo": self.request.date_to.isoformat(),
            "jobId": self.job.id if self.job else None,
            "error": type(self.error).__name__,
            "message": str(self.error),
        }


@dataclass(frozen=True, slots=True)
class RunPlan:
    """A run whose every input was checked: what to export, where, and within which bounds."""

    settings: Settings
    token: str
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
    if not base.token:
        raise ConfigurationError("Set OMBORIGRID_TOKEN to an OmboriGrid access token (Grid console, Developer tab).")
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
        token=base.token,
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


@dataclass
class Runner:
    """Drives every export of a plan to a landing or a failure, at most ``max_in_flight`` at a time."""

    exporter: Exporter
    plan: RunPlan
    bar: ProgressBar
    time_left: Callable[[], float]
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    tracked: list[Tracked] = field(default_factory=list)

    def run(self) -> None:
        self.tracked = [Tracked(r) for r in self.plan.requests]
        waiting = deque(self.tracked)
        live: list[Tracked] = []
        while waiting or live:
            if self.time_left() <= 0:
                for item in [*live, *waiting]:
                    item.error = self._timed_out(item)
                return
            while waiting and len(live) < self.plan.max_in_flight:
                item = waiting.popleft()
                self._guarded(item, self._create)
                if not item.finished:
                    live.append(item)
            for item in [t for t in live if t.next_check <= self.clock()]:
                self._guarded(item, self._step)
            live = [t for t in live if not t.finished]
            if live and not (waiting and len(live) < self.plan.max_in_flight):
                nap = min(t.next_check for t in live) - self.clock()
                if nap > 0:
                    self.sleep(min(nap, _MAX_NAP, max(self.time_left(), 0.0)))

    def interrupted(self) -> None:
        for item in self.tracked:
            if not item.finished:
                item.error = UnexpectedError(f"The export of {item.request.label} was interrupted before it finished.")

    def _guarded(self, item: Tracked, step: Callable[[Tracked], None]) -> None:
        """One step of one export; whatever it raises becomes that export's failure, never the run's."""
        try:
            step(item)
        except OmboriGridExportError as exc:
            # A transient failure once the time is up is the timeout's doing: say so.
            item.error = self._timed_out(item, exc) if exc.retryable and self.time_left() <= 0 else exc
        except Exception as exc:
            logger.debug("unexpected failure exporting %s", item.request.label, exc_info=True)
            item.error = UnexpectedError(
                f"Exporting {item.request.label} failed unexpectedly ({describe_exception(exc)}); "
                "rerun with --debug for the traceback."
            )
        finally:
            if item.finished:
                self.bar.finish()

    def _create(self, item: Tracked) -> None:
        item.job = self.exporter.create(item.request)
        item.poll = self.plan.poll
        item.next_check = self.clock() + item.poll.wait_seconds
        self.bar.note(f"created job {item.job.id} for {item.request.label}")

    def _step(self, item: Tracked) -> None:
        assert item.job is not None
        assert item.poll is not None
        identity = JobIdentity(item.job.id, item.request)
        try:
            job, item.poll = self.exporter.check(identity, item.poll)
        except GarbledResponse as exc:
            item.poll = item.poll.after_garbled(exc)
            self.bar.note(f"{item.request.label}: unreadable status answer; asking again in {item.poll.wait_seconds}s")
            item.next_check = self.clock() + item.poll.wait_seconds
            return
        item.job = job
        if job.status is not JobStatus.DONE:
            self.bar.note(
                f"{item.request.label}: job {job.id} {job.status.value}; next check in {item.poll.wait_seconds}s"
            )
            item.next_check = self.clock() + item.poll.wait_seconds
            return
        self.bar.start(f"{item.request.label} {job.filename}", job.file_size or 0)
        landing = self.exporter.land(
            identity, bucket=self.plan.bucket, replace=self.plan.force, time_left=self.time_left
        )
        if landing.checkpoint is not None:
            # Out of time mid-transfer: nothing is left half-done for a CLI run.
            checkpoint = landing.checkpoint
            self._abort_upload(checkpoint.bucket, checkpoint.key, checkpoint.upload_id)
            raise self._timed_out(item)
        assert landing.manifest is not None
        item.result = export_result(landing.manifest)
        self.bar.finish()

    def _abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.exporter.s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except (BotoCoreError, ClientError) as exc:
            logger.warning("could not abort the unfinished upload to %s: %s", key, describe_exception(exc))

    def _timed_out(self, item: Tracked, cause: Exception | None = None) -> ExportTimedOut:
        limit = f"--timeout ({self.plan.timeout:g} s)"
        if item.job is None:
            text = f"The export of {item.request.label} was not started within {limit}."
        else:
            text = (
                f"Export job {item.job.id} for {item.request.label} did not land within {limit}; "
                f"it was last seen {item.job.status.value}."
            )
        return ExportTimedOut(f"{text} Last failure: {cause}" if cause is not None else text)


def export_result(manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        "tenantId": manifest["tenantId"],
        "dataDateFrom": manifest["dataDateFrom"],
        "dataDateTo": manifest["dataDateTo"],
        "jobId": manifest["jobId"],
        "bucket": manifest["bucket"],
        "key": manifest["key"],
        "bytes": manifest["bytes"],
        "checksum": f"crc32:{manifest['checksum']['value']}",
        "contentKind": manifest["contentKind"],
        "manifestKey": manifest["manifestKey"],
        "alreadyExisted": manifest.get("alreadyExisted", False),
        "sourceFilename": manifest["sourceFilename"],
        "transferSeconds": manifest["timings"]["transferSeconds"],
    }


def describe_dates(item: Mapping[str, Any]) -> str:
    dates = str(item["dataDateFrom"])
    if item["dataDateTo"] != dates:
        dates += f"..{item['dataDateTo']}"
    return dates


def command_run(args: argparse.Namespace, *, environ: Mapping[str, str] | None = None) -> int:
    """Run the exports of ``args``; 0 when all landed, 1 when any failed (configuration errors raise)."""
    import os

    from omborigrid_export.client import OmboriGridClient
    from omborigrid_export.exporter import Exporter

    end: float = time.monotonic() + args.timeout

    def time_left() -> float:
        return end - time.monotonic()

    plan = plan_run(args, os.environ if environ is None else environ)
    client = OmboriGridClient(
        plan.settings.api_url,
        plan.token,
        connect_timeout=plan.settings.api_connect_timeout,
        read_timeout=plan.settings.api_read_timeout,
        time_left=time_left,
    )
    s3, probe = s3_clients(plan.settings)
    check_destination(probe, plan.bucket)
    bar = ProgressBar(enabled=sys.stderr.isatty() and not args.json)
    runner = Runner(Exporter(plan.settings, client, s3, progress=bar.advance), plan, bar, time_left)
    try:
        with client:
            runner.run()
    except KeyboardInterrupt:
        runner.interrupted()
        report(runner.tracked, as_json=args.json)
        raise
    finally:
        bar.close()
    return report(runner.tracked, as_json=args.json)


def s3_clients(settings: Settings) -> tuple[S3Client, S3Client]:
    """The S3 client for the transfers, and one that fails fast for the start-up check."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    try:
        # A session of its own: credentials and endpoints are read from the environment now.
        session = boto3.session.Session()
        s3 = session.client(
            "s3",
            config=Config(
                retries={"mode": "standard", "max_attempts": 5},
                max_pool_connections=settings.transfer.concurrency + 4,
            ),
        )
        probe = session.client(
            "s3", config=Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=5, read_timeout=15)
        )
    except (BotoCoreError, ValueError) as exc:
        raise ConfigurationError(f"An S3 client cannot be made: {describe_exception(exc)}.") from None
    return s3, probe


def report(tracked: list[Tracked], *, as_json: bool) -> int:
    """Print what landed and what failed (``--json``: one object with both lists); the exit code."""
    exports = [t.result for t in tracked if t.result is not None]
    failures = [t for t in tracked if t.error is not None]
    if as_json:
        print(json.dumps({"exports": exports, "failures": [t.failure() for t in failures]}, indent=2), flush=True)
    else:
        for item in exports:
            state = "already landed" if item.get("alreadyExisted") else "landed"
            print(
                f"{item['tenantId']} {describe_dates(item)}: {state} "
                f"s3://{item['bucket']}/{item['key']} ({item['bytes']:,} bytes, {item['checksum']})"
            )
    for t in failures:
        print(f"error: {t.request.label}: {t.error}", file=sys.stderr)
    return 1 if failures else 0


def error_payload(exc: BaseException) -> str:
    """``--json`` for a run that stopped before any export: empty lists and the reason."""
    return json.dumps(
        {"exports": [], "failures": [], "error": {"error": type(exc).__name__, "message": str(exc)}}, indent=2
    )
