"""``retry``: ask a deployed stack again for the failed or missing days of a tenant, through its own path.

The days come from the stack's ledger (the same view as ``status``): FAILED and missing days are requested again,
landed ones are left alone unless ``--force`` (which re-exports them and replaces what landed), days in flight
are never asked twice. Each run of consecutive days is one "Export Requested" event, put by ``request``'s own
code, so CreateJob treats it exactly as an operator's request: and as any request naming a paused tenant, it
resumes the tenant for the nightly run.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from omborigrid_export.errors import InvalidInput
from omborigrid_export.ledger import FAILED, LANDED, Ledger
from omborigrid_export.models import parse_date, validate_tenant_id

from . import ops
from .doctor import describe_stack

MAX_RETRY_DAYS = 3660


def add_parser(sub: Any) -> None:
    retry = sub.add_parser("retry", help="request a tenant's failed or missing days again (skips landed ones)")
    retry.add_argument("--stack", required=True, help="the deployed stack's name")
    retry.add_argument("--tenant", required=True, metavar="ID")
    retry.add_argument("--from", dest="date_from", required=True, metavar="YYYY-MM-DD")
    retry.add_argument("--to", dest="date_to", required=True, metavar="YYYY-MM-DD")
    retry.add_argument("--force", action="store_true", help="also re-export the days that landed")
    retry.add_argument("--bus", default=None, help="event bus (default: the stack's EventBusName output, or default)")
    retry.add_argument("--json", action="store_true")


def retry_command(stack: str, tenant: str, first: str, last: str) -> str:
    """The exact command that requests these days again (``status`` prints it under a failed day)."""
    return f"omborigrid-export retry --stack {stack} --tenant {tenant} --from {first} --to {last}"


def runs(days: Sequence[date]) -> list[tuple[date, date]]:
    """Consecutive days as (first, last) ranges, in order."""
    result: list[tuple[date, date]] = []
    for day in sorted(days):
        if result and day - result[-1][1] == timedelta(days=1):
            result[-1] = (result[-1][0], day)
        else:
            result.append((day, day))
    return result


def days_to_retry(ledger: Ledger, tenant: str, first: date, last: date, *, force: bool) -> dict[str, list[date]]:
    """The days of [first, last] by what ``retry`` does with them: ``retry``, ``skipLanded``, ``skipInFlight``."""
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    covering = ops.day_states(ledger.entries(tenant, first - timedelta(days=366), last), days)
    plan: dict[str, list[date]] = {"retry": [], "skipLanded": [], "skipInFlight": []}
    for day, entry in covering.items():
        if entry is None or entry.state == FAILED or (entry.state == LANDED and force):
            plan["retry"].append(day)
        elif entry.state == LANDED:
            plan["skipLanded"].append(day)
        else:
            plan["skipInFlight"].append(day)
    return plan


def command_retry(args: argparse.Namespace) -> int:
    import boto3

    tenant = validate_tenant_id(args.tenant)
    first = parse_date(args.date_from, what="--from date")
    last = parse_date(args.date_to, what="--to date")
    if first > last:
        raise InvalidInput("--from must not be after --to.")
    if (last - first).days >= MAX_RETRY_DAYS:
        raise InvalidInput(f"Ask for at most {MAX_RETRY_DAYS} days at a time.")
    outputs = describe_stack(args.stack).outputs
    ledger = Ledger(boto3.client("dynamodb"), ops.stack_output(args.stack, "LedgerTableName"))
    plan = days_to_retry(ledger, tenant, first, last, force=args.force)
    bus = args.bus or outputs.get("EventBusName") or "default"
    requested = []
    for start, end in runs(plan["retry"]):
        request = argparse.Namespace(
            tenant=[tenant],
            date_from=start.isoformat(),
            date_to=end.isoformat(),
            split="daily",
            force=bool(args.force),
            bus=bus,
            json=False,
        )
        if args.json:
            _quietly(request)
        else:
            print(f"asking again for {tenant} {start}..{end}: ", end="")
            ops.command_request(request)
        requested.append({"dataDateFrom": start.isoformat(), "dataDateTo": end.isoformat()})
    summary = {key: [d.isoformat() for d in value] for key, value in plan.items()}
    if args.json:
        print(json.dumps({"tenantId": tenant, "requested": requested, **summary}))
    else:
        if plan["skipLanded"]:
            print(f"skipped {len(plan['skipLanded'])} landed day(s) (--force re-exports them)")
        if plan["skipInFlight"]:
            print(f"skipped {len(plan['skipInFlight'])} day(s) in flight: {', '.join(summary['skipInFlight'][:10])}")
        if not requested:
            print(f"nothing to retry for {tenant} {first}..{last}")
    return 0


def _quietly(request: argparse.Namespace) -> None:
    """``request``'s own put, its line kept off stdout (the JSON summary is the output)."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        ops.command_request(request)
