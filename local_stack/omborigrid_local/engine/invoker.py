"""Run the real handlers where moto would start a Docker container.

moto calls ``LambdaFunction._invoke_lambda(event)`` for every invocation (the Lambda API, Step Functions'
``lambda:invoke`` integration, SQS event source mappings) and expects ``(payload, errored, logs)`` back: the
response payload as text, whether it is a function error (moto then sets ``X-Amz-Function-Error``), and log
text. :class:`Invoker` replaces that method: it imports ``<CodeUri>/<module>.py`` by file path, gives it the
function's resolved environment, a Lambda-like context and the layer folders on ``sys.path``, and calls the
handler. An exception becomes the payload Lambda would send, ``{"errorType", "errorMessage", "stackTrace"}``,
so Step Functions retries and catches it by the exception's class name exactly as on AWS.

An invocation may also *crash* (:class:`InvocationCrashed`, raised by the fault harness right after a call went
through): the process dies as on a Lambda timeout, so whatever the handler would have returned is lost and the
caller gets the timeout's error payload (``Lambda.Unknown``), even if the handler swallowed the exception.

Invocations are serialised with one re-entrant lock: a process has one ``os.environ`` and the library caches
its settings per process, while on AWS each function has its own. Re-entrant because an invocation may cause
another one in the same thread (CreateJob's ``SendMessage`` runs StartExport through the queue's event source
mapping); the outer function's environment and caches are restored when the inner one returns.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TextIO

from .calls import CallRecorder
from .template import FunctionSource

logger = logging.getLogger(__name__)

#: What Step Functions reports for an unhandled Lambda failure such as a timeout (AWS docs, "Handle Lambda
#: service exceptions"); the ASL retries it.
TIMEOUT_ERROR_TYPE = "Lambda.Unknown"
#: Lambda's error type when the handler module cannot be imported.
IMPORT_ERROR_TYPE = "Runtime.ImportModuleError"

#: Variables of this process a handler must not see (it sees the rest of the process environment, moto's fake
#: credentials included): endpoints and profiles would send boto3 past moto, and the project's own settings
#: left in a developer's shell would hide a setting the template forgot. What the function's environment
#: sets is applied after this.
_STRIPPED_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_PROFILE", "OMBORIGRID_", "POWERTOOLS_")


class InvocationCrashed(BaseException):
    """The running invocation died (its side effects so far happened, its result is lost).

    A ``BaseException``, so the handler's ``except Exception`` blocks do not turn it into an answer.
    """


class LocalLambdaContext:
    """The parts of the Lambda context object handlers and Powertools read."""

    def __init__(self, function_name: str, function_arn: str, memory_mb: int, timeout: int, log_group: str) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function_arn
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = log_group
        self.log_stream_name = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self.timeout = timeout
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    @property
    def timed_out(self) -> bool:
        return time.monotonic() > self._deadline


@dataclass(slots=True)
class LocalFunction:
    """A deployed function (moto's name and ARN) and the code that runs for it."""

    source: FunctionSource
    name: str
    arn: str
    environment: dict[str, str]
    log_group: str
    module: ModuleType | None = None
    invocations: int = 0
    #: Powertools Parameters' providers (and their cached values) of this function's "process".
    parameter_providers: dict[str, Any] = field(default_factory=dict)


class OutputRouter(io.TextIOBase):
    """Sends what handlers print (Powertools logs and metrics) to a log sink instead of the console.

    Installed as ``sys.stdout``/``sys.stderr`` only when the stack was asked to collect function output. While a
    handler runs, writes from the invoking thread and from threads it started (transfer workers) go to the sink;
    writes from the console thread (the one that built the stack, e.g. the demo's progress lines) go through.
    """

    def __init__(self, target: TextIO, invoker: Invoker) -> None:
        self._target = target
        self._invoker = invoker

    def write(self, text: str) -> int:
        sink = self._invoker.sink_for_current_thread()
        if sink is not None:
            sink.write(text)
            return len(text)
        return self._target.write(text)

    def flush(self) -> None:
        self._target.flush()

    def isatty(self) -> bool:
        return self._target.isatty()

    def fileno(self) -> int:
        return self._target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._target, "encoding", "utf-8")

    @property
    def target(self) -> TextIO:
        return self._target


