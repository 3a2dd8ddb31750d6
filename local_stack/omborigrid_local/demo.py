"""``omborigrid-export demo``: the whole pipeline on one machine, in well under a minute.

The OmboriGrid simulator on loopback, template.yaml deployed on the local engine (in-process moto running the
real ASL with the real handlers), the nightly tick for two tenants and yesterday, then what happened: each
execution's path through the states, what landed, the manifest, the outcome events, and the data read back
with pyarrow against what the simulator generated.

Simulated time runs ``--time-scale`` times faster than real time, and the engine's waits shrink by the same
factor, so the two clocks agree (a 10-minute job takes 3 real seconds at the default 200).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DEFAULT_TENANTS = ("621e1fc633350f0007637a0c", "64b7c0de9a1f2e0011a4d5c3")
EXECUTION_TIMEOUT_SECONDS = 45.0
ROWS_SHOWN = 5


class _Console:
    """Progress lines with the elapsed time, flushed as they happen."""

    def __init__(self) -> None:
        self._started = time.monotonic()

    def step(self, text: str) -> None:
        print(f"[{time.monotonic() - self._started:5.1f}s] {text}", flush=True)

    @staticmethod
    def line(text: str = "") -> None:
        print(text, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omborigrid-export demo",
        description="Run the export pipeline locally (simulator + local AWS engine) and read the data back.",
    )
    parser.add_argument(
        "--tenant",
        action="append",
        dest="tenants",
        metavar="ID",
        help=f"tenant exported by the nightly run (repeatable; default: {', '.join(DEFAULT_TENANTS)})",
    )
    parser.add_argument(
        "--cache-dir", type=Path, help="where the simulator caches generated files (default: a temp dir)"
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=200.0,
        help="simulated seconds per real second, for the API and the state machine's waits (default 200)",
    )
    parser.add_argument(
        "--processing-seconds",
        type=float,
        default=600.0,
        help="how long each export job processes at the API, in simulated seconds (default 600)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tenants = list(dict.fromkeys(args.tenants or DEFAULT_TENANTS))
    if args.time_scale <= 0 or args.processing_seconds < 0:
        print("error: --time-scale must be > 0 and --processing-seconds >= 0", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="omborigrid-demo-") as workdir:
        return _run(tenants, Path(workdir), args)


def _run(tenants: list[str], workdir: Path, args: argparse.Namespace) -> int:
    from omborigrid_local.engine import LocalStack
    from omborigrid_local.simulator import Simulator, SimulatorConfig

    console = _Console()
    logging.getLogger("omborigrid_local.engine").setLevel(logging.WARNING)
    cache_dir = args.cache_dir or workdir / "sim-cache"
    config = SimulatorConfig(queue_seconds=30, processing_seconds=args.processing_seconds, time_scale=args.time_scale)
    with Simulator(config, cache_dir=cache_dir) as sim:
        console.step(f"OmboriGrid simulator on {sim.base_url} (1 real second = {args.time_scale:g} simulated seconds)")
        function_log = workdir / "functions.log"
        parameters = {"TenantIds": ",".join(tenants), "LookbackDays": 0, "ScheduleExpressionTimezone": "UTC"}
        with LocalStack(
            api_url=sim.base_url,
            token=sim.token,
            parameters=parameters,
            wait_scale=1 / args.time_scale,
            function_log=function_log,
        ) as stack:
            console.step(
                f"local AWS ready: stack {stack.stack_name} from template.yaml "
                f"({len(stack.resources)} resources; bucket {stack.bucket})"
            )
            if stack.skipped:
                console.step(
                    "  not modelled by moto, skipped: " + ", ".join(sorted({kind for _, kind in stack.skipped}))
                )
            result = stack.deliver_scheduled()
            jobs = [job for job in result.get("jobs", []) if job.get("outcome") == "created"]
            console.step(f"nightly tick (yesterday = {yesterday()} UTC) → CreateJob: {result.get('counts')}")
            for job in jobs:
                console.step(f"  job {job['jobId']} for {job['tenantId']} {job['dataDateFrom']} → queue → StartExport")
            executions = _watch(stack, console, expected=len(jobs))
            ok = _summarise(stack, sim, console, executions)
            _report_function_log(function_log, console, show_errors=not ok)
    return 0 if ok else 1


def _watch(stack: Any, console: _Console, *, expected: int) -> list[dict[str, Any]]:
    """Print each execution's progress (one line per status check or download step) until all have ended."""
    from omborigrid_local.engine import state_inputs

    seen: dict[str, int] = {}
    deadline = time.monotonic() + EXECUTION_TIMEOUT_SECONDS
    while True:
        executions = stack.executions()
        for execution in executions:
            history = stack.history(execution["executionArn"])
            checks = state_inputs(history, "Is Export Ready")
            downloads = state_inputs(history, "Is Download Complete")
            steps = [("check", s) for s in checks] + [("download", s) for s in downloads]
            label = _label(execution)
            for kind, state in steps[seen.get(label, 0) :]:
                if kind == "check":
                    poll, status = state["poll"], state["job"]["status"]
                    after = "download" if status == "done" else f"next check in {poll['waitSeconds']} s"
                    console.step(f"  {label}: check {poll['attempt']}: {status} ({after})")
                else:
                    transfer = state.get("transfer") or {}
                    if transfer.get("complete"):
                        console.step(f"  {label}: downloaded, verified and landed")
                    else:
                        done = (transfer.get("checkpoint") or {}).get("bytesDone")
                        console.step(f"  {label}: download continues in a new invocation ({done} bytes so far)")
            seen[label] = len(steps)
        if len(executions) >= expected and all(e["status"] != "RUNNING" for e in executions):
            # Also let the outcome events' rule deliveries (Export Completed → CreateJob) finish.
            executions = stack.wait_for_executions(expected, timeout=max(1.0, deadline - time.monotonic()))
            for execution in executions:
                console.step(f"  {_label(execution)}: execution {execution['status']}")
            return list(executions)
        if time.monotonic() > deadline:
            console.step(f"gave up waiting after {EXECUTION_TIMEOUT_SECONDS:.0f} s")
            return list(executions)
        time.sleep(0.1)


