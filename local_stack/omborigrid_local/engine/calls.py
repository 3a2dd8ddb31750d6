"""Every AWS call the stack's principals make, recorded while the local stack runs (for the least-privilege check).

A botocore hook on every client built while the stack runs (``ClientCreator.create_client`` is wrapped, so the
clients of boto3's default session, of Powertools' own sessions and of moto's Step Functions interpreter are all
covered) records each call's operation, its API parameters (after every other hook, ExpectedBucketOwner
included), whether it went over TLS, and what came back (HTTP status, error code, the parsed response).

Who made a call (the principal whose role AWS would check) is decided in this order:

1. moto's Step Functions interpreter builds its clients with the access key ``ak`` (``boto_client_for``): the
   Lambda invocations and service integrations of an execution are the state machine role's;
2. a function whose handler runs in the calling thread (the invoker pushes it for the duration of the call);
3. the function that was running when the client was built (a transfer's worker threads use the S3 client the
   handler built);
4. otherwise the engine or the test itself (``LOCAL``), which the check ignores.

An :class:`Interceptor` (the fault harness, :mod:`.faults`) may be attached: it sees each call as it is recorded
and may answer it instead of the service (``before-call``), raise after it went through (``after-call``), or ask
botocore to send it again although it succeeded (``needs-retry``: the answer was lost on the way back).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

#: The principal of calls made by the engine or the test, not by anything deployed.
LOCAL = "local"
#: The access key moto's Step Functions interpreter signs its service integrations with.
STEP_FUNCTIONS_ACCESS_KEY = "ak"

_PARAMS_KEY = "omborigrid_recorded_params"
_CALL_KEY = "omborigrid_recorded_call"


@dataclass(slots=True)
class Call:
    """One AWS API call: who, what, with which parameters, and what came back."""

    principal: str
    service: str
    operation: str
    params: dict[str, Any]
    secure_transport: bool
    status: int | None = None
    error_code: str | None = None
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.principal} {self.service}:{self.operation}"


class Interceptor(Protocol):
    """What may change a recorded call's course (see the module docstring)."""

    def before_call(self, call: Call) -> tuple[Any, dict[str, Any]] | None:
        """A ``(http_response, parsed)`` pair to answer instead of the service, or None to send the call."""

    def after_call(self, call: Call) -> None:
        """Runs once the call's answer is parsed; may raise (the caller sees that instead of the answer)."""

    def resend(self, call: Call, attempts: int) -> bool:
        """True to make botocore send the call again although this attempt got an answer."""


class CallRecorder:
    """Installs the hooks; ``calls`` holds what was recorded, oldest first; ``interceptor`` (optional) may
    change a call's course."""

    def __init__(self) -> None:
        self.interceptor: Interceptor | None = None
        #: Whose role the Step Functions interpreter's calls use (the stack's state machine, set once it is known).
        self.state_machine = "state-machine"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._creators: dict[int, str] = {}
        self._original: Any = None
        self.calls: list[Call] = []

    # ----------------------------------------------------------------- who runs
    @contextmanager
    def running(self, principal: str) -> Iterator[None]:
        """Calls made in this thread while the block runs are ``principal``'s (nests: the innermost wins)."""
        stack: list[str] = self._thread_stack()
        stack.append(principal)
        try:
            yield
        finally:
            stack.pop()

    def _thread_stack(self) -> list[str]:
        stack: list[str] | None = getattr(self._local, "stack", None)
        if stack is None:
            stack = []
            self._local.stack = stack
        return stack

    def principal_of_thread(self) -> str:
        """Whose calls this thread makes now (the innermost running function), else ``LOCAL``."""
        return self._current() or LOCAL

    def _current(self) -> str | None:
        stack = self._thread_stack()
        return stack[-1] if stack else None

    # ----------------------------------------------------------------- patch lifecycle
    def install(self) -> None:
        from botocore.client import ClientCreator

        recorder = self
        original = ClientCreator.create_client
        self._original = original

        def create_client(creator: Any, *args: Any, **kwargs: Any) -> Any:
            client = original(creator, *args, **kwargs)
            recorder.watch(client)
            return client

        ClientCreator.create_client = create_client  # type: ignore[method-assign,assignment]

    def uninstall(self) -> None:
        from botocore.client import ClientCreator

        if self._original is not None:
            ClientCreator.create_client = self._original  # type: ignore[method-assign]
            self._original = None

    def watch(self, client: Any) -> None:
        """Record the calls of one client (clients built before :meth:`install` are passed here)."""
        with self._lock:
            self._creators[id(client._request_signer)] = self._current() or LOCAL
        events = client.meta.events
        events.register("before-parameter-build", self._keep_params, unique_id=f"omborigrid-params-{id(self)}")
        events.register("before-call", self._before_call, unique_id=f"omborigrid-before-{id(self)}")
        events.register("after-call", self._after_call, unique_id=f"omborigrid-after-{id(self)}")
        events.register("needs-retry", self._needs_retry, unique_id=f"omborigrid-retry-{id(self)}")

    # ----------------------------------------------------------------- hooks
    @staticmethod
    def _keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[_PARAMS_KEY] = params  # the same dict later hooks complete; read when the call is sent

    def _before_call(
        self, model: Any, params: dict[str, Any], request_signer: Any, context: dict[str, Any], **_: Any
    ) -> tuple[Any, dict[str, Any]] | None:
        credentials = getattr(request_signer, "_credentials", None)
        if getattr(credentials, "access_key", None) == STEP_FUNCTIONS_ACCESS_KEY:
            principal = self.state_machine
        else:
            principal = self._current() or self._creators.get(id(request_signer), LOCAL)
        call = Call(
            principal=principal,
            service=str(model.service_model.endpoint_prefix),
            operation=str(model.name),
            params=dict(context.get(_PARAMS_KEY) or {}),
            secure_transport=str(params.get("url", "")).startswith("https://"),
        )
        context[_CALL_KEY] = call
        with self._lock:
            self.calls.append(call)
        interceptor = self.interceptor
        return interceptor.before_call(call) if interceptor is not None else None

    def _after_call(self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        call: Call | None = context.get(_CALL_KEY)
        if call is None:
            return
        call.status = int(getattr(http_response, "status_code", 0) or 0)
        call.error_code = (parsed.get("Error") or {}).get("Code") if call.status >= 300 else None
        call.response = {k: v for k, v in parsed.items() if k not in ("Body", "ResponseMetadata")}
        interceptor = self.interceptor
        if interceptor is not None:
            interceptor.after_call(call)

    def _needs_retry(
        self, attempts: int, request_dict: dict[str, Any], caught_exception: Any = None, **_: Any
    ) -> float | None:
        """Another hook's (botocore's own retry handler's) answer wins; this one only asks for a resend of an
        attempt that got an answer."""
        interceptor = self.interceptor
        call: Call | None = (request_dict.get("context") or {}).get(_CALL_KEY)
        if interceptor is None or call is None or caught_exception is not None:
            return None
        return 0.0 if interceptor.resend(call, attempts) else None

    # ----------------------------------------------------------------- reading
    def since(self, index: int) -> list[Call]:
        with self._lock:
            return list(self.calls[index:])

    def __len__(self) -> int:
        with self._lock:
            return len(self.calls)
