"""Command line for the simulator (``omborigrid-export simulate`` and ``python -m omborigrid_local.simulator``).

One flag per knob (``--queue-seconds``, ``--fail-next '<json>'`` ...), so a demo or benchmark in another
process can start exactly the simulator a test would build in-process. ``add_arguments`` + ``run`` let a
parent CLI embed the same flags in a subcommand.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

from .config import (
    BAD_LOCATIONS,
    BAD_MEMBER_KINDS,
    BAD_ZIPS,
    DELIVERIES,
    EMPTY_FILES,
    IDENTITY_CHANGES,
    KNOB_NAMES,
    SCHEMA_CHANGES,
    SLOW_DRIP_ROUTES,
    TIMESTAMP_FORMATS,
    ZIP_BOMBS,
    SimulatorConfig,
)
from .server import Simulator, check_loopback, default_cache_dir

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from ``123``, ``64k``, ``500M``, ``1G``, ``2GiB`` (binary multiples: sizes here are for files)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 1048576, 64k, 500M, 1G)")
    number, unit = float(match[1]), match[2].lower()
    return int(number * 1024 ** " kmgt".index(unit or " "))


def _optional(parse: Any) -> Any:
    def parser(text: str) -> Any:
        return None if text.strip().lower() in ("none", "never", "null", "off") else parse(text)

    parser.__name__ = getattr(parse, "__name__", "value")
    return parser


def _fail_next(text: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--fail-next must be JSON: {exc}") from None
    specs = value if isinstance(value, list) else [value]
    if not all(isinstance(spec, dict) for spec in specs):
        raise argparse.ArgumentTypeError("--fail-next must be a JSON object or a list of objects")
    return specs


def _tenant_tokens(raw: str) -> dict[str, str]:
    try:
        value = json.loads(raw)
    except ValueError:
        raise argparse.ArgumentTypeError("--tenant-tokens must be a JSON object of tenant id to token") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--tenant-tokens must be a JSON object of tenant id to token")
    return {str(k): str(v) for k, v in value.items()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's flags to ``parser`` (every knob defaults to SimulatorConfig's value)."""
    parser.add_argument("--port", type=int, default=8765, help="TCP port on loopback (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (others are refused)")
    parser.add_argument("--cache-dir", type=Path, default=None, help=f"generated files (default {default_cache_dir()})")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    parser.add_argument("--exit-after", type=float, default=None, metavar="SECONDS", help="stop after SECONDS")
    knobs = parser.add_argument_group("knobs (see SimulatorConfig; omitted flags keep its defaults)")

    def flag(*names: str, **kwargs: Any) -> None:
        # SUPPRESS: a flag that is not given leaves no attribute, so "never"/None stays expressible.
        kwargs["default"] = argparse.SUPPRESS
        knobs.add_argument(*names, **kwargs)

    flag("--token")
    flag("--expired-tokens", action="append", metavar="TOKEN", help="repeatable: tokens answered 401 expired")
    flag(
        "--tenant-tokens",
        type=_tenant_tokens,
        metavar="JSON",
        help='tenants with tokens of their own, e.g. \'{"t1": "tok-1", "t2": "tok-2"}\'',
    )
    flag("--strict-tenant-ids", action=argparse.BooleanOptionalAction)
    flag("--create-status", type=int, choices=(200, 201))
    flag("--queue-seconds", type=float)
    flag("--processing-seconds", type=_optional(float), help="simulated seconds, or 'never'")
    flag("--final-status", help="status after processing (default done; e.g. failed)")
    flag("--time-scale", type=float, help="simulated seconds per real second")
    flag("--url-ttl-seconds", type=float)
    flag("--job-expiry-seconds", type=float)
    flag("--delivery", choices=DELIVERIES)
    flag("--rows-per-day", type=int)
    flag("--target-bytes", type=_optional(parse_size), help="pad deliveries to at least this size, e.g. 1G")
    flag("--timestamp-format", choices=TIMESTAMP_FORMATS)
    flag("--filename-override")
    flag("--file-size-delta", type=int)
    flag("--fail-next", type=_fail_next, metavar="JSON", help='e.g. \'[{"status": 429, "retry_after": 2}]\'')
    flag("--drop-after-bytes", type=_optional(parse_size))
    flag("--drop-count", type=int)
    flag("--expire-next-downloads", type=int)
    flag("--ignore-range", action=argparse.BooleanOptionalAction)
    flag("--bandwidth-bytes-per-sec", type=_optional(parse_size), help="per-connection cap, e.g. 10M")
    _add_adversarial(parser)
    _add_signals(parser)


