"""The ``omborigrid-export`` command line.

Exit codes (a contract): 0 every export landed; 1 an export failed (remote, transfer, integrity);
2 bad usage or input. ``status`` exits 1 when any day shown has not landed. A failure prints one sentence; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from omborigrid_export.errors import (
    ConfigurationError,
    InvalidInput,
    OmboriGridExportError,
)

from . import ops
from .run import add_run_parser, command_run, error_payload

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

logger = logging.getLogger("omborigrid_export.cli")


class UsageError(Exception):
    """Bad arguments: exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 on its own; keep one sentence, no usage dump
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="omborigrid-export", description="Export OmboriGrid analytics into S3.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    add_run_parser(sub)
    ops.add_parsers(sub)

    simulate = sub.add_parser("simulate", help="start the local OmboriGrid simulator", add_help=False)
    simulate.add_argument("args", nargs=argparse.REMAINDER)

    demo = sub.add_parser("demo", help="run the whole pipeline locally on the simulator and a local AWS")
    demo.add_argument("args", nargs=argparse.REMAINDER)
    return parser


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


#: Commands served by the local stack (the omborigrid-local distribution), which the product does not include.
LOCAL_STACK_COMMANDS = {"simulate": "omborigrid_local.simulator", "demo": "omborigrid_local.demo"}
LOCAL_STACK_MISSING = (
    "'{command}' needs the local stack (the OmboriGrid simulator and the local AWS engine), which this "
    "installation does not include: from a checkout of the repository run `make install`, or "
    "`pip install -e ./local_stack` into this environment."
)


def _local_stack_command(command: str, args: list[str]) -> int:
    """Run ``simulate`` or ``demo`` (they own their arguments, --help included), or say what to install."""
    import importlib

    module_name = LOCAL_STACK_COMMANDS[command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise  # the local stack is there, but something it needs is not: a broken install, shown as such
        print(f"error: {LOCAL_STACK_MISSING.format(command=command)}", file=sys.stderr)
        return EXIT_USAGE
    return int(module.main(args))


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    args: argparse.Namespace | None = None
    try:
        # simulate and demo own their arguments (including --help): pass them through untouched.
        if args_list and args_list[0] in LOCAL_STACK_COMMANDS:
            return _local_stack_command(args_list[0], args_list[1:])
        args = build_parser().parse_args(args_list)
        _configure_logging(debug, getattr(args, "verbose", False))
        if args.command == "run":
            return command_run(args)
        handled = ops.dispatch(args)
        if handled is not None:
            return handled
        raise UsageError(f"unknown command {args.command!r}")
    except UsageError as exc:
        if args is None and args_list[:1] == ["run"] and "--json" in args_list:
            # The arguments did not parse, but the caller reads stdout as JSON: keep the promise.
            print(error_payload(InvalidInput(str(exc))))
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (InvalidInput, ConfigurationError) as exc:
        if debug:
            raise
        return _stopped(args, exc, EXIT_USAGE)
    except OmboriGridExportError as exc:
        if debug:
            raise
        return _stopped(args, exc, EXIT_FAILED)
    except KeyboardInterrupt:
        print("interrupted; nothing partial was left under a final key", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        from omborigrid_export.redact import describe_exception

        print(f"error: unexpected failure ({describe_exception(exc)}); rerun with --debug for details", file=sys.stderr)
        return EXIT_FAILED


def _stopped(args: argparse.Namespace | None, exc: BaseException, code: int) -> int:
    """A run that stopped before any export: one sentence on stderr, and the ``--json`` object when asked."""
    if args is not None and getattr(args, "command", None) == "run" and args.json:
        print(error_payload(exc))
    print(f"error: {exc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
