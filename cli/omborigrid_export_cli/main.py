"""The ``omborigrid-export`` command line.

Exit codes (a contract): 0 every export landed; 1 an export failed (remote, transfer, integrity);
2 bad usage or input. ``status`` exits 1 when any day shown has not landed. A failure prints one sentence; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from omborigrid_export.errors import (
    ConfigurationError,
    InvalidInput,
    OmboriGridExportError,
)
from omborigrid_export.models import ExportJob, ExportRequest, JobIdentity, JobStatus, parse_date, validate_tenant_id
from omborigrid_export.polling import PollState

from . import ops
from .progress import ProgressBar

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
logger = logging.getLogger("omborigrid_export.cli")


class UsageError(Exception):
    """Bad arguments: exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 on its own; keep one sentence, no usage dump
        raise UsageError(message)


def parse_dest(value: str) -> tuple[str, str]:
    """``s3://bucket[/prefix]`` → (bucket, prefix)."""
    if not value.startswith("s3://"):
        raise UsageError(f"--dest must look like s3://BUCKET[/PREFIX], not {value!r}.")
    bucket, _, prefix = value[len("s3://") :].partition("/")
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise UsageError(f"{bucket!r} is not a valid S3 bucket name.")
    return bucket, prefix.strip("/")


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of seconds") from None
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1 second")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="omborigrid-export", description="Export OmboriGrid analytics into S3.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="create, poll and land exports from this machine")
    run.add_argument("--tenant", action="append", required=True, metavar="ID", help="tenant id (repeatable)")
    run.add_argument("--from", dest="date_from", required=True, metavar="YYYY-MM-DD")
    run.add_argument("--to", dest="date_to", required=True, metavar="YYYY-MM-DD")
    run.add_argument("--dest", required=True, metavar="s3://BUCKET[/PREFIX]")
    run.add_argument("--split", choices=("daily", "none"), default="daily", help="one job per day (default) or one")
    run.add_argument("--poll-initial", type=_positive, default=10, metavar="S", help="first wait (default 10)")
    run.add_argument("--poll-max", type=_positive, default=120, metavar="S", help="longest wait (default 120)")
    run.add_argument("--timeout", type=_positive, default=6 * 3600, metavar="S", help="give up after (default 6h)")
    run.add_argument("--force", action="store_true", help="replace objects that already landed")
    run.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    run.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    ops.add_parsers(sub)

    simulate = sub.add_parser("simulate", help="start the local OmboriGrid simulator", add_help=False)
    simulate.add_argument("args", nargs=argparse.REMAINDER)

    demo = sub.add_parser("demo", help="run the whole pipeline locally on the simulator and a local AWS")
    demo.add_argument("args", nargs=argparse.REMAINDER)
    return parser


@dataclass
class _Tracked:
    request: ExportRequest
    job: ExportJob | None = None
    poll: PollState | None = None
    next_check: float = 0.0
    result: dict[str, Any] | None = None
    error: OmboriGridExportError | None = None
    messages: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.result is not None or self.error is not None


def command_run(args: argparse.Namespace, *, environ: dict[str, str] | None = None) -> int:
    import os

    import boto3
    from botocore.config import Config

    from omborigrid_export.client import OmboriGridClient
    from omborigrid_export.exporter import Exporter
    from omborigrid_export.layout import KeyLayout
    from omborigrid_export.settings import Settings

    env = dict(os.environ if environ is None else environ)
    tenants = [validate_tenant_id(t) for t in dict.fromkeys(args.tenant)]
    date_from = parse_date(args.date_from, what="--from date")
    date_to = parse_date(args.date_to, what="--to date")
    bucket, prefix = parse_dest(args.dest)
    if args.poll_initial > args.poll_max:
        raise UsageError("--poll-initial must not be larger than --poll-max.")
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
    requests_ = []
    for tenant in tenants:
        whole = ExportRequest(tenant, date_from, date_to)
        requests_.extend(whole.split_daily() if args.split == "daily" else [whole])

    s3 = boto3.client(
        "s3",
        config=Config(
            retries={"mode": "standard", "max_attempts": 5},
            max_pool_connections=settings.transfer.concurrency + 4,
        ),
    )
    bar = ProgressBar(enabled=sys.stderr.isatty() and not args.json)
    client = OmboriGridClient(settings.api_url, base.token)
    exporter = Exporter(settings, client, s3, progress=bar.advance)
    poll = PollState(wait_seconds=args.poll_initial, max_wait_seconds=args.poll_max, max_total_seconds=args.timeout)
    tracked = [_Tracked(r) for r in requests_]
    with client:
        _run_all(exporter, tracked, poll, bucket, force=args.force, bar=bar)
    bar.close()

    exports = [t.result for t in tracked if t.result is not None]
    failures = [t for t in tracked if t.error is not None]
    if args.json:
        payload: dict[str, Any] = {"exports": exports}
        if failures:
            payload["failures"] = [
                {
                    "tenantId": t.request.tenant_id,
                    "dataDateFrom": t.request.date_from.isoformat(),
                    "dataDateTo": t.request.date_to.isoformat(),
                    "jobId": t.job.id if t.job else None,
                    "error": type(t.error).__name__,
                    "message": str(t.error),
                }
                for t in failures
            ]
        print(json.dumps(payload, indent=2))
    else:
        for item in exports:
            state = "already landed" if item.get("alreadyExisted") else "landed"
            dates = item["dataDateFrom"]
            if item["dataDateTo"] != dates:
                dates += f"..{item['dataDateTo']}"
            print(
                f"{item['tenantId']} {dates}: {state} "
                f"s3://{item['bucket']}/{item['key']} ({item['bytes']:,} bytes, {item['checksum']})"
            )
    for t in failures:
        print(f"error: {t.request.label}: {t.error}", file=sys.stderr)
    return EXIT_FAILED if failures else EXIT_OK


