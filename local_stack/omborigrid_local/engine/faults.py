"""Fault injection on the local engine: every AWS call and API/download request of a run is a *site*; a plan
picks sites and a fault kind for each, and the injector plays it where the pipeline would meet it on AWS.

Where each kind is played, and what it stands for:

* AWS calls (every client the stack's functions and state machine build; :class:`.calls.CallRecorder`'s hooks):

  - ``server_error`` / ``throttle`` / ``conflict_409`` / ``transaction_canceled``: the call is answered with the
    service's error instead of being sent (``before-call``), as the SDK returns it once its own retries are spent:
    S3 ``InternalError`` 500 and ``SlowDown`` 503, DynamoDB ``InternalServerError`` and
    ``ProvisionedThroughputExceededException`` / ``ThrottlingException``, ``TransactionCanceledException``
    (``TransactionConflict``), SQS/EventBridge/Step Functions ``InternalFailure`` 500 and their throttling
    errors, S3 ``ConditionalRequestConflict`` 409 on a conditional write.
  - ``lost_response``: the call went through, its answer was lost, and the SDK sends it again (``needs-retry``
    asks for a resend of a successful attempt): the retry meets the first attempt's side effect (a completed
    upload answers ``NoSuchUpload``, a conditional put ``PreconditionFailed``, a message is sent twice).
  - ``error_body_200``: S3 answered ``CompleteMultipartUpload`` with a 200 whose body is an error; botocore turns
    that into a 500 and retries (the same resend, the first attempt having gone through).
  - ``read_timeout``: the call went through and every answer was lost: the caller sees ``ReadTimeoutError``.
  - ``crash_after``: the call went through, then the invocation dies as on a Lambda timeout
    (:class:`.invoker.InvocationCrashed`): the caller (Step Functions, the SQS event source, an asynchronous
    invoke) gets ``Lambda.Unknown``; any later AWS call of that invocation dies too (a dead process makes none).

* API and download requests (``requests.Session.send``, which the layer's pinned sessions use), played by the
  simulator over real HTTP (its knob is armed right before the request is sent): ``api_503`` and ``api_429``
  (``fail_next``), ``api_lost_create`` (the POST creates the job, the connection drops before the answer:
  ``fail_next`` ``after_create`` + ``close``), ``garbled_status`` (a 200 with half the job JSON),
  ``dropped_download`` (``drop_after_bytes``), ``expired_url`` (``expire_next_downloads``), and ``crash_after``
  (the answer came, then the invocation dies: after the POST that created the job, the job exists and nobody
  knows its id).

A site's id names its principal, service, operation, the scenario's alias of the tenant the call is about
(``t0``, ``t1``...; tenants are random per run) and its ordinal among the calls of that principal, operation and
tenant, e.g. ``DownloadFunction:s3.CompleteMultipartUpload@t0#1``. Random plans decide per site from a hash
of the seed and the site id, so a seed picks the same sites whatever order the threads interleave in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from .calls import LOCAL, Call

if TYPE_CHECKING:
    from .stack import LocalStack

logger = logging.getLogger(__name__)


class FaultKind(StrEnum):
    SERVER_ERROR = "server_error"
    THROTTLE = "throttle"
    CONFLICT_409 = "conflict_409"
    TRANSACTION_CANCELED = "transaction_canceled"
    LOST_RESPONSE = "lost_response"
    ERROR_BODY_200 = "error_body_200"
    READ_TIMEOUT = "read_timeout"
    CRASH_AFTER = "crash_after"
    API_503 = "api_503"
    API_429 = "api_429"
    API_LOST_CREATE = "api_lost_create"
    GARBLED_STATUS = "garbled_status"
    DROPPED_DOWNLOAD = "dropped_download"
    EXPIRED_URL = "expired_url"


#: Kinds answered instead of the service: (HTTP status, error code) per service.
_ANSWERS: dict[FaultKind, dict[str, tuple[int, str]]] = {
    FaultKind.SERVER_ERROR: {
        "s3": (500, "InternalError"),
        "dynamodb": (500, "InternalServerError"),
        "secretsmanager": (500, "InternalServiceError"),
        "*": (500, "InternalFailure"),
    },
    FaultKind.THROTTLE: {
        "s3": (503, "SlowDown"),
        "dynamodb": (400, "ProvisionedThroughputExceededException"),
        "sqs": (400, "RequestThrottled"),
        "*": (400, "ThrottlingException"),
    },
    FaultKind.CONFLICT_409: {"s3": (409, "ConditionalRequestConflict")},
    FaultKind.TRANSACTION_CANCELED: {"dynamodb": (400, "TransactionCanceledException")},
}
_RESENT = frozenset({FaultKind.LOST_RESPONSE, FaultKind.ERROR_BODY_200})
#: DynamoDB's other throttling code (for read-heavy calls AWS answers this one).
_DYNAMODB_READS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem"})
_CONDITIONAL_S3_WRITES = frozenset({"PutObject", "CompleteMultipartUpload", "CopyObject"})
#: What the functions call the API with, and how a request is named.
API_SERVICE = "api"
DOWNLOAD_SERVICE = "download"
_JOB_PATH = "/api/analytics-export-job"
_SIMULATOR_KNOBS: dict[FaultKind, dict[str, Any]] = {
    FaultKind.API_503: {"fail_next": [{"status": 503, "retry_after": 1, "count": 1}]},
    FaultKind.API_429: {"fail_next": [{"status": 429, "retry_after": 1, "count": 1}]},
    FaultKind.API_LOST_CREATE: {"fail_next": [{"after_create": True, "close": True, "count": 1, "methods": ["POST"]}]},
    FaultKind.GARBLED_STATUS: {"garbled_status": 1},
    FaultKind.DROPPED_DOWNLOAD: {"drop_after_bytes": 1500, "drop_count": 1},
    FaultKind.EXPIRED_URL: {"expire_next_downloads": 1},
}


@dataclass(frozen=True, slots=True, order=True)
class Site:
    """One call or request of a run (see the module docstring for the id)."""

    principal: str
    service: str
    operation: str
    tenant: str
    ordinal: int

    @property
    def id(self) -> str:
        return f"{self.principal}:{self.service}.{self.operation}@{self.tenant}#{self.ordinal}"

    @classmethod
    def parse(cls, site_id: str) -> Site:
        """The site of an :attr:`id`."""
        head, _, ordinal = site_id.rpartition("#")
        principal, _, rest = head.partition(":")
        call, _, tenant = rest.rpartition("@")
        service, _, operation = call.partition(".")
        return cls(principal, service, operation, tenant, int(ordinal))

    @property
    def of_function(self) -> bool:
        return self.principal.endswith("Function")


def kinds_for(site: Site) -> tuple[FaultKind, ...]:
    """The fault kinds that can happen at a site."""
    if site.service == API_SERVICE:
        kinds = [FaultKind.API_503, FaultKind.API_429, FaultKind.CRASH_AFTER]
        if site.operation == "CreateJob":
            kinds.append(FaultKind.API_LOST_CREATE)
        else:
            kinds.append(FaultKind.GARBLED_STATUS)
        return tuple(kinds)
    if site.service == DOWNLOAD_SERVICE:
        return (FaultKind.DROPPED_DOWNLOAD, FaultKind.EXPIRED_URL)
    kinds = [FaultKind.SERVER_ERROR, FaultKind.THROTTLE, FaultKind.LOST_RESPONSE, FaultKind.READ_TIMEOUT]
    if site.service == "s3" and site.operation in _CONDITIONAL_S3_WRITES:
        kinds.append(FaultKind.CONFLICT_409)
    if site.service == "s3" and site.operation == "CompleteMultipartUpload":
        kinds.append(FaultKind.ERROR_BODY_200)
    if site.service == "dynamodb" and site.operation.startswith("Transact"):
        kinds.append(FaultKind.TRANSACTION_CANCELED)
    if site.of_function:
        kinds.append(FaultKind.CRASH_AFTER)
    return tuple(kinds)


# ----------------------------------------------------------------------------------------------- plans
@dataclass(frozen=True, slots=True)
class Injection:
    site_id: str
    kind: FaultKind

    @property
    def test_id(self) -> str:
        return f"{self.site_id}-{self.kind}"


class Plan:
    """Which sites get which fault: :meth:`at` one site, :meth:`random` a rate of them, :meth:`none` (baseline)."""

    def __init__(self, injections: Sequence[Injection] = (), *, seed: int | None = None, rate: float = 0.0) -> None:
        self._by_site = {i.site_id: i.kind for i in injections}
        self.seed = seed
        self.rate = rate

    @classmethod
    def none(cls) -> Plan:
        return cls()

    @classmethod
    def at(cls, site_id: str, kind: FaultKind) -> Plan:
        return cls([Injection(site_id, kind)])

    @classmethod
    def random(cls, seed: int, rate: float) -> Plan:
        if not 0 <= rate <= 1:
            raise ValueError(f"rate must be between 0 and 1, not {rate}")
        return cls(seed=seed, rate=rate)

    def decide(self, site: Site) -> FaultKind | None:
        if site.id in self._by_site:
            return self._by_site[site.id]
        if self.seed is None or not self.rate:
            return None
        digest = hashlib.sha256(f"{self.seed}/{site.id}".encode()).digest()
        if int.from_bytes(digest[:8], "big") / 2**64 >= self.rate:
            return None
        kinds = kinds_for(site)
        return kinds[int.from_bytes(digest[8:12], "big") % len(kinds)]


# ----------------------------------------------------------------------------------------------- the injector
@dataclass(slots=True)
class ApiRequest:
    """An API or download request a function made, and what it was about."""

    site: Site
    method: str
    job_id: str | None = None
    #: ``tenant/from/to`` of a create.
    range_key: str | None = None
    #: The query values of a download URL (the presigned part no output may carry).
    query_values: tuple[str, ...] = ()


@dataclass(slots=True)
class Fired:
    site: Site
    kind: FaultKind


@dataclass(slots=True)
class Record:
    """What a run did: every site in order, the API requests, and the faults that fired."""

    sites: list[Site] = field(default_factory=list)
    requests: list[ApiRequest] = field(default_factory=list)
    fired: list[Fired] = field(default_factory=list)

    def fired_by_kind(self) -> Counter[str]:
        return Counter(str(f.kind) for f in self.fired)

    def downloaded_jobs(self) -> set[str]:
        return {r.job_id for r in self.requests if r.site.service == DOWNLOAD_SERVICE and r.job_id}


class FaultInjector:
    """Plays a :class:`Plan` on a running :class:`LocalStack` (and its simulator) while the block of
    :meth:`armed` runs; :attr:`record` says what happened. ``tenants``: the scenario's tenants, in alias order."""

    def __init__(self, stack: LocalStack, simulator: Any, tenants: Sequence[str], plan: Plan) -> None:
        self._stack = stack
        self._simulator = simulator
        self._aliases = {tenant: f"t{n}" for n, tenant in enumerate(tenants)}
        self._pattern = re.compile("|".join(map(re.escape, tenants))) if tenants else None
        self.plan = plan
        self.record = Record()
        self._lock = threading.Lock()
        self._ordinals: Counter[tuple[str, str, str, str]] = Counter()
        self._calls: dict[int, tuple[Site, FaultKind | None]] = {}
        self._job_tenants: dict[str, str] = {}
        self._original_send: Any = None

    @contextmanager
    def armed(self) -> Iterator[Record]:
        import requests

        recorder = self._stack.recorder
        if recorder.interceptor is not None:
            raise RuntimeError("a fault injector is armed already")
        recorder.interceptor = self
        self._original_send = requests.Session.send
        injector = self

        def send(session: Any, request: Any, **kwargs: Any) -> Any:
            return injector._send(session, request, **kwargs)

        requests.Session.send = send  # type: ignore[method-assign,assignment]
        try:
            yield self.record
        finally:
            requests.Session.send = self._original_send  # type: ignore[method-assign]
            recorder.interceptor = None

    # ------------------------------------------------------------------ sites
    def _site(self, principal: str, service: str, operation: str, about: str) -> Site:
        tenant = "-"
        if self._pattern is not None:
            found = self._pattern.search(about)
            if found is not None:
                tenant = self._aliases[found.group(0)]
        with self._lock:
            key = (principal, service, operation, tenant)
            self._ordinals[key] += 1
            site = Site(principal, service, operation, tenant, self._ordinals[key])
            self.record.sites.append(site)
        return site

    def _fire(self, site: Site, kind: FaultKind) -> None:
        logger.info("fault %s at %s", kind, site.id)
        with self._lock:
            self.record.fired.append(Fired(site, kind))

    def _dead(self) -> bool:
        invoker = self._stack.invoker
        return invoker is not None and invoker.crashed

    def _crash(self, site: Site) -> BaseException:
        invoker = self._stack.invoker
        assert invoker is not None
        return invoker.crash(f"the invocation died right after {site.id}")

    # ------------------------------------------------------------------ AWS calls (calls.Interceptor)
    def before_call(self, call: Call) -> tuple[Any, dict[str, Any]] | None:
        if call.principal == LOCAL:
            return None
        if self._dead() and call.principal.endswith("Function"):
            raise self._crash(Site(call.principal, call.service, call.operation, "-", 0))
        site = self._site(call.principal, call.service, call.operation, json.dumps(call.params, default=str))
        kind = self.plan.decide(site)
        if kind is not None and kind not in kinds_for(site):
            kind = None
        with self._lock:
            self._calls[id(call)] = (site, kind)
        if kind is None or kind not in _ANSWERS:
            return None
        self._fire(site, kind)
        return _error_answer(kind, call)

    def after_call(self, call: Call) -> None:
        with self._lock:
            site, kind = self._calls.pop(id(call), (None, None))
        if site is None or kind is None:
            return
        if kind is FaultKind.CRASH_AFTER and (call.status or 0) < 300:
            self._fire(site, kind)
            raise self._crash(site)
        if kind is FaultKind.READ_TIMEOUT and (call.status or 0) < 300:
            from botocore.exceptions import ReadTimeoutError

            self._fire(site, kind)
            raise ReadTimeoutError(endpoint_url=f"https://{call.service}.amazonaws.com/")

    def resend(self, call: Call, attempts: int) -> bool:
        with self._lock:
            site, kind = self._calls.get(id(call), (None, None))
        if site is None or kind not in _RESENT or attempts != 1:
            return False
        self._fire(site, kind)
        return True

    # ------------------------------------------------------------------ API and download requests
    def _send(self, session: Any, request: Any, **kwargs: Any) -> Any:
        principal = self._stack.recorder.principal_of_thread()
        if principal == LOCAL:
            return self._original_send(session, request, **kwargs)
        if self._dead():
            raise self._crash(Site(principal, "api", "request", "-", 0))
        parts = urlsplit(str(request.url))
        api = self._describe(request, parts.path, parts.query)
        site = self._site(principal, api.site.service, api.site.operation, api.site.tenant)
        api.site = site
        with self._lock:
            self.record.requests.append(api)
        kind = self.plan.decide(site)
        if kind is not None and kind not in kinds_for(site):
            kind = None
        if kind in _SIMULATOR_KNOBS:
            assert kind is not None
            knobs = json.loads(json.dumps(_SIMULATOR_KNOBS[kind]))
            for spec in knobs.get("fail_next", []):
                spec.setdefault("methods", [request.method])
            self._simulator.configure(**knobs)
            self._fire(site, kind)
        response = self._original_send(session, request, **kwargs)
        if kind is FaultKind.CRASH_AFTER:
            self._fire(site, kind)
            raise self._crash(site)
        return response

    def _describe(self, request: Any, path: str, query: str) -> ApiRequest:
        """What a request is (its site's service and operation, the tenant it is about as its ``tenant``)."""
        method = str(request.method)
        if path.rstrip("/") == _JOB_PATH and method == "POST":
            body = _json(request.body)
            range_key = f"{body.get('tenantId')}/{body.get('dataDateFrom')}/{body.get('dataDateTo')}"
            return ApiRequest(Site("", API_SERVICE, "CreateJob", str(body.get("tenantId")), 0), method, None, range_key)
        if path.startswith(_JOB_PATH + "/"):
            job_id = path[len(_JOB_PATH) + 1 :].strip("/")
            return ApiRequest(Site("", API_SERVICE, "GetJob", self._tenant_of(job_id), 0), method, job_id)
        if path.startswith("/download/"):
            job_id = path.split("/")[2]
            values = tuple(v for _, v in parse_qsl(query))
            tenant = self._tenant_of(job_id)
            return ApiRequest(Site("", DOWNLOAD_SERVICE, method, tenant, 0), method, job_id, None, values)
        return ApiRequest(Site("", API_SERVICE, f"{method} {path}", "", 0), method)

    def _tenant_of(self, job_id: str) -> str:
        """The tenant a job belongs to (status reads and downloads name the job only), asked of the simulator
        (reading the answer to the create would consume the stream the client reads)."""
        if job_id not in self._job_tenants:
            self._job_tenants.update({str(j["id"]): str(j.get("tenantId", "")) for j in self._simulator.jobs()})
        return self._job_tenants.get(job_id, "")


def _json(body: Any) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class _Raw:
    """The body of an answer the injector makes up (botocore reads it through ``stream()``)."""

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield b""


def _error_answer(kind: FaultKind, call: Call) -> tuple[Any, dict[str, Any]]:
    from botocore.awsrequest import AWSResponse, HTTPHeaders

    answers = _ANSWERS[kind]
    status, code = answers.get(call.service, answers.get("*", (500, "InternalFailure")))
    if kind is FaultKind.THROTTLE and call.service == "dynamodb" and call.operation not in _DYNAMODB_READS:
        code = "ThrottlingException"
    parsed: dict[str, Any] = {
        "Error": {"Code": code, "Message": f"Injected {kind} on {call.service}.{call.operation}."},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": 0},
    }
    if kind is FaultKind.TRANSACTION_CANCELED:
        items = call.params.get("TransactItems", [])
        parsed["CancellationReasons"] = [{"Code": "TransactionConflict"}] + [{"Code": "None"}] * (len(items) - 1)
        parsed["Error"]["Message"] = "Transaction cancelled, please refer cancellation reasons for specific reasons"
    return AWSResponse(f"https://{call.service}.amazonaws.com/", status, HTTPHeaders(), _Raw()), parsed
