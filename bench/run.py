"""Transfer benchmark (issues 4, 13): ours against its floor and the peers, over TLS and plain HTTP.

``python -m bench.run`` (what ``make bench`` runs) measures; ``--write`` also rewrites ``BENCHMARKS.md``;
``--quick`` is a smoke check (64 MiB, one run). Progress goes to stderr, one line per variant run.
``--cases`` and ``--variants`` measure a part of it (e.g. ``--cases tls-uncapped-2GiB --variants ours,sink``,
never written to BENCHMARKS.md); ``--profile perf`` or ``--profile py-spy`` records each run's profile beside
its log (``perf report -i …perf.data``: on-CPU samples, user and kernel; py-spy: Python stacks of every thread).

Processes: the OmboriGrid simulator (one process for the whole run), the S3 emulator (moto server, a fresh
process for every run that writes to S3, so no run inherits another's heap), a TLS-terminating proxy in front
of each of them for the runs over TLS (:mod:`bench.tls`, with a test CA made at run time), and each measured
variant (its own process, see :mod:`bench.variant`). They all share the machine's cores, which BENCHMARKS.md states.
Every wait has a deadline; every process started here is stopped by its pid at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.tls import make_test_ca

# TransferSettings' defaults: the bench measures what users get.
from omborigrid_export.settings import DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE

MIB = 1024 * 1024
GIB = 1024 * MIB
ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
TENANT = "621e1fc633350f0007637a0c"
TOKEN = "bench-token"
BUCKET = "bench-landing"
RESULTS_JSON = CACHE / "last-results.json"
RESULTS_JSON_QUICK = CACHE / "last-results-quick.json"  # a --quick run never replaces the full run's results
RESULTS_JSON_PARTIAL = CACHE / "last-results-partial.json"  # nor does a run of some cases or variants only
#: The options that shape BENCHMARKS.md, saved with the results so --render-only writes the same text.
RENDERED_ARGS = ("quick", "part_size", "concurrency", "quiet_wait", "quiet_budget")
NOTES_START, NOTES_END = "<!-- notes:start -->", "<!-- notes:end -->"

#: Seconds left for waiting on other load, over the whole run (set from --quiet-budget).
QUIET_BUDGET = [0.0]
CAP_MIB = 10  # the per-connection cap of the must-show case (see BENCHMARKS.md)
TLS_DIR = CACHE / "tls"
AWS_CLI = CACHE / "awscli-venv" / "bin" / "aws"

LABELS = {
    "source-ranged": "source alone: requests, ranged parts × concurrency (how ours reads)",
    "source-stream": "source alone: requests, one stream",
    "curl": "source alone: `curl -o /dev/null`, one stream",
    "sink": "sink alone: multipart upload from memory, same parts × concurrency",
    "ours": f"**ours**: `Transfer.land` (defaults: {DEFAULT_PART_SIZE // MIB} MiB parts × {DEFAULT_CONCURRENCY})",
    "upload_fileobj": "boto3 `upload_fileobj(response.raw)`, default TransferConfig",
    "upload_fileobj-crt": "the same through the CRT transfer client (`awscrt`, s3transfer's `CRTTransferManager`)",
    "aws-cli": "`curl URL | aws s3 cp - s3://…` (awscli v1; CPU of both processes, start-up included)",
    "smart_open": "`smart_open` http → `smart_open` s3, `shutil.copyfileobj`",
    "put_object": "read everything (`response.content`), then `put_object`",
}
S3_VARIANTS = frozenset({"sink", "ours", "upload_fileobj", "upload_fileobj-crt", "aws-cli", "smart_open", "put_object"})
PEERS = ("upload_fileobj", "upload_fileobj-crt", "aws-cli", "smart_open", "put_object")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen[Any] | None, grace: float = 10.0) -> None:
    """Stop one process we started, by its pid: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=grace)


def wait_http(url: str, deadline_s: float, what: str, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before answering")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer at {url} within {deadline_s:.0f} s")


# -- the processes the variants talk to --------------------------------------------------------------------