class Invoker:
    """Registry of local functions plus the ``_invoke_lambda`` patch that runs them."""

    _lock = threading.RLock()

    def __init__(
        self,
        *,
        console_thread: threading.Thread | None = None,
        log_sink: Callable[[str, str], None] | None = None,
        recorder: CallRecorder | None = None,
    ) -> None:
        self._functions: dict[str, LocalFunction] = {}
        self._recorder = recorder
        self._console_thread = console_thread
        self._log_sink = log_sink
        self._active: tuple[threading.Thread, io.StringIO] | None = None
        self._original: Callable[..., Any] | None = None
        self._routers: list[tuple[str, OutputRouter]] = []
        self._added_paths: list[str] = []
        self._depth = 0
        #: True once the innermost running invocation crashed (see :meth:`crash`).
        self.crashed = False

    def crash(self, why: str) -> InvocationCrashed:
        """Mark the running invocation dead; returns the exception to raise where it dies."""
        self.crashed = True
        return InvocationCrashed(why)

    # ----------------------------------------------------------------- registry
    def register(self, function: LocalFunction) -> None:
        self._functions[function.name] = function
        self._functions[function.arn] = function

    def get(self, name_or_arn: str) -> LocalFunction | None:
        return self._functions.get(name_or_arn)

    @property
    def functions(self) -> list[LocalFunction]:
        return list({id(f): f for f in self._functions.values()}.values())

    # ----------------------------------------------------------------- patch lifecycle
    def install(self) -> None:
        from moto.awslambda.models import LambdaFunction

        invoker = self
        original = LambdaFunction._invoke_lambda
        self._original = original

        def _invoke_lambda(fn: Any, event: Any = None) -> tuple[str, bool, str]:
            local = invoker.get(fn.function_name) or invoker.get(fn.function_arn)
            if local is None:
                return original(fn, event)
            return invoker.run(local, event)

        LambdaFunction._invoke_lambda = _invoke_lambda  # type: ignore[method-assign,assignment]
        for function in self.functions:
            for layer_dir in function.source.layer_dirs:
                path = str(layer_dir)
                if path not in sys.path:
                    sys.path.insert(0, path)
                    self._added_paths.append(path)
        if self._log_sink is not None:
            for stream_name in ("stdout", "stderr"):
                router = OutputRouter(getattr(sys, stream_name), self)
                setattr(sys, stream_name, router)
                self._routers.append((stream_name, router))

    def uninstall(self) -> None:
        from moto.awslambda.models import LambdaFunction

        if self._original is not None:
            LambdaFunction._invoke_lambda = self._original  # type: ignore[method-assign]
            self._original = None
        for stream_name, router in reversed(self._routers):
            if getattr(sys, stream_name) is router:
                setattr(sys, stream_name, router.target)
        self._routers.clear()
        for path in self._added_paths:
            if path in sys.path:
                sys.path.remove(path)
        self._added_paths.clear()

    def sink_for_current_thread(self) -> io.StringIO | None:
        active = self._active
        if active is None:
            return None
        thread, buffer = active
        current = threading.current_thread()
        if current is thread or current is not self._console_thread:
            return buffer
        return None

    # ----------------------------------------------------------------- invocation
    def run(self, function: LocalFunction, event: Any) -> tuple[str, bool, str]:
        """Call the handler like Lambda would; returns moto's ``(payload, errored, logs)``."""
        with self._lock:
            previous = self._active
            buffer = io.StringIO()
            if self._log_sink is not None:
                self._active = (threading.current_thread(), buffer)
            context = LocalLambdaContext(
                function.name, function.arn, function.source.memory_mb, function.source.timeout, function.log_group
            )
            function.invocations += 1
            started = time.monotonic()
            outer_log_keys = _snapshot_log_keys() if self._depth else []
            outer_crashed, self.crashed = self.crashed, False
            self._depth += 1
            try:
                others = {key for f in self.functions for key in f.environment} - set(function.environment)
                with (
                    self._environment(function.environment, strip=others),
                    self._as_principal(function),
                    _own_parameter_cache(function),
                ):
                    _reset_runtime()
                    try:
                        handler = self._handler(function)
                    except Exception as exc:  # noqa: BLE001 - Lambda reports any import failure the same way
                        payload, errored = json.dumps(_import_error_payload(function, exc)), True
                    else:
                        try:
                            result = handler(event if event is not None else {}, context)
                            payload, errored = json.dumps(result), False
                        except Exception as exc:  # noqa: BLE001 - whatever the handler raises is the result, as on Lambda
                            payload, errored = json.dumps(_error_payload(exc)), True
                        except InvocationCrashed:
                            self.crashed = True
                    if context.timed_out or self.crashed:
                        seconds = time.monotonic() - started
                        payload = json.dumps(
                            {
                                "errorType": TIMEOUT_ERROR_TYPE,
                                "errorMessage": f"{context.aws_request_id} Task timed out after {seconds:.2f} seconds "
                                f"(Timeout {function.source.timeout} s)",
                            }
                        )
                        errored = True
            finally:
                self._depth -= 1
                self.crashed = outer_crashed
                _reset_runtime()
                _restore_log_keys(outer_log_keys)
                self._active = previous
            logs = buffer.getvalue()
            if self._log_sink is not None and logs:
                self._log_sink(function.source.logical_id, logs)
            logger.debug(
                "%s returned %s in %.2fs",
                function.source.logical_id,
                "an error" if errored else "OK",
                time.monotonic() - started,
            )
            return payload, errored, logs

    def _as_principal(self, function: LocalFunction) -> AbstractContextManager[None]:
        """The AWS calls the handler makes in this thread are the function's (see :mod:`.calls`)."""
        if self._recorder is None:
            return nullcontext()
        return self._recorder.running(function.source.logical_id)

    def _handler(self, function: LocalFunction) -> Callable[[Any, Any], Any]:
        if function.module is None:
            path = function.source.module_file
            module_name = f"omborigrid_local_fn_{function.source.logical_id}_{uuid.uuid4().hex[:8]}"
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(module_name, None)
                raise
            function.module = module
        handler: Callable[[Any, Any], Any] = getattr(function.module, function.source.handler_name)
        return handler

    @contextmanager
    def _environment(self, variables: dict[str, str], *, strip: set[str]) -> Iterator[None]:
        """Set exactly these variables, remove the stripped ones (and ``strip``: other functions' settings),
        restoring every change afterwards.

        Changes are made key by key, never by clearing ``os.environ``, because other threads (moto's Step
        Functions workers) read it concurrently.
        """
        saved: dict[str, str | None] = {}
        for key in [k for k in os.environ if k.startswith(_STRIPPED_VARIABLES) or k in strip]:
            saved[key] = os.environ.pop(key, None)
        for key, value in variables.items():
            if key not in saved:
                saved[key] = os.environ.get(key)
            os.environ[key] = value
        try:
            yield
        finally:
            for key, previous in saved.items():
                if previous is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = previous


