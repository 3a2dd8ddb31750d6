"""``request`` and ``status``: talk to a deployed stack.

``request`` puts an "Export Requested" event on the stack's own event bus, named by the stack's
``EventBusName`` output (validated exactly as CreateJob validates it); the stack accepts the event only there, and
only from the principals its bus policy lists. ``status`` reads the ledger and shows, per tenant, which days landed, are in flight or pending,
failed, or are missing: a calendar grid on a terminal, or ``--json``; beside it, from the facts each landing keeps,
the rows of each day, the days that landed empty, anomalous or with a changed schema, and (``--history TABLE``) one
table's rows per day as a chart.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from omborigrid_export.errors import ConfigurationError, InvalidInput, OmboriGridExportError
from omborigrid_export.lake_facts import LakeFacts
from omborigrid_export.ledger import FAILED, LANDED, PENDING, QUEUED, REQUESTING, Ledger, LedgerEntry
from omborigrid_export.models import parse_date, validate_tenant_id
from omborigrid_export.scheduling import AdhocRequest

from . import doctor, lake_view, retry

SOURCE = "omborigrid.export"
MISSING = "MISSING"
#: One character per day in the grid.
SYMBOLS = {LANDED: "#", QUEUED: "~", REQUESTING: "~", PENDING: ".", FAILED: "X", MISSING: " "}
LEGEND = "# landed  ~ in flight  . pending  X failed  (blank) missing  |  " + lake_view.LEGEND
MAX_STATUS_DAYS = 3660


def add_parsers(sub: Any) -> None:
    request = sub.add_parser("request", help="ask a deployed stack for an export (puts an Export Requested event)")
    request.add_argument("--tenant", action="append", required=True, metavar="ID")
    request.add_argument("--from", dest="date_from", required=True, metavar="YYYY-MM-DD")
    request.add_argument("--to", dest="date_to", required=True, metavar="YYYY-MM-DD")
    request.add_argument("--split", choices=("daily", "none"), default="daily")
    request.add_argument("--force", action="store_true", help="re-export days that already landed")
    bus = request.add_mutually_exclusive_group(required=True)
    bus.add_argument("--stack", help="the deployed stack's name (the event goes to its EventBusName output)")
    bus.add_argument("--bus", help="the stack's event bus, by name or ARN")
    request.add_argument("--json", action="store_true")

    status = sub.add_parser("status", help="what landed per tenant and day (reads the stack's ledger)")
    where = status.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", help="the deployed stack's name (its LedgerTableName output is used)")
    where.add_argument("--table", help="the ledger table's name")
    status.add_argument("--tenant", action="append", required=True, metavar="ID")
    status.add_argument("--from", dest="date_from", required=True, metavar="YYYY-MM-DD")
    status.add_argument("--to", dest="date_to", required=True, metavar="YYYY-MM-DD")
    status.add_argument("--json", action="store_true")
    status.add_argument(
        "--history", metavar="TABLE", help="also chart one table's rows per landed day (events, sessions, export...)"
    )
    retry.add_parser(sub)
    doctor.add_parser(sub)


def command_request(args: argparse.Namespace) -> int:
    import boto3

    detail = {
        "tenantIds": list(dict.fromkeys(args.tenant)),
        "dataDateFrom": args.date_from,
        "dataDateTo": args.date_to,
        "split": args.split,
        "force": bool(args.force),
    }
    request = AdhocRequest.from_detail(detail)  # the same validation CreateJob applies
    bus = args.bus or stack_output(args.stack, "EventBusName")
    response = boto3.client("events").put_events(
        Entries=[
            {
                "Source": SOURCE,
                "DetailType": "Export Requested",
                "Detail": json.dumps(detail),
                "EventBusName": bus,
            }
        ]
    )
    entry = response["Entries"][0]
    if response.get("FailedEntryCount") or "EventId" not in entry:
        raise OmboriGridExportError(
            f"EventBridge refused the request: {entry.get('ErrorCode', 'unknown')} {entry.get('ErrorMessage', '')}".strip()
        )
    count = len(request.expand())
    if args.json:
        print(json.dumps({"eventId": entry["EventId"], "exports": count, "detail": detail}))
    else:
        print(
            f"requested {count} export(s) for {', '.join(request.tenants)} {args.date_from}..{args.date_to} "
            f"on {bus} (event {entry['EventId']})"
        )
    return 0


def stack_output(stack: str, key: str) -> str:
    """One output of a deployed omborigrid-export stack."""
    import boto3
    from botocore.exceptions import ClientError

    try:
        outputs = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    except ClientError as exc:
        raise ConfigurationError(
            f"Cannot read stack {stack!r}: {exc.response.get('Error', {}).get('Message')}"
        ) from None
    for output in outputs:
        if output.get("OutputKey") == key:
            return str(output["OutputValue"])
    raise ConfigurationError(
        f"Stack {stack!r} has no {key} output; is it an omborigrid-export stack of this version or later?"
    )


def day_states(entries: Sequence[LedgerEntry], days: Sequence[date]) -> dict[date, LedgerEntry | None]:
    """The entry that covers each day (a daily entry, or a range entry spanning it)."""
    covering: dict[date, LedgerEntry | None] = dict.fromkeys(days)
    for entry in sorted(entries, key=lambda e: e.updated_at):
        d = entry.date_from
        while d <= entry.date_to:
            if d in covering:
                covering[d] = entry
            d += timedelta(days=1)
    return covering


def command_status(args: argparse.Namespace) -> int:
    import boto3

    tenants = [validate_tenant_id(t) for t in dict.fromkeys(args.tenant)]
    first = parse_date(args.date_from, what="--from date")
    last = parse_date(args.date_to, what="--to date")
    if first > last:
        raise InvalidInput("--from must not be after --to.")
    if (last - first).days >= MAX_STATUS_DAYS:
        raise InvalidInput(f"Ask for at most {MAX_STATUS_DAYS} days at a time.")
    table = args.table or stack_output(args.stack, "LedgerTableName")
    dynamodb = boto3.client("dynamodb")
    ledger = Ledger(dynamodb, table)
    lake = LakeFacts(dynamodb, table)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    report: dict[str, Any] = {"tenants": []}
    for tenant in tenants:
        # Range entries may start before the window; look back a year for them.
        covering = day_states(ledger.entries(tenant, first - timedelta(days=366), last), days)
        facts = lake.between(tenant, first, last)
        facts_by_day = lake_view.by_day(facts)
        rows = []
        for day in days:
            entry = covering[day]
            rows.append(
                {
                    "date": day.isoformat(),
                    "state": entry.state if entry else MISSING,
                    "jobId": entry.job_id if entry else None,
                    "key": entry.key if entry else None,
                    "error": entry.error if entry else None,
                    **lake_view.day_facts_json(facts_by_day.get(day, [])),
                }
            )
            if args.stack and entry is not None and entry.state == FAILED:
                rows[-1]["retry"] = retry.retry_command(args.stack, tenant, day.isoformat(), day.isoformat())
        counts: dict[str, int] = {}
        for row in rows:
            state = str(row["state"])
            counts[state] = counts.get(state, 0) + 1
        report["tenants"].append({"tenantId": tenant, "counts": counts, "days": rows})
        if args.history:
            report["tenants"][-1]["history"] = lake_view.history_chart(tenant, args.history, facts)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render_grid(report), end="")
    complete = all(row["state"] == LANDED for t in report["tenants"] for row in t["days"])
    return 0 if complete else 1


def render_grid(report: dict[str, Any]) -> str:
    """One line per tenant and month: the days of the month as symbols, then counts."""
    lines = [LEGEND]
    for tenant in report["tenants"]:
        lines.append("")
        lines.append(
            f"{tenant['tenantId']}: "
            + ", ".join(f"{state.lower()} {count}" for state, count in sorted(tenant["counts"].items()))
        )
        by_month: dict[str, list[dict[str, Any]]] = {}
        for row in tenant["days"]:
            by_month.setdefault(row["date"][:7], []).append(row)
        peak = max((row.get("rows") or 0 for row in tenant["days"]), default=0)
        for month, rows in by_month.items():
            cells = [" "] * 31
            for row in rows:
                mark = lake_view.MARKS.get(str(row.get("signal"))) if row["state"] == LANDED else None
                cells[int(row["date"][8:10]) - 1] = mark or SYMBOLS.get(row["state"], "?")
            total = sum(row.get("rows") or 0 for row in rows)
            lines.append(f"  {month} |{''.join(cells)}|  {total:,} rows")
            if any(row.get("rows") is not None for row in rows):
                bar = lake_view.rows_bar({int(row["date"][8:10]): row.get("rows") for row in rows}, peak)
                lines.append(f"     rows |{bar}|")
        failed = [row for row in tenant["days"] if row["state"] == FAILED]
        for row in failed[:10]:
            lines.append(f"  failed {row['date']}: {row['error'] or 'no reason recorded'}")
            if row.get("retry"):
                lines.append(f"    retry: {row['retry']}")
        lines.extend(lake_view.signal_lines(tenant["days"]))
        if tenant.get("history"):
            lines.extend(["", tenant["history"].rstrip("\n")])
    lines.append("")
    return "\n".join(lines)


def dispatch(args: argparse.Namespace) -> int | None:
    if args.command == "request":
        return command_request(args)
    if args.command == "status":
        return command_status(args)
    if args.command == "retry":
        return retry.command_retry(args)
    if args.command == "doctor":
        return doctor.command_doctor(args)
    return None