class SimulatorProcess:
    """``omborigrid-export simulate`` in its own process, configured over its admin API."""

    def __init__(self, cache_dir: Path, logs: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        cli = Path(sys.executable).with_name("omborigrid-export")
        command = [str(cli), "simulate"] if cli.exists() else [sys.executable, "-m", "omborigrid_local.simulator"]
        command += [
            "--port",
            str(self.port),
            "--cache-dir",
            str(cache_dir),
            "--token",
            TOKEN,
            "--queue-seconds",
            "0",
            "--processing-seconds",
            "0",
            "--url-ttl-seconds",
            "86400",
        ]
        self._log = (logs / "simulator.log").open("w")
        self.proc: subprocess.Popen[Any] = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        wait_http(f"{self.base_url}/_sim/config", 60, "the simulator", self.proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def configure(self, **knobs: Any) -> None:
        response = requests.post(f"{self.base_url}/_sim/config", json=knobs, timeout=10)
        response.raise_for_status()

    def get_job(self, job_id: str) -> dict[str, Any]:
        response = requests.get(
            f"{self.base_url}/api/analytics-export-job/{job_id}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        response.raise_for_status()
        return dict(response.json())

    def ready_job(self, target_bytes: int, day: str, deadline_s: float) -> dict[str, Any]:
        """A done job whose file is at least ``target_bytes`` (generated once, then cached on disk)."""
        self.configure(target_bytes=target_bytes)
        response = requests.post(
            f"{self.base_url}/api/analytics-export-job",
            json={"tenantId": TENANT, "dataDateFrom": day, "dataDateTo": day},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        response.raise_for_status()
        job_id = response.json()["id"]
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            job = self.get_job(job_id)
            if job["status"] == "done":
                return job
            if job["status"] not in ("queued", "processing"):
                raise RuntimeError(f"simulator job {job_id} ended {job['status']}")
            time.sleep(0.5)
        raise RuntimeError(f"the simulator did not produce a {target_bytes}-byte file within {deadline_s:.0f} s")

    def close(self) -> None:
        stop(self.proc)
        self._log.close()


class MotoProcess:
    """A fresh ``moto_server`` on loopback with one empty bucket."""

    name = "moto server"

    def __init__(self, logs: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log = (logs / "moto.log").open("a")
        command = [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(self.port)]
        self.proc: subprocess.Popen[Any] = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        wait_http(f"{self.endpoint}/", 60, "moto server", self.proc)
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="eu-west-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        stop(self.proc)
        self._log.close()


class TlsProxy:
    """:mod:`bench.tls` in its own process: https on a fresh loopback port, plain bytes to ``upstream``."""

    def __init__(self, upstream: int, logs: Path, name: str) -> None:
        self.port = free_port()
        self.base_url = f"https://127.0.0.1:{self.port}"
        self._log = (logs / f"tls-{name}.log").open("a")
        key, cert = TLS_DIR / "server-key.pem", TLS_DIR / "server.pem"
        command = [sys.executable, "-m", "bench.tls", "--listen", str(self.port), "--upstream", str(upstream)]
        command += ["--cert", str(cert), "--key", str(key)]
        self.proc: subprocess.Popen[Any] = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the TLS proxy for {name} exited with status {self.proc.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the TLS proxy for {name} did not listen within 30 s")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        stop(self.proc)
        self._log.close()


def moto_version() -> str:
    try:
        from importlib.metadata import version

        return version("moto")
    except Exception:  # noqa: BLE001 - only for the report
        return "unknown"


# -- measuring ---------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One column of conditions: a file size, with or without the per-connection cap."""

    name: str
    size_label: str
    target: int
    day: str
    cap: int | None
    runs: int
    variants: list[str]
    tls: bool = True
    size: int = 0
    job_id: str = ""


@dataclass
class Sample:
    variant: str
    run: int
    ok: bool
    seconds: float = 0.0
    bytes: int = 0
    rss_mib: float = 0.0
    cpu_s: float = 0.0
    s3_cpu_s: float = 0.0
    sim_cpu_s: float = 0.0
    #: Cores used by processes other than ours during the run (other sessions on a shared machine).
    other_cores: float = 0.0
    other_cores_before: float = 0.0
    error: str = ""

    @property
    def mib_s(self) -> float:
        return self.bytes / MIB / self.seconds if self.ok and self.seconds > 0 else 0.0

    @property
    def cpu_per_gib(self) -> float:
        return self.cpu_s / (self.bytes / GIB) if self.ok and self.bytes else 0.0


@dataclass
class CaseResult:
    case: Case
    samples: list[Sample] = field(default_factory=list)

    def of(self, variant: str) -> list[Sample]:
        return [s for s in self.samples if s.variant == variant and s.ok]

    def median_mib_s(self, variant: str) -> float | None:
        samples = self.of(variant)
        return statistics.median(s.mib_s for s in samples) if samples else None

    def peak_rss(self, variant: str) -> float | None:
        samples = self.of(variant)
        return max(s.rss_mib for s in samples) if samples else None

    def cpu_per_gib(self, variant: str) -> float | None:
        samples = self.of(variant)
        return statistics.median(s.cpu_per_gib for s in samples) if samples else None


def run_child(command: list[str], timeout_s: float, log_path: Path, env: dict[str, str]) -> tuple[int, str, Any, float]:
    """Run one variant process to its end (or kill it at the deadline). Returns (status, stdout, rusage, wall)."""
    out_path = log_path.with_suffix(".out")
    with out_path.open("w") as out, log_path.open("w") as err:
        started = time.monotonic()
        proc = subprocess.Popen(command, stdout=out, stderr=err, cwd=ROOT, env=env)
        deadline = started + timeout_s
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    break
                if time.monotonic() > deadline:
                    proc.kill()
                    _pid, status, usage = os.wait4(proc.pid, 0)
                    proc.returncode = -9
                    break
                time.sleep(0.02)
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
            raise
        wall = time.monotonic() - started
    return proc.returncode, out_path.read_text(), usage, wall


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores, all processes), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wait_quiet(own_pids: list[int], max_wait: float, threshold: float = 0.3) -> float:
    """Wait (at most ``max_wait`` s) until processes other than ours use less than ``threshold`` cores.

    Other sessions may share this machine; a run started while they are busy measures them too. Returns the
    other load (cores) seen last.
    """
    deadline = time.monotonic() + max_wait
    while True:
        busy0, own0, t0 = (
            busy_cpu_seconds(),
            sum(cpu_seconds(p) for p in own_pids) + own_cpu_seconds(),
            time.monotonic(),
        )
        time.sleep(0.5)
        busy1, own1 = busy_cpu_seconds(), sum(cpu_seconds(p) for p in own_pids) + own_cpu_seconds()
        other = max(0.0, (busy1 - busy0) - (own1 - own0)) / (time.monotonic() - t0)
        if other < threshold or time.monotonic() > deadline:
            return other


class Endpoints:
    """What one run talks to: the simulator (behind its TLS proxy when the case is over TLS) and a fresh S3
    emulator (behind a fresh TLS proxy), and the processes whose CPU is counted as theirs."""

    def __init__(self, case: Case, sim: SimulatorProcess, sim_tls: TlsProxy | None, logs: Path, s3: bool) -> None:
        self.moto = MotoProcess(logs) if s3 else None
        self.s3_tls = TlsProxy(self.moto.port, logs, "s3") if self.moto and case.tls else None
        self.sim, self.sim_tls = sim, sim_tls if case.tls else None
        self.s3_endpoint = self.s3_tls.base_url if self.s3_tls else (self.moto.endpoint if self.moto else "")
        self.download_base = self.sim_tls.base_url if self.sim_tls else ""

    @property
    def s3_pids(self) -> list[int]:
        return [p.pid for p in (self.moto, self.s3_tls) if p is not None]

    @property
    def source_pids(self) -> list[int]:
        return [p.pid for p in (self.sim, self.sim_tls) if p is not None]

    def download_url(self, job_id: str) -> str:
        url = str(self.sim.get_job(job_id)["downloadUrl"])
        if self.download_base:
            url = self.download_base + url[len(self.sim.base_url) :]
        return url

    def landed_size(self, key: str) -> int:
        """The size of what landed under ``key`` (then deleted), read over plain HTTP, outside the clock."""
        import boto3

        assert self.moto is not None
        s3 = boto3.client("s3", endpoint_url=self.moto.endpoint, region_name="eu-west-1")
        size = int(s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"])
        s3.delete_object(Bucket=BUCKET, Key=key)
        return size

    def close(self) -> None:
        for proc in (self.s3_tls, self.moto):
            if proc is not None:
                proc.close()


def child_env(variant: str) -> dict[str, str]:
    """The variant's environment: it trusts the test CA (requests and botocore read these), and nothing else.

    awscrt is installed for the CRT peer, and botocore then signs and checksums with it in every process;
    Lambda's Python runtime has no awscrt (nor has the function's layer), so every other variant runs with
    botocore's opt-out, as it would there.
    """
    env = dict(os.environ)
    ca = str(TLS_DIR / "ca.pem")
    env.update(REQUESTS_CA_BUNDLE=ca, AWS_CA_BUNDLE=ca, SSL_CERT_FILE=ca, CURL_CA_BUNDLE=ca)
    env["BOTO_DISABLE_CRT"] = "false" if variant == "upload_fileobj-crt" else "true"
    return env


def variant_command(
    variant: str, run: int, case: Case, ends: Endpoints, args: argparse.Namespace, logs: Path
) -> list[str]:
    rss_path = logs / f"{case.name}-{variant}-{run}.rss"
    time_rss = ["/usr/bin/time", "-f", "%M", "-o", str(rss_path)] if Path("/usr/bin/time").exists() else []
    if variant == "curl":
        command = ["curl", "-sS", "-o", "/dev/null", "-w", "%{time_total} %{size_download} %{http_code}"]
        # A small parent, so curl's peak RSS is curl's (see bench.variant.peak_rss_mib).
        return [*time_rss, *command, ends.download_url(case.job_id)]
    if variant == "aws-cli":
        target = f"s3://{BUCKET}/bench/{case.name}/{variant}/{run}"
        pipeline = (
            f"set -o pipefail; curl -sS --fail {shlex.quote(ends.download_url(case.job_id))} | "
            f"{shlex.quote(str(AWS_CLI))} s3 cp - {target} --endpoint-url {ends.s3_endpoint} --region eu-west-1 "
            "--only-show-errors"
        )
        return ["bash", "-c", pipeline]
    params = {
        "variant": variant,
        "api_url": ends.sim.base_url,
        "download_base": ends.download_base,
        "token": TOKEN,
        "job_id": case.job_id,
        "s3_endpoint": ends.s3_endpoint,
        "bucket": BUCKET,
        "key": f"bench/{case.name}/{variant}/{run}",
        "part_size": args.part_size,
        "concurrency": args.concurrency,
        "size": case.size,
    }
    command = [sys.executable, "-m", "bench.variant", json.dumps(params)]
    if args.profile == "py-spy":
        # Python stacks of every thread, sampled from outside (py-spy reads the process's memory).
        profile = logs / f"{case.name}-{variant}-{run}.pyspy.txt"
        spy = [str(Path(sys.executable).with_name("py-spy")), "record", "-r", "100", "--native", "--threads"]
        return [*spy, "--format", "raw", "-o", str(profile), "--", *command]
    if args.profile == "perf":
        # On-CPU samples only (user and kernel), with Python functions named through CPython's perf maps.
        profile = logs / f"{case.name}-{variant}-{run}.perf.data"
        command.insert(1, "-Xperf")
        return ["perf", "record", "-F", "499", "-g", "-o", str(profile), "--", *command]
    return command


def measure(
    variant: str,
    run: int,
    case: Case,
    sim: SimulatorProcess,
    sim_tls: TlsProxy | None,
    args: argparse.Namespace,
    logs: Path,
) -> Sample:
    ends = Endpoints(case, sim, sim_tls, logs, s3=variant in S3_VARIANTS)
    try:
        timeout_s = 60 + case.size / (2 * MIB)
        log_path = logs / f"{case.name}-{variant}-{run}.log"
        rss_path = logs / f"{case.name}-{variant}-{run}.rss"
        command = variant_command(variant, run, case, ends, args, logs)
        pids = [*ends.source_pids, *ends.s3_pids]
        waited = time.monotonic()
        other_before = wait_quiet(pids, min(args.quiet_wait, QUIET_BUDGET[0]))
        QUIET_BUDGET[0] = max(0.0, QUIET_BUDGET[0] - (time.monotonic() - waited))
        s3_cpu0 = sum(cpu_seconds(p) for p in ends.s3_pids)
        sim_cpu0 = sum(cpu_seconds(p) for p in ends.source_pids)
        busy0, own0 = busy_cpu_seconds(), own_cpu_seconds()
        status, out, usage, wall = run_child(command, timeout_s, log_path, child_env(variant))
        busy, own = busy_cpu_seconds() - busy0, own_cpu_seconds() - own0
        s3_cpu = sum(cpu_seconds(p) for p in ends.s3_pids) - s3_cpu0
        sim_cpu = sum(cpu_seconds(p) for p in ends.source_pids) - sim_cpu0
        child_cpu = usage.ru_utime + usage.ru_stime
        other = max(0.0, busy - own - child_cpu - s3_cpu - sim_cpu) / wall
        rss = usage.ru_maxrss / 1024
        if status != 0:
            tail = log_path.read_text().strip().splitlines()[-1:] or [f"exit status {status}"]
            error = "timed out" if status == -9 else tail[0][:200]
            return Sample(variant, run, ok=False, error=error)
        if variant == "curl":
            seconds_text, size_text, code = out.split()
            if code != "200" or int(size_text) != case.size:
                return Sample(variant, run, ok=False, error=f"curl got HTTP {code}, {size_text} bytes")
            seconds, moved, cpu = float(seconds_text), int(size_text), child_cpu
            with contextlib.suppress(OSError, ValueError, IndexError):
                rss = int(rss_path.read_text().split()[-1]) / 1024
        elif variant == "aws-cli":
            landed = ends.landed_size(f"bench/{case.name}/{variant}/{run}")
            if landed != case.size:
                return Sample(variant, run, ok=False, error=f"aws s3 cp landed {landed} bytes")
            seconds, moved, cpu = wall, landed, child_cpu
        else:
            # The variant's one JSON line (under --profile, py-spy's own messages follow it).
            result = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
            seconds, moved, cpu, rss = result["seconds"], result["bytes"], result["cpu_seconds"], result["peak_rss_mib"]
        return Sample(variant, run, True, seconds, moved, rss, cpu, s3_cpu, sim_cpu, other, other_before)
    finally:
        ends.close()


def ensure_smart_open() -> bool:
    if importlib.util.find_spec("smart_open") is not None:
        return True
    log("smart_open is not installed: installing it into this environment for the benchmark (pip)")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "smart_open>=7"],
        check=False,
        timeout=300,
    )
    importlib.invalidate_caches()
    return done.returncode == 0 and importlib.util.find_spec("smart_open") is not None


def plan(args: argparse.Namespace, with_smart_open: bool) -> list[Case]:
    peers = ["upload_fileobj", "upload_fileobj-crt", *(["aws-cli"] if AWS_CLI.exists() else [])]
    peers += ["smart_open"] if with_smart_open else []
    floor = ["source-ranged", "sink"]
    uncapped = ["source-ranged", "source-stream", "curl", "sink", "ours", *peers, "put_object"]
    # The cap is on the source, so the sink alone is the uncapped case's sink (same size): not measured twice.
    capped = ["source-ranged", "source-stream", "ours", *peers]
    # 2 GiB: read everything into memory (4 GiB of RSS) says nothing new; plain HTTP is for comparison.
    large = [*floor, "source-stream", "ours", *peers]
    plain = [*floor, "ours", "upload_fileobj", "upload_fileobj-crt"]
    cap = CAP_MIB * MIB
    if args.quick:
        return [
            Case("tls-uncapped-64MiB", "64 MiB", 64 * MIB, "2026-01-03", None, 1, uncapped),
            Case("plain-uncapped-64MiB", "64 MiB", 64 * MIB, "2026-01-03", None, 1, plain, tls=False),
            Case(f"tls-capped{CAP_MIB}-64MiB", "64 MiB", 64 * MIB, "2026-01-03", cap, 1, capped),
        ]
    return [
        Case("tls-uncapped-256MiB", "256 MiB", 256 * MIB, "2026-01-01", None, args.runs, uncapped),
        Case(f"tls-capped{CAP_MIB}-256MiB", "256 MiB", 256 * MIB, "2026-01-01", cap, args.capped_runs, capped),
        Case("tls-uncapped-2GiB", "2 GiB", 2 * GIB, "2026-01-02", None, args.large_runs, large),
        Case("plain-uncapped-256MiB", "256 MiB", 256 * MIB, "2026-01-01", None, args.runs, plain, tls=False),
        Case("plain-uncapped-2GiB", "2 GiB", 2 * GIB, "2026-01-02", None, args.large_runs, plain, tls=False),
    ]


def select(args: argparse.Namespace, cases: list[Case]) -> list[Case]:
    """The cases and variants ``--cases`` and ``--variants`` name (all of them when not given)."""
    if args.cases:
        wanted = set(args.cases.split(","))
        unknown = wanted - {c.name for c in cases}
        if unknown:
            raise SystemExit(f"unknown case(s) {sorted(unknown)}; the cases are {[c.name for c in cases]}")
        cases = [c for c in cases if c.name in wanted]
    if args.variants:
        wanted = set(args.variants.split(","))
        unknown = wanted - set(LABELS)
        if unknown:
            raise SystemExit(f"unknown variant(s) {sorted(unknown)}; the variants are {sorted(LABELS)}")
        for case in cases:
            case.variants = [v for v in case.variants if v in wanted]
    return [c for c in cases if c.variants]


def run_cases(args: argparse.Namespace, cases: list[Case], logs: Path) -> list[CaseResult]:
    deadline = time.monotonic() + args.deadline_minutes * 60
    results: list[CaseResult] = []
    sim = SimulatorProcess(CACHE / "sim", logs)
    sim_tls: TlsProxy | None = None
    try:
        sim_tls = TlsProxy(sim.port, logs, "simulator")
        for case in cases:
            log(f"== {case.name}: preparing a {case.size_label} parquet file (cached after the first time)")
            job = sim.ready_job(case.target, case.day, deadline_s=900)
            case.size, case.job_id = int(job["fileSize"]), job["id"]
            sim.configure(bandwidth_bytes_per_sec=case.cap)
            result = CaseResult(case)
            results.append(result)
            total = case.runs * len(case.variants)
            n = 0
            for run in range(1, case.runs + 1):
                for variant in case.variants:  # interleaved: a slow drift spreads over every variant
                    n += 1
                    if time.monotonic() > deadline:
                        log(f"[{case.name} {n}/{total}] {variant} run {run}: skipped (--deadline-minutes reached)")
                        result.samples.append(Sample(variant, run, ok=False, error="skipped: deadline"))
                        continue
                    sample = measure(variant, run, case, sim, sim_tls, args, logs)
                    result.samples.append(sample)
                    if sample.ok:
                        log(
                            f"[{case.name} {n}/{total}] {variant} run {run}: {sample.mib_s:7.1f} MiB/s "
                            f"({sample.seconds:6.2f} s), peak RSS {sample.rss_mib:7.1f} MiB, CPU {sample.cpu_s:5.1f} s "
                            f"= {sample.cpu_per_gib:5.2f} s/GiB, S3 side CPU {sample.s3_cpu_s:5.1f} s, "
                            f"others' load {sample.other_cores:4.2f} cores"
                        )
                    else:
                        log(f"[{case.name} {n}/{total}] {variant} run {run}: FAILED: {sample.error}")
            sim.configure(bandwidth_bytes_per_sec=None)
    finally:
        if sim_tls is not None:
            sim_tls.close()
        sim.close()
    return results


# -- reporting ---------------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError, ValueError):
        kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[1])  # type: ignore[index]
        mem = f"{kib / 1024 / 1024:.1f} GiB"
    return {
        "nproc": str(os.cpu_count()),
        "memory": mem,
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(result: CaseResult) -> list[str]:
    lines = [
        "| variant | client CPU s/GiB (median) | MiB/s (median) | each run, MiB/s | peak RSS MiB (max) | client CPU s "
        "| S3 side CPU s | source side CPU s | others' load, cores (max) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for variant in result.case.variants:
        ok = result.of(variant)
        tried = [s for s in result.samples if s.variant == variant]
        failed = [s.error for s in tried if not s.ok]
        if not ok:
            lines.append(f"| {LABELS[variant]} | failed: {failed[0] if failed else 'not run'} | | | | | | | |")
            continue

        def med(attr: str, samples: list[Sample] = ok) -> float:
            return statistics.median(getattr(s, attr) for s in samples)

        each = ", ".join(f"{s.mib_s:.0f}" if s.ok else "failed" for s in tried)
        s3_cpu = fmt(med("s3_cpu_s")) if variant in S3_VARIANTS else "–"
        lines.append(
            f"| {LABELS[variant]} | {fmt(result.cpu_per_gib(variant), 2)} | {fmt(result.median_mib_s(variant))} "
            f"| {each} | {fmt(result.peak_rss(variant))} | {fmt(med('cpu_s'))} | {s3_cpu} | {fmt(med('sim_cpu_s'))} "
            f"| {max(s.other_cores for s in ok):.2f} |"
        )
    return lines


@dataclass
class Figure:
    name: str
    value: str
    target: str
    met: bool | None  # None: could not be computed in this run


def floor_cpu(result: CaseResult) -> float | None:
    """The client CPU per GiB of the floor: the source alone plus the sink alone."""
    src, snk = result.cpu_per_gib("source-ranged"), result.cpu_per_gib("sink")
    return None if src is None or snk is None else src + snk


def cpu_figures(r: CaseResult) -> list[Figure]:
    where = f"{'TLS' if r.case.tls else 'plain HTTP'}, uncapped, {r.case.size_label}"
    ours, peer, crt, floor = (
        r.cpu_per_gib("ours"),
        r.cpu_per_gib("upload_fileobj"),
        r.cpu_per_gib("upload_fileobj-crt"),
        floor_cpu(r),
    )
    out: list[Figure] = []
    if ours is None or peer is None:
        out.append(Figure(f"ours ÷ upload_fileobj, client CPU per GiB, {where}", "n/a", "≤ 0.80", None))
    else:
        value = f"{ours / peer:.2f} ({ours:.2f} ÷ {peer:.2f} CPU-s/GiB)"
        out.append(Figure(f"ours ÷ upload_fileobj, client CPU per GiB, {where}", value, "≤ 0.80", ours <= 0.8 * peer))
    if ours is None or floor is None:
        out.append(Figure(f"ours ÷ floor (source alone + sink alone), CPU per GiB, {where}", "n/a", "≤ 1.30", None))
    else:
        value = f"{ours / floor:.2f} ({ours:.2f} ÷ {floor:.2f} CPU-s/GiB)"
        out.append(
            Figure(
                f"ours ÷ floor (source alone + sink alone), CPU per GiB, {where}", value, "≤ 1.30", ours <= 1.3 * floor
            )
        )
    if ours is not None and crt is not None:
        value = f"{ours / crt:.2f} ({ours:.2f} ÷ {crt:.2f} CPU-s/GiB)"
        out.append(Figure(f"ours ÷ CRT transfer client, CPU per GiB, {where}", value, "stated", None))
    return out


def figures(results: list[CaseResult]) -> list[Figure]:
    out: list[Figure] = []
    uncapped = [r for r in results if r.case.cap is None]
    for r in uncapped:
        out += cpu_figures(r)
    for r in (r for r in results if r.case.cap is not None):
        cap = f"{r.case.cap / MIB:.0f} MiB/s" if r.case.cap else ""
        ours = r.median_mib_s("ours")
        for peer in PEERS:
            if peer not in r.case.variants:
                continue
            theirs = r.median_mib_s(peer)
            name = f"ours ÷ {peer}, MiB/s, {r.case.size_label}, TLS, cap {cap} per connection"
            if ours is None or theirs is None:
                out.append(Figure(name, "n/a", "≥ 4.0", None))
                continue
            ratio = ours / theirs
            out.append(Figure(name, f"{ratio:.2f} ({ours:.1f} ÷ {theirs:.1f} MiB/s)", "≥ 4.0", ratio >= 4.0))
    for r in uncapped:
        peak = r.peak_rss("ours")
        name = f"ours peak RSS, {r.case.size_label}, {'TLS' if r.case.tls else 'plain'}"
        out.append(Figure(name, f"{fmt(peak)} MiB", "≤ 200 MiB", None if peak is None else peak <= 200))
    for tls in (True, False):
        sizes = {r.case.size_label: r.peak_rss("ours") for r in uncapped if r.case.tls == tls}
        a, b = sizes.get("256 MiB"), sizes.get("2 GiB")
        name = f"ours peak RSS flat: 2 GiB vs 256 MiB, {'TLS' if tls else 'plain'}"
        if a and b:
            growth = (b - a) / a
            out.append(Figure(name, f"{growth:+.1%} ({b:.1f} vs {a:.1f} MiB)", "within ±10 %", abs(growth) <= 0.10))
        elif not args_quick(results):
            out.append(Figure(name, "n/a (needs both sizes)", "within ±10 %", None))
    return out


#: Lambda arm64's price per GB-second (us-east-1 list price; docs/cost.md), and the memory of one full vCPU.
LAMBDA_GB_SECOND_USD = 0.0000133334
ONE_VCPU_MB = 1769


def lambda_cost(results: list[CaseResult]) -> list[str]:
    """What a GiB landed costs the Download function at three memory sizes, from ours' measured CPU per GiB
    (TLS, uncapped, the largest file): Lambda gives CPU in proportion to memory, ``ONE_VCPU_MB`` being one vCPU."""
    measured = [r for r in results if r.case.tls and r.case.cap is None and r.cpu_per_gib("ours") is not None]
    if not measured:
        return []
    r = max(measured, key=lambda r: r.case.size)
    cpu = r.cpu_per_gib("ours") or 0.0
    lines = [
        f"## What a GiB landed costs the Download function (from ours' {cpu:.2f} CPU-s/GiB, TLS, {r.case.size_label})",
        "",
        "Lambda gives a function CPU in proportion to its memory (1,769 MB is one vCPU). The duration of a GiB is "
        "the longer of its CPU time at that share and its time on the network; GB-s per GiB are memory × that "
        f"duration, priced at Lambda arm64's ${LAMBDA_GB_SECOND_USD:.10f} per GB-second (INIT and the S3 requests "
        "not included; the CPU was measured on this machine's x86 cores, not on Graviton). docs/cost.md explains "
        "the memory size chosen from it.",
        "",
        "| memory | vCPU | CPU time per GiB | CPU ceiling | CPU-bound: GB-s, $ per GiB | network at 80 MiB/s "
        "| network at 20 MB/s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for memory in (512, 1024, ONE_VCPU_MB):
        vcpu = memory / ONE_VCPU_MB
        seconds = cpu / vcpu

        def priced(duration: float, memory: int = memory) -> str:
            gb_s = memory / 1024 * duration
            return f"{gb_s:.1f} GB-s, ${gb_s * LAMBDA_GB_SECOND_USD:.6f}"

        lines.append(
            f"| {memory:,} MB | {vcpu:.2f} | {seconds:.1f} s | {1024 / seconds:.0f} MiB/s | {priced(seconds)} "
            f"| {priced(max(seconds, 1024 / 80))} | {priced(max(seconds, GIB / 20e6))} |"
        )
    return [*lines, ""]


def args_quick(results: list[CaseResult]) -> bool:
    return all(r.case.size < 256 * MIB for r in results)


def reading(results: list[CaseResult]) -> list[str]:
    """Sentences computed from the numbers (the hand-written notes below them are kept across rewrites)."""
    lines: list[str] = []
    for r in results:
        ours = r.cpu_per_gib("ours")
        if ours is None:
            continue
        where = f"{r.case.size_label}, {'TLS' if r.case.tls else 'plain HTTP'}"
        if r.case.cap is None:
            floor = floor_cpu(r)
            peers = {p: r.cpu_per_gib(p) for p in PEERS}
            peer_text = ", ".join(f"{p} {v:.2f}" for p, v in peers.items() if v)
            floor_text = f"the floor (source alone + sink alone) {floor:.2f}; " if floor else ""
            lines.append(f"- {where}, uncapped: client CPU-s per GiB: ours {ours:.2f}; {floor_text}{peer_text}.")
        else:
            mib = {p: r.median_mib_s(p) for p in PEERS}
            peer_text = ", ".join(f"{p} {v:.0f}" for p, v in mib.items() if v)
            lines.append(
                f"- {where}, source capped at {r.case.cap / MIB:.0f} MiB/s per connection: ours "
                f"{fmt(r.median_mib_s('ours'), 0)} MiB/s; the ranged source alone {fmt(r.median_mib_s('source-ranged'), 0)}; "
                f"the peers, each one stream: {peer_text} MiB/s."
            )
    samples = [s for r in results for s in r.samples if s.ok]
    disturbed = [s for s in samples if s.other_cores > 0.3]
    if samples:
        worst = max(s.other_cores for s in samples)
        lines.append(
            f"- Other load: {len(disturbed)} of {len(samples)} runs shared the machine with more than 0.3 cores of "
            f"other work (worst {worst:.2f} cores); see the last column."
        )
    return lines


def kept_notes() -> str:
    if not BENCHMARKS_MD.exists():
        return ""
    text = BENCHMARKS_MD.read_text()
    start, end = text.find(NOTES_START), text.find(NOTES_END)
    if start == -1 or end == -1:
        return ""
    return text[start + len(NOTES_START) : end].strip("\n")


def render(
    args: argparse.Namespace, results: list[CaseResult], started: dt.datetime, elapsed: float, command: str
) -> str:
    info = machine()
    lines = [
        "# Transfer benchmark",
        "",
        "Written by `python -m bench.run --write` (`make bench`); do not edit the tables by hand. The section between",
        "the `notes` markers is kept when the file is rewritten.",
        "",
        f"- Command: `{command}` ({'quick smoke mode: 64 MiB, 1 run — not the real figures' if args.quick else 'full run'})",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC, took {elapsed / 60:.1f} min",
        f"- Machine: {info['nproc']} cores (`nproc`), {info['memory']} memory, {info['cpu']}, Linux {info['kernel']}, "
        f"Python {info['python']}",
        "- **The figure users pay for is client CPU-seconds per GiB** (first column): user + system CPU of the client "
        "process during the transfer, divided by the GiB moved. A Lambda is billed for its wall time at its memory "
        "size and gets CPU in proportion to memory, so CPU per GiB is what sets both its speed and its price "
        "(docs/cost.md). It hardly depends on the sink: the S3 emulator's slowness shows in the wall time, not here.",
        "- **TLS on both legs** (as on AWS): the source and the S3 endpoint are each behind a TLS-terminating loopback "
        "proxy (`bench/tls.py`, Python asyncio, TLS 1.3, its own process) with a test CA generated at the start of "
        "the run (`cryptography`; kept in `.cache/bench/tls`, never committed) that only the client processes trust "
        "(`REQUESTS_CA_BUNDLE`, `AWS_CA_BUNDLE`, curl's CA bundle). The download URL is the simulator's, same path "
        "and query, on the proxy's https port. The plain-HTTP tables are for comparison.",
        f"- S3 emulator: {MotoProcess.name} {moto_version()} (`moto_server -H 127.0.0.1 -p PORT`), a fresh process (and "
        "a fresh TLS proxy) for every run that writes to S3.",
        "- Source: the OmboriGrid simulator (`omborigrid-export simulate`) in its own process, serving real parquet "
        "padded to the size (`target_bytes`), from the page cache, with `sendfile` (uncapped) or paced writes (capped: "
        "`bandwidth_bytes_per_sec`, per connection)",
        f"- Part size {args.part_size // MIB} MiB and concurrency {args.concurrency} for ours, the sink alone and the "
        "ranged source alone (TransferSettings' defaults). Ours and the sink alone use the S3 client the Download "
        "function makes; every peer a default `boto3.client('s3')`.",
        "- The floor is the source alone (the same ranges, concurrency and reads as ours, to nowhere) plus the sink "
        "alone (the same parts uploaded from memory with their CRC32, the same client): CPU per GiB of the two added.",
        "- **All processes share the same cores**: the simulator, the S3 emulator, the TLS proxies and the variant "
        f"being measured each run in their own process on these {info['nproc']} cores. S3-side and source-side CPU are "
        "those processes' CPU (emulator + its proxy; simulator + its proxy) during the run (from /proc).",
        "- Each variant runs in its own process; the clock covers the transfer only (imports, client set-up and the "
        "job lookup come before it), except for the curl and aws-cli rows (whole processes, from `wait4`). Peak RSS "
        "is the process's own VmHWM (whole process, interpreter included; curl's from `/usr/bin/time`; aws-cli's is "
        "the larger of curl and aws). Runs are interleaved across variants. Throughput and CPU per GiB are medians "
        "over runs, RSS the maximum. Others' load is the CPU the rest of the machine used during the run (busy time "
        "in /proc/stat minus ours), in cores: this machine is shared with other sessions' work, so each run first "
        f"waits up to {args.quiet_wait:.0f} s for that load to drop below 0.3 cores ({args.quiet_budget:.0f} s in "
        "all); CPU-seconds are much less sensitive to that load than wall time.",
        "",
    ]
    for r in results:
        cap = f", source capped at {r.case.cap / MIB:.0f} MiB/s per connection" if r.case.cap else ", uncapped"
        runs = f"{r.case.runs} run{'s' if r.case.runs > 1 else ''} per variant"
        over = "TLS" if r.case.tls else "plain HTTP"
        lines += [f"## {over}, {r.case.size_label} ({r.case.size:,} bytes){cap}, {runs}", ""]
        if r.case.cap is not None:
            lines += ["The cap is on the source only, so the sink alone is the uncapped table's (same size).", ""]
        lines += [*table(r), ""]
    lines += ["## Must-show figures", "", "| figure | value | target | met |", "| --- | --- | --- | --- |"]
    for f in figures(results):
        met = "n/a" if f.met is None else ("yes" if f.met else "**no**")
        lines.append(f"| {f.name} | {f.value} | {f.target} | {met} |")
    lines += ["", *lambda_cost(results)]
    lines += ["## Reading", "", *reading(results), "", NOTES_START, kept_notes(), NOTES_END, ""]
    return "\n".join(lines)


def measure_all(args: argparse.Namespace) -> tuple[list[CaseResult], dt.datetime, float]:
    # SIGTERM (make interrupted, CI timeout) unwinds like Ctrl-C, so every process we started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.pop("AWS_PROFILE", None)
    if shutil.which("curl") is None:
        raise SystemExit("curl is not installed: apt-get install curl")
    with_smart_open = ensure_smart_open()
    if not with_smart_open:
        log("smart_open could not be installed: its variant is left out")
    logs = CACHE / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    # A fresh test CA for every run; its key never leaves .cache (git-ignored).
    shutil.rmtree(TLS_DIR, ignore_errors=True)
    make_test_ca(TLS_DIR)
    if not AWS_CLI.exists():
        log(f"awscli is not installed at {AWS_CLI} (make bench installs it): its variant is left out")
    started, t0 = dt.datetime.now(dt.UTC), time.monotonic()
    try:
        results = run_cases(args, select(args, plan(args, with_smart_open)), logs)
    finally:
        if not args.keep_logs:
            shutil.rmtree(logs, ignore_errors=True)
    return results, started, time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md with the results")
    parser.add_argument("--quick", action="store_true", help="smoke check: 64 MiB, one run of each variant")
    parser.add_argument("--runs", type=int, default=5, help="runs per variant, 256 MiB uncapped (default 5)")
    parser.add_argument(
        "--capped-runs",
        type=int,
        default=3,
        help="runs per variant, 256 MiB capped at 10 MiB/s per connection (default 3)",
    )
    parser.add_argument("--large-runs", type=int, default=1, help="runs per variant, 2 GiB (default 1)")
    parser.add_argument("--part-size", type=int, default=DEFAULT_PART_SIZE)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--deadline-minutes", type=float, default=30.0, help="no new run starts after this")
    parser.add_argument(
        "--quiet-wait", type=float, default=10.0, help="seconds to wait, before each run, for other load to settle"
    )
    parser.add_argument("--quiet-budget", type=float, default=240.0, help="total seconds for those waits")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="no measuring: render the last full run's results again (with --quick: the last quick run's)",
    )
    parser.add_argument("--keep-logs", action="store_true", help=f"keep per-run logs in {CACHE / 'logs'}")
    parser.add_argument("--cases", help="only these cases, comma-separated (e.g. tls-uncapped-2GiB); no --write")
    parser.add_argument("--variants", help="only these variants, comma-separated (e.g. ours,sink); no --write")
    parser.add_argument(
        "--profile",
        choices=("py-spy", "perf"),
        help="sample each Python variant with py-spy (Python stacks) or perf (on-CPU) into the kept logs",
    )
    args = parser.parse_args(argv)
    partial = bool(args.cases or args.variants)
    if partial and args.write:
        parser.error("--cases and --variants measure part of the benchmark: BENCHMARKS.md is not rewritten from it")
    if args.profile:
        args.keep_logs = True
    QUIET_BUDGET[0] = args.quiet_budget

    if args.render_only:
        raw = json.loads((RESULTS_JSON_QUICK if args.quick else RESULTS_JSON).read_text())
        results = [
            CaseResult(
                Case(**{k: v for k, v in c.items() if k != "samples"}),
                [Sample(**sample) for sample in c["samples"]],
            )
            for c in raw["cases"]
        ]
        for name, value in raw.get("args", {}).items():
            setattr(args, name, value)
        started, elapsed = dt.datetime.fromisoformat(raw["started"]), float(raw.get("elapsed", 0.0))
        command = raw.get("command", "python -m bench.run")
    else:
        command = " ".join(["python -m bench.run", *(sys.argv[1:] if argv is None else argv)])
        results, started, elapsed = measure_all(args)
        raw = {
            "started": started.isoformat(),
            "elapsed": elapsed,
            "command": command,
            "args": {k: getattr(args, k) for k in RENDERED_ARGS},
            "cases": [{**asdict(r.case), "samples": [asdict(s) for s in r.samples]} for r in results],
        }
        saved = RESULTS_JSON_PARTIAL if partial else RESULTS_JSON_QUICK if args.quick else RESULTS_JSON
        saved.write_text(json.dumps(raw, indent=1))
    text = render(args, results, started, elapsed, command)
    for f in figures(results):
        met = "n/a" if f.met is None else ("met" if f.met else "NOT MET")
        log(f"{f.name}: {f.value} (target {f.target}): {met}")
    if args.write:
        BENCHMARKS_MD.write_text(text)
        log(f"wrote {BENCHMARKS_MD}")
    else:
        print(text)
    failures = sum(1 for r in results for s in r.samples if not s.ok and not s.error.startswith("skipped"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
