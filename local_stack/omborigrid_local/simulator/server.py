"""The simulator's HTTP server: the export API contract, presigned-like downloads, faults and admin endpoints.

Why a real socket server rather than a mocked ``requests`` adapter: the client's retry, timeout, keep-alive,
Range-resume and streaming code paths only run against real TCP, and benchmarks need real throughput.
See the package docstring for the contract and the fault spec format.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pyarrow as pa

from .config import KNOB_NAMES, SimulatorConfig, SimulatorStats
from .damage import Damage
from .data import CachedFile, DeliverySpec, FileCache

log = logging.getLogger(__name__)

JOB_PATH = "/api/analytics-export-job"
ROUTE_POST_JOB = "POST /api/analytics-export-job"
ROUTE_GET_JOB = "GET /api/analytics-export-job"
ROUTE_GET_DOWNLOAD = "GET /download"
ROUTE_HEAD_DOWNLOAD = "HEAD /download"

_TENANT_LAX = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TENANT_STRICT = re.compile(r"[0-9a-f]{24}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_SENDFILE_SLICE = 64 << 20
_CHUNK = 1 << 20

Response = tuple[int, bytes, dict[str, str]]


def default_cache_dir() -> Path:
    """$OMBORIGRID_SIM_CACHE or ~/.cache/omborigrid-sim: generated files survive runs, so benchmarks pay once."""
    env = os.environ.get("OMBORIGRID_SIM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "omborigrid-sim"


def check_loopback(host: str) -> str:
    """Return the IPv4 loopback address to bind for ``host``; refuse anything reachable from outside."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"host must be a loopback address, got {host!r}") from None
    if addr.version != 4 or not addr.is_loopback:
        raise ValueError(f"host must be an IPv4 loopback address (127.0.0.0/8), got {host!r}")
    return host


def _iso(seconds: float) -> str:
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _json(status: int, payload: object, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload).encode()
    return status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}


def _message(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(status, {"message": message}, headers)


def _s3_error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>SIM</RequestId></Error>"
    ).encode()
    return status, body, {"Content-Type": "application/xml"}


def parse_range(header: str, total: int) -> tuple[int, int] | str | None:
    """Parse a single byte range: (first, last) inclusive, None to ignore it (serve 200), or "unsatisfiable".

    Multi-range and malformed headers are ignored, which RFC 9110 allows, so clients must cope with 200.
    """
    match = _RANGE.fullmatch(header.strip())
    if match is None or (not match[1] and not match[2]):
        return None
    if match[1]:
        first = int(match[1])
        last = int(match[2]) if match[2] else total - 1
        if match[2] and last < first:
            return None
        if first >= total:
            return "unsatisfiable"
        return first, min(last, total - 1)
    suffix = int(match[2])
    if suffix == 0 or total == 0:
        return "unsatisfiable"
    return max(0, total - suffix), total - 1


def _with_signals(spec: DeliverySpec, cfg: SimulatorConfig) -> DeliverySpec:
    """The spec with the lake-signal knobs that fall inside its days (so other ranges keep their cache keys)."""
    first, last = spec.date_from, spec.date_to
    change_from, change_until = cfg.schema_change_from, cfg.schema_change_until
    if change_from is not None and change_until is not None and change_until < first:
        change_from = None  # the change ended before this range: the file is the unchanged one
    if change_from is not None:
        change_from = None if change_from > last else max(change_from, first)
    if change_from is None or (change_until is not None and change_until >= last):
        change_until = None  # none, or reaching past this range: the spec need not say when it ends
    return dataclasses.replace(
        spec,
        empty_days=tuple(d for d in cfg.empty_day if first <= d <= last),
        day_fractions=tuple(sorted((d, f) for d, f in cfg.volume_fraction.items() if first <= d <= last)),
        schema_change_from=change_from,
        schema_change=cfg.schema_change if change_from is not None else "type",
        schema_change_until=change_until,
    )