def _run_all(
    exporter: Any,
    tracked: list[_Tracked],
    poll: PollState,
    bucket: str,
    *,
    force: bool,
    bar: ProgressBar,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    for item in tracked:
        try:
            item.job = exporter.create(item.request)
            item.poll = poll
            item.next_check = clock() + poll.wait_seconds
            bar.note(f"created job {item.job.id} for {item.request.label}")
        except OmboriGridExportError as exc:
            item.error = exc
    while not all(t.finished for t in tracked):
        pending = [t for t in tracked if not t.finished]
        due = min(t.next_check for t in pending)
        if due > clock():
            sleep(min(due - clock(), 5.0))
            continue
        for item in pending:
            if item.next_check > clock():
                continue
            assert item.job is not None
            assert item.poll is not None
            try:
                identity = JobIdentity(item.job.id, item.request)
                job, item.poll = exporter.check(identity, item.poll)
                item.job = job
                if job.status is JobStatus.DONE:
                    bar.start(f"{item.request.label} {job.filename}", job.file_size or 0)
                    landing = exporter.land(identity, bucket=bucket, replace=force)
                    bar.finish()
                    assert landing.manifest is not None
                    item.result = _export_result(landing.manifest)
                else:
                    bar.note(
                        f"{item.request.label}: job {job.id} {job.status.value}; next check in {item.poll.wait_seconds}s"
                    )
                    item.next_check = clock() + item.poll.wait_seconds
            except OmboriGridExportError as exc:
                bar.finish()
                item.error = exc


def _export_result(manifest: dict[str, Any]) -> dict[str, Any]:
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


def _configure_logging(debug: bool, verbose: bool) -> None:
    """Logs go to stderr, every record scrubbed at every level (urllib3 and botocore included), and so does
    the traceback ``--debug`` lets through."""
    import os

    from omborigrid_export import logsafety
    from omborigrid_export.redact import register_secrets

    register_secrets(
        os.environ.get(name) for name in ("OMBORIGRID_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    )
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logsafety.install_on_root()
    sys.excepthook = logsafety.scrubbed_excepthook
    if not debug:
        for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    try:
        # simulate and demo own their arguments (including --help): pass them through untouched.
        if args_list and args_list[0] == "simulate":
            from omborigrid_local.simulator import main as simulate_main

            return int(simulate_main(args_list[1:]))
        if args_list and args_list[0] == "demo":
            from omborigrid_local.demo import main as demo_main

            return int(demo_main(args_list[1:]))
        args = build_parser().parse_args(args_list)
        _configure_logging(debug, getattr(args, "verbose", False))
        if args.command == "run":
            return command_run(args)
        handled = ops.dispatch(args)
        if handled is not None:
            return handled
        raise UsageError(f"unknown command {args.command!r}")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (InvalidInput, ConfigurationError) as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OmboriGridExportError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted; nothing partial was left under a final key", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        from omborigrid_export.redact import describe_exception

        print(f"error: unexpected failure ({describe_exception(exc)}); rerun with --debug for details", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
