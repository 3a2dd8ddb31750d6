"""A logging filter that scrubs every record before any handler writes it.

Our own messages name hosts, never URLs; third-party libraries are not so careful: urllib3 logs a WARNING
with the whole URL (query included) and a traceback when a response header is malformed, botocore at
DEBUG prints request headers (``Authorization``, ``X-Amz-Security-Token``) and presigned URLs. A handler
filter sees every record that reaches the handler, from whichever logger, so installing it on the
handlers we create is enough to cover them all. The formatted message, the traceback text, the stack
text and any extra string attributes are scrubbed; control characters and newlines in the message become
spaces, so a server's words cannot forge log lines or rewrite a terminal.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterable
from types import TracebackType

from .redact import scrub, scrub_tree, strip_controls

#: Attributes every LogRecord has; anything else on a record came from ``extra=`` and is scrubbed too.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None))) | {
    "message",
    "asctime",
}


class RedactingFilter(logging.Filter):
    """Scrubs msg/args, exception and stack text, and ``extra`` strings of every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, (dict, list)) and not record.args:
            record.msg = scrub_tree(record.msg)  # structured messages (Powertools) stay structured
        else:
            record.msg = strip_controls(scrub(_message_of(record)))
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _STANDARD_ATTRIBUTES and isinstance(value, (str, dict, list, tuple)):
                setattr(record, name, scrub_tree(value))
        return True


def _message_of(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except (TypeError, ValueError):  # a bad format string: keep what can be kept
        return f"{record.msg!s} {record.args!r}"


def install_on(handlers: Iterable[logging.Handler]) -> None:
    """Add one :class:`RedactingFilter` to each handler that has none yet."""
    for handler in handlers:
        if not any(isinstance(existing, RedactingFilter) for existing in handler.filters):
            handler.addFilter(RedactingFilter())


def install_on_root() -> None:
    """Cover the root logger's handlers and logging's last-resort handler (used when there are none)."""
    install_on(logging.getLogger().handlers)
    if logging.lastResort is not None:
        install_on([logging.lastResort])


def scrubbed_excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    """A ``sys.excepthook`` printing an uncaught exception's traceback scrubbed (the CLI's ``--debug`` re-raises)."""
    sys.stderr.write(strip_controls(scrub("".join(traceback.format_exception(kind, value, tb))), keep_newlines=True))
