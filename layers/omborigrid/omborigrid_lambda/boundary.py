"""The edge of every handler: nothing leaves a function except one of the library's typed errors.

Lambda reports an exception by its class name, and Step Functions retries and catches by that name; an
exception nobody translated (a ``KeyError``, a library's own error) would reach the state machine as an
unknown name with Lambda's error JSON, stack trace included, and from there the "Export Failed" event.
:func:`typed_failures` turns such an exception into :class:`UnexpectedFailure` with a secret-free sentence,
and logs its traceback (frames only, never the message of a library exception, which may quote a URL).
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger

from omborigrid_export.errors import OmboriGridExportError, UnexpectedFailure
from omborigrid_export.redact import describe_exception

from . import runtime

logger = Logger(child=True)

R = TypeVar("R")


def typed_failures(handler: Callable[[Any, Any], R]) -> Callable[[Any, Any], R]:
    @functools.wraps(handler)
    def wrapper(event: Any, context: Any) -> R:
        runtime.begin_invocation(context)
        try:
            return handler(event, context)
        except OmboriGridExportError:
            raise
        except Exception as exc:  # noqa: BLE001 - the boundary translates whatever nobody translated before
            description = describe_exception(exc)
            frames = traceback.format_list(traceback.extract_tb(exc.__traceback__))
            logger.error("unexpected failure", extra={"error": description, "frames": frames})
            raise UnexpectedFailure(
                f"The function failed unexpectedly ({description}); its log has the details."
            ) from None

    return wrapper