def damage_for(cfg: SimulatorConfig) -> Damage | None:
    """The damage the delivery knobs ask for (config validation allows at most one)."""
    if cfg.truncated_parquet is not None:
        return Damage("truncate", amount=cfg.truncated_parquet)
    if cfg.empty_file == "bytes":
        return Damage("zero_bytes")
    if cfg.archive_bad_member is not None:
        return Damage("bad_member", cfg.archive_bad_member_kind, cfg.archive_bad_member)
    if cfg.zip_bomb is not None:
        return Damage("zip_bomb", cfg.zip_bomb, cfg.zip_bomb_bytes)
    if cfg.bad_zip is not None:
        return Damage("bad_zip", cfg.bad_zip)
    return None


def other_tenant_id(tenant_id: str) -> str:
    """The tenant an ``identity_change="tenant"`` answer names: 24 hex digits derived from the real one."""
    return hashlib.sha256(f"other-tenant|{tenant_id}".encode()).hexdigest()[:24]


def other_job_id(job_id: str) -> str:
    """The job id an ``identity_change="id"`` answer names."""
    return hashlib.sha256(f"other-job|{job_id}".encode()).hexdigest()[:24]


def _next_day(day: str) -> str:
    return (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()


def _change_identity(body: dict[str, Any], change: str) -> None:
    if change == "tenant":
        body["tenantId"] = other_tenant_id(body["tenantId"])
    elif change == "dates":
        body["dataDateFrom"], body["dataDateTo"] = _next_day(body["dataDateFrom"]), _next_day(body["dataDateTo"])
    else:
        body["id"] = other_job_id(body["id"])


@dataclass
class _Job:
    id: str
    tenant_id: str
    date_from: str
    date_to: str
    created: float  # simulated epoch seconds
    queue_seconds: float
    processing_seconds: float | None
    final_status: str
    spec: DeliverySpec
    filename: str
    expiry_seconds: float
    file: CachedFile | None = None
    ready_at: float | None = None
    error: str | None = None
    generation_started: bool = False
    damage: Damage | None = None
    identity_change: str | None = None
    identity_change_after: int = 0
    gets_answered: int = 0

    @property
    def expires(self) -> float:
        """Simulated time of ``jobExpiryDate``; after it the job is archived (404)."""
        return self.created + self.expiry_seconds

    def done_at(self) -> float:
        if self.processing_seconds is None:
            return math.inf
        return self.created + self.queue_seconds + self.processing_seconds

    def live_until(self) -> float:
        """Simulated time at which the job stops being queued/processing (inf if it never does)."""
        end = self.done_at()
        if self.final_status == "done" and self.error is None:
            end = math.inf if self.ready_at is None else max(end, self.ready_at)
        return min(end, self.expires)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        self.simulator = simulator
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a DNS lookup we neither need nor may make.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up mid-response (the transfer closing a probe early, a test's timeout) is
        normal here; anything else is reported as usual."""
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Cut keep-alive connections so no handler thread keeps serving after stop()."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class Simulator:
    """An OmboriGrid export API on 127.0.0.1. See the package docstring."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        cache_dir: Path | str | None = None,
        *,
        clock: Callable[[], float] | None = None,
        sim_epoch: float | None = None,
        log_requests: bool = False,
    ) -> None:
        """``clock`` is the real-time source (default ``time.monotonic``; tests may inject a fake one) and
        ``sim_epoch`` the simulated wall-clock time at construction (default: now)."""
        self._cfg = copy.deepcopy(config) if config is not None else SimulatorConfig()
        self.cache = FileCache(Path(cache_dir) if cache_dir is not None else default_cache_dir())
        self.log_requests = log_requests
        self._lock = threading.RLock()
        self._clock = clock or time.monotonic
        self._real_anchor = self._clock()
        self._sim_anchor = time.time() if sim_epoch is None else float(sim_epoch)
        self._secret = os.urandom(32)
        self._machine = int.from_bytes(os.urandom(5), "big")
        self._counter = int.from_bytes(os.urandom(3), "big")
        self._jobs: dict[str, _Job] = {}
        self._stats = SimulatorStats()
        self._stats_since = self._sim_anchor
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle
    def start(self, port: int = 0, host: str = "127.0.0.1") -> str:
        """Bind to loopback and serve in a daemon thread; returns the base URL."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        server = _Server((check_loopback(host), port), self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="omborigrid-sim", daemon=True
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving and cut open connections; idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Simulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``; the API lives under ``/api`` (see :attr:`api_url`)."""
        if self._server is None:
            raise RuntimeError("simulator not started")
        return f"http://{self._server.server_name}:{self.port}"

    @property
    def api_url(self) -> str:
        """The equivalent of ``https://api.omborigrid.com/api``."""
        return f"{self.base_url}/api"

    @property
    def token(self) -> str:
        with self._lock:
            return self._cfg.token

    @property
    def config(self) -> SimulatorConfig:
        """A copy of the current knobs (consumable faults show what is still armed)."""
        with self._lock:
            return copy.deepcopy(self._cfg)

    # ----------------------------------------------------------------- admin
    def configure(self, **knobs: Any) -> SimulatorConfig:
        """Change knobs at runtime. Unknown names raise TypeError, bad values ValueError (nothing changes).

        Setting ``drop_after_bytes`` without ``drop_count`` re-arms ``drop_count`` to 1 if it was used up.
        """
        unknown = sorted(set(knobs) - set(KNOB_NAMES))
        if unknown:
            raise TypeError(f"unknown simulator knob(s) {unknown}; known: {list(KNOB_NAMES)}")
        with self._lock:
            new = dataclasses.replace(copy.deepcopy(self._cfg), **copy.deepcopy(knobs))
            if "drop_after_bytes" in knobs and "drop_count" not in knobs and new.drop_count == 0:
                new.drop_count = 1
            if "time_scale" in knobs:
                now = self.sim_now()
                self._real_anchor, self._sim_anchor = self._clock(), now
            self._cfg = new
            return copy.deepcopy(new)

    def stats(self) -> SimulatorStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            snapshot = copy.deepcopy(self._stats)
            snapshot.live_jobs, snapshot.max_live_jobs = self._live_counts(self.sim_now())
            return snapshot

    def reset_stats(self) -> None:
        """Zero the counters; ``max_live_jobs`` then only considers time from now on."""
        with self._lock:
            self._stats = SimulatorStats()
            self._stats_since = self.sim_now()

    def reset(self) -> None:
        """Clear stats, jobs and armed faults (fail_next, drops, forced expiries, garbled_status); other knobs
        stay."""
        with self._lock:
            self._jobs.clear()
            self._cfg.fail_next = []
            self._cfg.drop_after_bytes = None
            self._cfg.drop_count = 1
            self._cfg.expire_next_downloads = 0
            self._cfg.garbled_status = 0
            self.reset_stats()

    def jobs(self) -> list[dict[str, Any]]:
        """The jobs the simulator knows, as GET would show them now (expired ones included, oldest first)."""
        with self._lock:
            now = self.sim_now()
            return [self._job_json(job, now) for job in self._jobs.values()]

    def job_file(self, job_id: str) -> Path | None:
        """Path of a done job's delivery in the cache (for byte comparisons in tests)."""
        with self._lock:
            job = self._jobs.get(job_id)
            return job.file.path if job is not None and job.file is not None else None

    def delivery_spec(self, tenant_id: str, date_from: str, date_to: str) -> DeliverySpec:
        """The delivery a job created now with these inputs would get."""
        for value in (date_from, date_to):
            if not _DATE.fullmatch(value):
                raise ValueError(f"dates must be YYYY-MM-DD, got {value!r}")
        with self._lock:
            cfg = self._cfg
            first, last = dt.date.fromisoformat(date_from), dt.date.fromisoformat(date_to)
            if cfg.foreign_dates is not None:
                shift = dt.timedelta(days=cfg.foreign_dates)
                first, last = first + shift, last + shift
            spec = DeliverySpec(
                tenant_id=cfg.foreign_tenant or tenant_id,
                date_from=first.isoformat(),
                date_to=last.isoformat(),
                delivery=cfg.delivery,
                rows_per_day=cfg.rows_per_day,
                target_bytes=cfg.target_bytes,
                timestamp_format=cfg.timestamp_format,
            )
            if cfg.signals_tenant in (None, tenant_id):
                spec = _with_signals(spec, cfg)
            if cfg.empty_file == "rows":
                spec = dataclasses.replace(
                    spec, empty_days=tuple(d.isoformat() for d in spec.days()), day_fractions=(), target_bytes=None
                )
            return spec

    def expected_rows(self, tenant_id: str, date_from: str, date_to: str) -> dict[str, int]:
        """Rows per table in the delivery for these inputs under the current knobs.

        Generates the delivery (through the cache) if needed, so padding rows are counted exactly.
        """
        return dict(self.cache.ensure(self.delivery_spec(tenant_id, date_from, date_to)).rows)

    # ----------------------------------------------------------------- simulated time
    def sim_now(self) -> float:
        """Simulated epoch seconds: real elapsed time times ``time_scale``, continuous across changes."""
        with self._lock:
            return self._sim_anchor + (self._clock() - self._real_anchor) * self._cfg.time_scale

    # ----------------------------------------------------------------- internals used by the handler
    def _count(self, route: str) -> None:
        with self._lock:
            self._stats.requests += 1
            self._stats.by_route[route] = self._stats.by_route.get(route, 0) + 1

    def _count_status(self, status: int) -> None:
        with self._lock:
            key = str(status)
            self._stats.by_status[key] = self._stats.by_status.get(key, 0) + 1

    def _count_fault(self) -> None:
        with self._lock:
            self._stats.faults_served += 1

    def _count_drop(self) -> None:
        with self._lock:
            self._stats.connections_dropped += 1

    def _count_bytes(self, n: int) -> None:
        with self._lock:
            self._stats.download_bytes_sent += n

    def _record_range(self, header: str | None) -> None:
        with self._lock:
            self._stats.download_ranges.append(header)

    def _take_fault(self, method: str) -> dict[str, Any] | None:
        """Consume one use of the head fail_next spec if it applies to ``method``."""
        with self._lock:
            queue = self._cfg.fail_next
            if not queue:
                return None
            head = queue[0]
            methods = head.get("methods")
            if methods is not None and method not in methods:
                return None
            head["count"] -= 1
            if head["count"] <= 0:
                queue.pop(0)
            self._stats.faults_served += 1
            return dict(head)

    def _take_drop(self) -> int | None:
        with self._lock:
            cfg = self._cfg
            if cfg.drop_after_bytes is None or cfg.drop_count <= 0:
                return None
            cfg.drop_count -= 1
            self._stats.faults_served += 1
            return cfg.drop_after_bytes

    def _take_forced_expiry(self) -> bool:
        with self._lock:
            if self._cfg.expire_next_downloads <= 0:
                return False
            self._cfg.expire_next_downloads -= 1
            self._stats.faults_served += 1
            return True

    def _drip_for(self, route: str) -> tuple[int, float] | None:
        """(bytes per write, seconds between writes) if ``slow_drip`` covers ``route``, else None."""
        with self._lock:
            cfg = self._cfg
            if cfg.slow_drip not in (route, "all"):
                return None
            self._stats.faults_served += 1
            return cfg.slow_drip_bytes, float(cfg.slow_drip_interval)

    def _bad_location(self, path: str, query: str) -> str | None:
        """The malformed ``Location`` a download redirects to under ``bad_location``, else None."""
        with self._lock:
            kind = self._cfg.bad_location
            if kind is None:
                return None
            self._stats.faults_served += 1
        target = f"{path}?{query}"
        return {
            "ipv6": f"http://[::1:{self.port}{target}",
            "control": f"http://127.0.0.1\x01\x7f:{self.port}{target}",
            "no_scheme": f"127.0.0.1:{self.port}{target}",
            "empty": "",
        }[kind]

    def _new_id(self) -> str:
        with self._lock:
            self._counter = (self._counter + 1) & 0xFFFFFF
            return f"{int(self.sim_now()) & 0xFFFFFFFF:08x}{self._machine:010x}{self._counter:06x}"

    def _live_counts(self, now: float) -> tuple[int, int]:
        """(live now, max live since the last stats reset): exact, from the jobs' simulated intervals."""
        since = self._stats_since
        points: list[tuple[float, int]] = []
        live = 0
        for job in self._jobs.values():
            start, end = max(job.created, since), job.live_until()
            if job.created <= now < end:
                live += 1
            if end > since and start <= now:
                points.append((start, 1))
                points.append((end, -1))
        points.sort(key=lambda p: (p[0], p[1]))
        current = peak = 0
        for _, delta in points:
            current += delta
            peak = max(peak, current)
        return live, peak

    def _create_job(self, tenant_id: str, date_from: str, date_to: str) -> _Job:
        with self._lock:
            cfg, now = self._cfg, self.sim_now()
            spec = self.delivery_spec(tenant_id, date_from, date_to)
            filename = cfg.filename_override or f"analytics_{tenant_id}_{date_from}_{date_to}.{spec.extension}"
            job = _Job(
                id=self._new_id(),
                tenant_id=tenant_id,
                date_from=date_from,
                date_to=date_to,
                created=now,
                queue_seconds=float(cfg.queue_seconds),
                processing_seconds=None if cfg.processing_seconds is None else float(cfg.processing_seconds),
                final_status=cfg.final_status,
                spec=spec,
                filename=filename,
                expiry_seconds=float(cfg.job_expiry_seconds),
                damage=damage_for(cfg),
                identity_change=cfg.identity_change,
                identity_change_after=cfg.identity_change_after,
            )
            self._jobs[job.id] = job
            self._stats.jobs_created += 1
            key = f"{tenant_id}/{date_from}/{date_to}"
            self._stats.jobs_created_by_key[key] = self._stats.jobs_created_by_key.get(key, 0) + 1
            if job.final_status == "done" and job.processing_seconds is not None:
                self._start_generation(job)
            return job

    def _start_generation(self, job: _Job) -> None:
        """Generate off the request thread: POST stays fast and the job reads "processing" until ready."""
        if job.generation_started:
            return
        job.generation_started = True
        threading.Thread(target=self._generate, args=(job,), name=f"sim-gen-{job.id}", daemon=True).start()

    def _generate(self, job: _Job) -> None:
        try:
            cached = self.cache.ensure(job.spec, job.damage)
        except (OSError, ValueError, pa.ArrowException) as exc:
            log.exception("generating %s failed", job.spec)
            with self._lock:
                job.error = str(exc)
            return
        with self._lock:
            job.file, job.ready_at = cached, self.sim_now()

    def _live_job(self, job_id: str, now: float) -> _Job | None:
        job = self._jobs.get(job_id)
        if job is None or now >= job.expires:  # archived jobs are gone
            return None
        return job

    def _status(self, job: _Job, now: float) -> tuple[str, float]:
        started = job.created + job.queue_seconds
        if now < started:
            return "queued", job.created
        done_at = job.done_at()
        if now < done_at:
            return "processing", started
        if job.final_status != "done":
            return job.final_status, done_at
        if job.error is not None:
            return "failed", done_at
        if job.file is None or job.ready_at is None:
            self._start_generation(job)
            return "processing", started
        return "done", max(done_at, job.ready_at)

    def _job_json(self, job: _Job, now: float) -> dict[str, Any]:
        status, updated = self._status(job, now)
        body: dict[str, Any] = {
            "status": status,
            "id": job.id,
            "tenantId": job.tenant_id,
            "jobExpiryDate": _iso(job.expires),
            "dataDateFrom": job.date_from,
            "dataDateTo": job.date_to,
            "createdAt": _iso(job.created),
            "updatedAt": _iso(updated),
            "filename": job.filename,
        }
        if status == "done" and job.file is not None:
            expires = math.ceil(now + self._cfg.url_ttl_seconds)
            if self._server is not None:
                body["downloadUrl"] = (
                    f"{self.base_url}/download/{job.id}/{quote(job.filename)}"
                    f"?X-Sim-Expires={expires}&X-Sim-Signature={self._sign(job.id, expires)}"
                )
            body["fileSize"] = job.file.size + self._cfg.file_size_delta
        return body

    def _sign(self, job_id: str, expires: int) -> str:
        return hmac.new(self._secret, f"{job_id}:{expires}".encode(), hashlib.sha256).hexdigest()

    # ----------------------------------------------------------------- request logic (returns responses)
    def _authorize(self, header: str | None) -> Response | None:
        challenge = {"WWW-Authenticate": 'Bearer realm="omborigrid"'}
        if not header:
            return _message(401, "Missing Authorization header", challenge)
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _message(401, "Authorization header must be 'Bearer <token>'", challenge)
        with self._lock:
            cfg = self._cfg
            if token in cfg.expired_tokens:
                return _message(401, "token expired", challenge)
            known = [cfg.token, *cfg.tenant_tokens.values()]
            if not any(hmac.compare_digest(token.encode(), k.encode()) for k in known):
                return _message(401, "Invalid token", challenge)
        return None

    def _acts_for(self, header: str | None, tenant_id: str) -> bool:
        """Whether the (already authorized) bearer token may act for ``tenant_id`` (see ``tenant_tokens``)."""
        token = (header or "").partition(" ")[2].strip()
        with self._lock:
            own = self._cfg.tenant_tokens.get(tenant_id)
            if own is not None:
                return hmac.compare_digest(token.encode(), own.encode())
            return hmac.compare_digest(token.encode(), self._cfg.token.encode())

    def _post_job(self, raw: bytes, authorization: str | None = None) -> Response:
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return _message(400, "Request body must be valid JSON")
        if not isinstance(body, dict):
            return _message(400, "Request body must be a JSON object")
        tenant_id = body.get("tenantId")
        if not isinstance(tenant_id, str) or not tenant_id:
            return _message(400, "tenantId is required")
        with self._lock:
            strict = self._cfg.strict_tenant_ids
        pattern = _TENANT_STRICT if strict else _TENANT_LAX
        if not pattern.fullmatch(tenant_id):
            return _message(400, f"tenantId is invalid: {tenant_id!r}")
        dates: dict[str, dt.date] = {}
        for name in ("dataDateFrom", "dataDateTo"):
            value = body.get(name)
            if value is None or value == "":
                return _message(400, f"{name} is required")
            if not isinstance(value, str) or not _DATE.fullmatch(value):
                return _message(400, f"{name} must be in YYYY-MM-DD format")
            try:
                dates[name] = dt.date.fromisoformat(value)
            except ValueError:
                return _message(400, f"{name} is not a valid date: {value!r}")
        if dates["dataDateFrom"] > dates["dataDateTo"]:
            return _message(400, "dataDateFrom must not be after dataDateTo")
        if not self._acts_for(authorization, tenant_id):
            return _message(403, f"This token does not belong to tenant {tenant_id}")
        job = self._create_job(tenant_id, body["dataDateFrom"], body["dataDateTo"])
        with self._lock:
            return _json(self._cfg.create_status, self._job_json(job, self.sim_now()))

    def _get_job(self, job_id: str, authorization: str | None = None) -> Response:
        with self._lock:
            now = self.sim_now()
            job = self._live_job(job_id, now)
        if job is None or not self._acts_for(authorization, job.tenant_id):
            return _message(404, "Job not found")
        with self._lock:
            body = self._job_json(job, now)
            job.gets_answered += 1
            if job.identity_change is not None and job.gets_answered > job.identity_change_after:
                _change_identity(body, job.identity_change)
            status, raw, headers = _json(200, body)
            if self._cfg.garbled_status > 0:
                self._cfg.garbled_status -= 1
                self._stats.faults_served += 1
                raw = raw[: len(raw) // 2]  # a proxy cut the body; Content-Length is what was sent
            return status, raw, headers

    def _check_download(self, job_id: str, filename: str, query: str) -> Response | CachedFile:
        with self._lock:
            now = self.sim_now()
            job = self._live_job(job_id, now)
            if job is None:
                return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
            params = parse_qs(query)
            expires_s = params.get("X-Sim-Expires", [""])[0]
            signature = params.get("X-Sim-Signature", [""])[0]
            if not expires_s.isdigit() or not hmac.compare_digest(signature, self._sign(job_id, int(expires_s))):
                return _s3_error(403, "AccessDenied", "Request signature does not match")
            if now >= int(expires_s):
                return _s3_error(403, "AccessDenied", "Request has expired")
            if self._take_forced_expiry():
                return _s3_error(403, "AccessDenied", "Request has expired")
            status, _ = self._status(job, now)
            if status != "done" or job.file is None or filename != job.filename:
                return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
            return job.file


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "OmboriGridSim/1.0"
    sys_version = ""
    timeout = 300  # idle keep-alive connections are closed after this many seconds
    server: _Server

    _counted = False

    def version_string(self) -> str:
        return self.server_version

    @property
    def sim(self) -> Simulator:
        return self.server.simulator

    def log_message(self, format: str, *args: Any) -> None:
        if self.sim.log_requests:
            log.info("%s %s", self.address_string(), format % args)

    def send_response(self, code: int, message: str | None = None) -> None:
        if self._counted:
            self.sim._count_status(code)
        super().send_response(code, message)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    # ----------------------------------------------------------------- plumbing
    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, response: Response, head_only: bool = False) -> None:
        status, body, headers = response
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only and body:
            self.wfile.write(body)

    def _abort(self) -> None:
        """Close the TCP connection without (the rest of) a response: what a crashed proxy looks like."""
        self.sim._count_drop()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        body = self._read_body()
        if path.startswith("/_sim/"):
            self._send(self._admin(method, path, body, url.query), head_only=method == "HEAD")
            return
        self._counted = True
        if path.startswith("/download/"):
            self.sim._count(ROUTE_HEAD_DOWNLOAD if method == "HEAD" else ROUTE_GET_DOWNLOAD)
            self._download(method, path, url.query)
            return
        if path == JOB_PATH and method == "POST":
            self.sim._count(ROUTE_POST_JOB)
            self._api(method, lambda: self.sim._post_job(body, self.headers.get("Authorization")), "create")
            return
        if path.startswith(JOB_PATH + "/") and method == "GET":
            self.sim._count(ROUTE_GET_JOB)
            job_id = unquote(path[len(JOB_PATH) + 1 :])
            self._api(method, lambda: self.sim._get_job(job_id, self.headers.get("Authorization")), "status")
            return
        self.sim._count("OTHER")
        self._send(_message(404, "Not found"), head_only=method == "HEAD")

    def _api(self, method: str, handler: Callable[[], Response], route: str) -> None:
        """Apply the head fail_next fault (if it matches), else authenticate and run ``handler``.

        Faults come before authentication, as a gateway's 429/5xx would. ``route`` (``create`` or ``status``)
        selects whether ``slow_drip`` applies.
        """
        fault = self.sim._take_fault(method)
        drip = self.sim._drip_for(route)

        def action() -> Response:
            return self.sim._authorize(self.headers.get("Authorization")) or handler()

        def send(response: Response) -> None:
            if drip is None:
                self._send(response)
            else:
                self._drip(response, *drip)

        if fault is None:
            send(action())
            return
        if fault.get("delay"):
            time.sleep(float(fault["delay"]))
        if fault.get("after_create"):
            action()  # the real work happens; only the response is lost or replaced
        elif fault.get("status") is None and not fault.get("close"):
            send(action())  # a pure delay
            return
        if fault.get("close"):
            self._abort()
            return
        send(self._fault_response(fault))

    def _drip(self, response: Response, step: int, interval: float) -> None:
        """The whole response (status line, headers, body) written ``step`` bytes at a time, ``interval`` seconds
        apart: every read finishes quickly, the response as a whole takes as long as the drip wants."""
        status, body, headers = response
        self.sim._count_status(status)
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        lines = [f"HTTP/1.1 {status} {phrase}", f"Server: {self.version_string()}", f"Date: {self.date_time_string()}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        for offset in range(0, len(raw), step):
            if offset:
                time.sleep(interval)
            self.wfile.write(raw[offset : offset + step])

    @staticmethod
    def _fault_response(fault: dict[str, Any]) -> Response:
        status = int(fault["status"])
        headers = {"Content-Type": fault.get("content_type") or "application/json; charset=utf-8"}
        retry_after = fault.get("retry_after")
        if retry_after is not None:
            is_whole = isinstance(retry_after, (int, float)) and float(retry_after).is_integer()
            headers["Retry-After"] = str(int(retry_after)) if is_whole else str(retry_after)
        headers.update(fault.get("headers") or {})
        if fault.get("body") is not None:
            body = str(fault["body"]).encode()
        else:
            try:
                phrase = HTTPStatus(status).phrase
            except ValueError:
                phrase = "Error"
            body = json.dumps({"message": phrase}).encode()
        return status, body, headers

    # ----------------------------------------------------------------- admin
    def _admin(self, method: str, path: str, raw: bytes, query: str) -> Response:
        sim = self.sim
        try:
            if path == "/_sim/stats" and method in ("GET", "HEAD"):
                return _json(200, sim.stats().to_dict())
            if path == "/_sim/config" and method in ("GET", "HEAD"):
                return _json(200, sim.config.to_dict())
            if path == "/_sim/config" and method == "POST":
                knobs = json.loads(raw or b"{}")
                if not isinstance(knobs, dict):
                    return _message(400, "config body must be a JSON object of knobs")
                return _json(200, sim.configure(**knobs).to_dict())
            if path == "/_sim/reset" and method == "POST":
                sim.reset()
                return _json(200, {"reset": True})
            if path == "/_sim/jobs" and method in ("GET", "HEAD"):
                return _json(200, sim.jobs())
            if path == "/_sim/expected-rows" and method in ("GET", "HEAD"):
                params = {k: v[0] for k, v in parse_qs(query).items()}
                return _json(200, sim.expected_rows(params["tenantId"], params["dataDateFrom"], params["dataDateTo"]))
        except (TypeError, ValueError, KeyError) as exc:
            return _message(400, f"{type(exc).__name__}: {exc}")
        return _message(404, "Not found")

    # ----------------------------------------------------------------- downloads
    def _download(self, method: str, path: str, query: str) -> None:
        head_only = method == "HEAD"
        parts = path.split("/", 3)  # ["", "download", id, filename]
        if len(parts) != 4:
            self._send(_s3_error(404, "NoSuchKey", "The specified key does not exist."), head_only)
            return
        range_header = self.headers.get("Range")
        if not head_only:
            self.sim._record_range(range_header)
        checked = self.sim._check_download(unquote(parts[2]), unquote(parts[3]), query)
        if not isinstance(checked, CachedFile):
            self._send(checked, head_only)
            return
        location = self.sim._bad_location(path, query)
        if location is not None:
            self._send((307, b"", {"Location": location, "Content-Type": "application/xml"}), head_only)
            return
        total = checked.size
        with self.sim._lock:
            cfg = self.sim._cfg
            ignore_range, bandwidth = cfg.ignore_range, cfg.bandwidth_bytes_per_sec
        first, last, status = 0, total - 1, 200
        if range_header and not ignore_range:
            parsed = parse_range(range_header, total)
            if parsed == "unsatisfiable":
                self._send(
                    (416, b"", {"Content-Range": f"bytes */{total}", "Content-Type": "application/xml"}), head_only
                )
                return
            if isinstance(parsed, tuple):
                (first, last), status = parsed, 206
        length = last - first + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{checked.path.stem}"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {first}-{last}/{total}")
        self.end_headers()
        if head_only or length == 0:
            return
        drop_after = self.sim._take_drop()
        try:
            with checked.path.open("rb") as handle:
                if drop_after is not None:
                    self._copy(handle, first, min(drop_after, length), bandwidth)
                    self._abort()
                elif bandwidth is not None:
                    self._copy(handle, first, length, bandwidth)
                else:
                    self._sendfile(handle, first, length)
        except OSError:  # client went away mid-body: nothing to answer
            self.close_connection = True

    def _sendfile(self, handle: Any, offset: int, count: int) -> None:
        """Zero-copy body: socket.sendfile uses os.sendfile and falls back to read/send by itself."""
        end = offset + count
        while offset < end:
            step = min(_SENDFILE_SLICE, end - offset)
            sent = self.connection.sendfile(handle, offset, step)
            self.sim._count_bytes(sent)
            if sent <= 0:
                raise ConnectionError("sendfile sent nothing")
            offset += sent

    def _copy(self, handle: Any, offset: int, count: int, bandwidth: int | None) -> None:
        """Chunked body, paced to ``bandwidth`` bytes/s (token bucket per response) when set."""
        chunk = _CHUNK if bandwidth is None else max(4096, min(256 << 10, bandwidth // 20))
        handle.seek(offset)
        started, sent = time.monotonic(), 0
        while sent < count:
            data = handle.read(min(chunk, count - sent))
            if not data:
                raise ConnectionError("cached file shorter than expected")
            self.wfile.write(data)
            sent += len(data)
            self.sim._count_bytes(len(data))
            if bandwidth is not None:
                ahead = sent / bandwidth - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