def _add_adversarial(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("adversarial API and delivery (see SimulatorConfig)")

    def flag(*names: str, **kwargs: Any) -> None:
        kwargs["default"] = argparse.SUPPRESS
        group.add_argument(*names, **kwargs)

    flag("--identity-change", choices=IDENTITY_CHANGES, help="later GETs of a job name another tenant/dates/id")
    flag("--identity-change-after", type=int, metavar="N", help="GETs answered truthfully first (default 1)")
    flag("--truncated-parquet", type=_optional(parse_size), metavar="K", help="serve the first K bytes + PAR1")
    flag("--foreign-tenant", metavar="TENANT", help="serve that tenant's rows under the requested tenant")
    flag("--foreign-dates", type=int, metavar="DAYS", help="serve the requested dates shifted by DAYS")
    flag("--empty-file", choices=EMPTY_FILES, help="rows: valid parquet with 0 rows; bytes: a zero-byte file")
    flag("--garbled-status", type=int, metavar="N", help="next N job GETs: 200 with half the JSON")
    flag("--slow-drip", choices=SLOW_DRIP_ROUTES, help="drip API responses on these routes")
    flag("--slow-drip-bytes", type=int, metavar="N", help="bytes per write when dripping (default 8)")
    flag("--slow-drip-interval", type=float, metavar="SECONDS", help="pause between writes (default 0.5)")
    flag("--bad-location", choices=BAD_LOCATIONS, help="downloads answer 307 with a malformed Location")
    flag("--archive-bad-member", type=int, metavar="N", help="break the N-th zip member (1-based)")
    flag("--archive-bad-member-kind", choices=BAD_MEMBER_KINDS, help="crc (default) or footer")
    flag("--zip-bomb", choices=ZIP_BOMBS, help="add a member of zip-bomb-bytes zeros (lie: declared 1 KiB)")
    flag("--zip-bomb-bytes", type=parse_size, help="true inflated size of the bomb (default 1G)")
    flag("--bad-zip", choices=BAD_ZIPS, help="keep the local entries, break the central directory")


def _add_signals(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the lake's own signals (see SimulatorConfig)")

    def flag(*names: str, **kwargs: Any) -> None:
        kwargs["default"] = argparse.SUPPRESS
        group.add_argument(*names, **kwargs)

    flag("--signals-tenant", metavar="TENANT", help="apply the signals below to this tenant only (default all)")
    flag("--schema-change-from", metavar="YYYY-MM-DD", help="from this day the events schema changes")
    flag("--schema-change-until", metavar="YYYY-MM-DD", help="the last day of that change (default: it stays)")
    flag("--schema-change", choices=SCHEMA_CHANGES, help="type: int1 becomes a string (default); add: str6 added")
    flag("--empty-day", action="append", metavar="YYYY-MM-DD", help="repeatable: a day with 0 rows")
    flag(
        "--volume-fraction",
        action="append",
        metavar="YYYY-MM-DD:FRACTION",
        help="repeatable: that day has FRACTION of rows_per_day, e.g. 2024-04-25:0.05",
    )


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """Build the config from parsed flags; flags not given keep SimulatorConfig's defaults."""
    return SimulatorConfig(**{dest: getattr(args, dest) for dest in KNOB_NAMES if hasattr(args, dest)})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omborigrid-export simulate",
        description="Serve a simulated OmboriGrid export API on loopback (real parquet, fault knobs).",
    )
    add_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Start the simulator described by ``args`` and serve until Ctrl-C (or ``--exit-after``)."""
    try:
        host = check_loopback(args.host)
        config = config_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sim = Simulator(config, cache_dir=args.cache_dir, log_requests=args.verbose)
    try:
        base_url = sim.start(port=args.port, host=host)
    except OSError as exc:
        print(f"error: cannot listen on {host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"OmboriGrid simulator listening on {base_url}", flush=True)
    print(f"  API base URL: {sim.api_url}", flush=True)
    print(f"  token: {sim.token}", flush=True)
    print(f"  cache: {sim.cache.root}", flush=True)
    print(f"  admin: {base_url}/_sim/stats, /_sim/config, /_sim/reset", flush=True)
    try:
        deadline = None if args.exit_after is None else time.monotonic() + args.exit_after
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2 if deadline is not None else 3600)
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        sim.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse ``argv`` (default ``sys.argv[1:]``) and serve. Returns the exit status."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    return run(args)