@contextmanager
def _own_parameter_cache(function: LocalFunction) -> Iterator[None]:
    """Give the function its own Powertools Parameters cache, as its own process on AWS would have.

    One shared cache would let a secret read by one function serve another, which hides calls (and the
    permissions they need) of the second from the tests.
    """
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    outer = dict(DEFAULT_PROVIDERS)
    DEFAULT_PROVIDERS.clear()
    DEFAULT_PROVIDERS.update(function.parameter_providers)
    try:
        yield
    finally:
        function.parameter_providers = dict(DEFAULT_PROVIDERS)
        DEFAULT_PROVIDERS.clear()
        DEFAULT_PROVIDERS.update(outer)


def _error_payload(exc: BaseException) -> dict[str, Any]:
    return {
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": [line.rstrip("\n") for line in traceback.format_list(traceback.extract_tb(exc.__traceback__))],
    }


def _import_error_payload(function: LocalFunction, exc: BaseException) -> dict[str, Any]:
    module = function.source.handler.rpartition(".")[0]
    return {
        "errorType": IMPORT_ERROR_TYPE,
        "errorMessage": f"Unable to import module '{module}': {type(exc).__name__}: {exc}",
        "stackTrace": [],
    }


def _reset_runtime() -> None:
    """Forget the library's per-process caches so the next handler builds them from its own environment."""
    runtime = sys.modules.get("omborigrid_lambda.runtime")
    if runtime is not None:
        runtime.reset()


def _snapshot_log_keys() -> list[tuple[Any, dict[str, Any]]]:
    """The keys of every structured (Powertools) log formatter, before a nested invocation changes them.

    Functions with the same service name share one formatter in a process, so an invocation nested in another
    (CreateJob → SendMessage → StartExport) would leave its context keys on the outer function's log lines.
    """
    saved: list[tuple[Any, dict[str, Any]]] = []
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for candidate in loggers:
        for log_handler in getattr(candidate, "handlers", []):
            keys = getattr(log_handler.formatter, "log_format", None)
            if isinstance(keys, dict):
                saved.append((log_handler.formatter, dict(keys)))
    return saved


def _restore_log_keys(saved: list[tuple[Any, dict[str, Any]]]) -> None:
    for formatter, keys in saved:
        formatter.log_format.clear()
        formatter.log_format.update(keys)
