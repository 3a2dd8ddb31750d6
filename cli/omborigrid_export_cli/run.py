"""``omborigrid-export run``: create → poll → land from this machine, with the library the Lambdas use.

Why it is shaped this way:

- **Everything that can be checked is checked before the first job exists** (:mod:`preflight`): a mistake
  there is exit 2 with one sentence, and the API never sees a job that could not have landed.
- **Each export stands alone**: its failure, typed or not, is recorded against it and the others go on;
  ``--json`` always prints what landed and what failed, even when the run is interrupted.
- **Paced like the stack**: at most ``--max-in-flight`` jobs are live at the API at once.
- **``--timeout`` bounds the whole run**: every API call gets the time that is left, and so does a transfer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omborigrid_export.errors import (
    ExportTimedOut,
    GarbledResponse,
    OmboriGridExportError,
    SchemaQuarantined,
    UnexpectedFailure,
)
from omborigrid_export.models import ExportJob, ExportRequest, JobIdentity, JobStatus
from omborigrid_export.polling import PollState
from omborigrid_export.redact import describe_exception
from omborigrid_export.transfer import Continued

from .preflight import MAX_JOBS_WITHOUT_YES, RunPlan, check_destination, plan_run, s3_clients
from .progress import ProgressBar

if TYPE_CHECKING:
    from omborigrid_export.exporter import Exporter
    from omborigrid_export.schema_gate import SchemaHistory

DEFAULT_MAX_IN_FLIGHT = 4
#: The longest the loop sleeps before looking at the clock again.
_MAX_NAP = 5.0

logger = logging.getLogger("omborigrid_export.cli")


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
    run.add_argument(
        "--tokens",
        metavar="FILE",
        help="a token map: a token (and API host) per tenant, as in the token secret (README, Tenants); "
        "default: OMBORIGRID_TOKENS, else OMBORIGRID_TOKEN",
    )
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


@dataclass
class Runner:
    """Drives every export of a plan to a landing or a failure, at most ``max_in_flight`` at a time."""

    #: Each tenant's use cases, through that tenant's own client (token and API host).
    exporters: Mapping[str, Exporter]
    plan: RunPlan
    bar: ProgressBar
    time_left: Callable[[], float]
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    tracked: list[Tracked] = field(default_factory=list)
    #: With SCHEMA_CHANGE_POLICY=quarantine, what each day's schema is compared with before it is published.
    schema_history: SchemaHistory | None = None

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
                item.error = UnexpectedFailure(
                    f"The export of {item.request.label} was interrupted before it finished."
                )

    def _guarded(self, item: Tracked, step: Callable[[Tracked], None]) -> None:
        """One step of one export; whatever it raises becomes that export's failure, never the run's."""
        try:
            step(item)
        except OmboriGridExportError as exc:
            # A transient failure once the time is up is the timeout's doing: say so.
            item.error = self._timed_out(item, exc) if exc.retryable and self.time_left() <= 0 else exc
        except Exception as exc:
            logger.debug("unexpected failure exporting %s", item.request.label, exc_info=True)
            item.error = UnexpectedFailure(
                f"Exporting {item.request.label} failed unexpectedly ({describe_exception(exc)}); "
                "rerun with --debug for the traceback."
            )
        finally:
            if item.finished:
                self.bar.finish()

    def _create(self, item: Tracked) -> None:
        item.job = self.exporters[item.request.tenant_id].create(item.request)
        item.poll = self.plan.poll
        item.next_check = self.clock() + item.poll.wait_seconds
        self.bar.note(f"created job {item.job.id} for {item.request.label}")

    def _step(self, item: Tracked) -> None:
        """One status check, and the landing when the job is done; an unreadable API answer in either
        (a garbled 200) costs one check and is asked again, within the poll bounds (the check's own is
        counted by ``Exporter.check``, the landing's re-read here)."""
        assert item.job is not None
        assert item.poll is not None
        try:
            self._check_and_land(item, JobIdentity(item.job.id, item.request))
        except GarbledResponse as exc:
            # Nothing was published yet: a landing re-reads the job before it moves a byte, and a failed
            # transfer aborts its upload. Asking again from the status check is safe.
            item.poll = item.poll.after_garbled(exc)
            self.bar.finish()
            self.bar.note(f"{item.request.label}: unreadable API answer; asking again in {item.poll.wait_seconds:g}s")
            item.next_check = self.clock() + item.poll.wait_seconds

    def _check_and_land(self, item: Tracked, identity: JobIdentity) -> None:
        from omborigrid_export.exporter import Quarantined
        from omborigrid_export.lake_signals import judge_quarantined, quarantine_sentence
        from omborigrid_export.schema_gate import SchemaGate

        assert item.poll is not None
        exporter = self.exporters[item.request.tenant_id]
        job, item.poll = exporter.check(identity, item.poll)
        if job is None:
            self.bar.note(f"{item.request.label}: unreadable API answer; asking again in {item.poll.wait_seconds:g}s")
            item.next_check = self.clock() + item.poll.wait_seconds
            return
        item.job = job
        if job.status is not JobStatus.DONE:
            self.bar.note(
                f"{item.request.label}: job {job.id} {job.status.value}; next check in {item.poll.wait_seconds:g}s"
            )
            item.next_check = self.clock() + item.poll.wait_seconds
            return
        self.bar.start(f"{item.request.label} {job.filename}", job.file_size or 0)
        history = self.schema_history
        landing = exporter.land(
            identity,
            bucket=self.plan.bucket,
            replace=self.plan.force,
            time_left=self.time_left,
            gate=None if history is None else SchemaGate(history),
        )
        if isinstance(landing, Continued):
            # Out of time mid-transfer: nothing is left half-done for a CLI run.
            checkpoint = landing.checkpoint
            self._abort_upload(exporter, checkpoint.bucket, checkpoint.key, checkpoint.upload_id)
            raise self._timed_out(item)
        if isinstance(landing, Quarantined) and history is not None:
            signals = judge_quarantined(landing.manifest, history, landing.location)
            raise SchemaQuarantined(quarantine_sentence(signals, landing.location))
        item.result = export_result(landing.manifest.to_dict())
        self.bar.finish()

    @staticmethod
    def _abort_upload(exporter: Exporter, bucket: str, key: str, upload_id: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            exporter.s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
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

    from omborigrid_export.exporter import Exporter
    from omborigrid_export.manifest_history import ManifestHistory
    from omborigrid_export.settings import SchemaChangePolicy
    from omborigrid_export.tenants import TenantClient

    end: float = time.monotonic() + args.timeout

    def time_left() -> float:
        return end - time.monotonic()

    plan = plan_run(args, os.environ if environ is None else environ)
    tenants = dict.fromkeys(r.tenant_id for r in plan.requests)
    clients = {
        tenant: TenantClient(
            tenant,
            *plan.tokens.for_tenant(tenant),
            connect_timeout=plan.settings.api_connect_timeout,
            read_timeout=plan.settings.api_read_timeout,
            time_left=time_left,
        )
        for tenant in tenants
    }
    s3, probe = s3_clients(plan.settings)
    check_destination(probe, plan.bucket)
    bar = ProgressBar(enabled=sys.stderr.isatty() and not args.json)
    exporters = {t: Exporter(plan.settings, client, s3, progress=bar.advance) for t, client in clients.items()}
    history = None
    if plan.settings.schema_change_policy is SchemaChangePolicy.QUARANTINE:
        history = ManifestHistory(
            s3, plan.bucket, layout=plan.settings.layout, archive_layout=plan.settings.archive_layout
        )
    runner = Runner(exporters, plan, bar, time_left, schema_history=history)
    try:
        with contextlib.ExitStack() as open_clients:
            for client in clients.values():
                open_clients.enter_context(client)
            runner.run()
    except KeyboardInterrupt:
        runner.interrupted()
        report(runner.tracked, as_json=args.json)
        raise
    finally:
        bar.close()
    return report(runner.tracked, as_json=args.json)


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