def _label(execution: dict[str, Any]) -> str:
    """``<tenant>_<YYYYMMDD>-<YYYYMMDD>_<job>`` (StartExport's execution name) → ``<tenant> YYYY-MM-DD``."""
    parts = execution["name"].split("_", 2)
    day = parts[1].split("-")[0] if len(parts) == 3 else ""
    return f"{parts[0]} {day[:4]}-{day[4:6]}-{day[6:8]}" if len(day) == 8 else str(execution["name"])


def _summarise(stack: Any, sim: Any, console: _Console, executions: list[dict[str, Any]]) -> bool:
    from omborigrid_local.engine import count_transitions, describe_path, entered_states

    ok = bool(executions) and all(e["status"] == "SUCCEEDED" for e in executions)
    console.line()
    console.line("Executions (path through the states)")
    for execution in executions:
        history = stack.history(execution["executionArn"])
        seconds = (execution.get("stopDate", execution["startDate"]) - execution["startDate"]).total_seconds()
        console.line(
            f"  {_label(execution)}  {execution['status']}  {seconds:.1f} s, "
            f"{count_transitions(history)} state transitions"
        )
        console.line(f"    {describe_path(entered_states(history))}")
        if execution["status"] != "SUCCEEDED":
            console.line(f"    error: {execution.get('error')}: {execution.get('cause')}")

    events = stack.outcome_events()
    console.line()
    console.line("Outcome events (EventBridge, default bus)")
    for event in events:
        detail = event["detail"]
        summary = detail.get("key") or f"{detail.get('error')}: {detail.get('message')}"
        console.line(f"  {event['detail-type']}: {detail.get('tenantId')} {detail.get('dataDateFrom')}  {summary}")

    functions = {arn: logical for logical, arn in stack.resources.items()}
    for delivery in stack.deliveries:
        target = next((name for arn, name in functions.items() if delivery.function_arn.endswith(f":{arn}")), "?")
        payload = delivery.payload
        what = payload.get("detail-type") if isinstance(payload, dict) and "detail-type" in payload else payload
        console.line(f"  → delivered to {target} by rule {delivery.rule}: {json.dumps(what)[:80]}")

    manifests = [e["detail"] for e in events if e["detail-type"] == "Export Completed"]
    console.line()
    console.line(f"Landed in s3://{stack.bucket}")
    for manifest in manifests:
        for landed in manifest.get("files", []):
            console.line(
                f"  {landed['key']}  {landed['bytes']:,} bytes  CRC32 {landed.get('checksumCRC32')}  "
                f"{landed.get('contentKind')}"
            )
        console.line(f"  manifest: {manifest['manifestKey']}")
    if manifests:
        console.line()
        console.line("Manifest (first export)")
        for line in json.dumps(manifests[0], indent=2).splitlines():
            console.line(f"  {line}")

    console.line()
    console.line("Data read back with pyarrow")
    ok = len(manifests) == len(executions) and ok
    for manifest in manifests:
        ok = _read_back(stack, sim, console, manifest) and ok
    console.line()
    console.line("All exports landed and read back." if ok else "Something did not land; see above.")
    return ok


def _read_back(stack: Any, sim: Any, console: _Console, manifest: dict[str, Any]) -> bool:
    import pyarrow.parquet as pq

    expected = sim.expected_rows(manifest["tenantId"], manifest["dataDateFrom"], manifest["dataDateTo"])
    s3 = stack.client("s3")
    ok = True
    for landed in manifest.get("files", []):
        if landed.get("contentKind") != "parquet":
            continue
        body = s3.get_object(Bucket=stack.bucket, Key=landed["key"])["Body"].read()
        table = pq.read_table(io.BytesIO(body))
        name = landed.get("table") or ("events" if len(expected) == 1 else None)
        want = expected.get(name) if name else None
        match = want == table.num_rows
        ok = ok and match
        verdict = "matches" if match else "DOES NOT MATCH"
        console.line(
            f"  {manifest['tenantId']} {manifest['dataDateFrom']} {name or landed['key']}: {table.num_rows:,} rows "
            f"({verdict} the simulator's {want if want is None else format(want, ',')})"
        )
        console.line(f"    columns: {', '.join(table.schema.names)}")
        for line in _table_lines(table.slice(0, ROWS_SHOWN).to_pylist(), table.schema.names):
            console.line(f"    {line}")
    return ok


def _table_lines(rows: list[dict[str, Any]], names: list[str], width: int = 150) -> list[str]:
    """Rows as an aligned text table, in schema order, cut to ``width``.

    Columns that hold the same value in every row shown are listed once above the table instead.
    """
    cells = {name: [_short(row.get(name)) for row in rows] for name in names}
    same = [name for name in names if len(set(cells[name])) == 1 and len(rows) > 1]
    lines = []
    if same:
        lines.append("same in every row: " + ", ".join(f"{n}={cells[n][0] or 'null'}" for n in same))
    shown: list[str] = []
    used = 0
    for name in names:
        if name in same:
            continue
        column_width = max(len(name), *(len(v) for v in cells[name]))
        if used + column_width > width:
            break
        shown.append(name)
        used += column_width + 2
    widths = {name: max(len(name), *(len(v) for v in cells[name])) for name in shown}
    lines.append("  ".join(name.ljust(widths[name]) for name in shown).rstrip())
    lines += ["  ".join(cells[name][i].ljust(widths[name]) for name in shown).rstrip() for i in range(len(rows))]
    hidden = len(names) - len(shown) - len(same)
    if hidden:
        lines.append(f"({hidden} more columns not shown)")
    return lines


def _short(value: Any, limit: int = 18) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _report_function_log(path: Path, console: _Console, *, show_errors: bool) -> None:
    """The handlers' own output (Powertools JSON logs, EMF metrics) went to a file; show its errors on failure."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    console.line()
    console.line(f"(the functions wrote {len(lines)} log lines: Powertools JSON logs and EMF metrics)")
    if show_errors:
        for line in lines:
            if '"level":"ERROR"' in line or line.startswith(("Traceback", "ERROR")):
                console.line(f"  {line[:300]}")


def yesterday() -> str:
    """The day the nightly run exports (the schedule's time zone is UTC here)."""
    return (datetime.now(UTC) - timedelta(days=1)).date().isoformat()


if __name__ == "__main__":
    raise SystemExit(main())
