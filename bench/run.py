"""Transfer benchmark (issue 4): ours against its limit and the peers, with and without a per-connection cap.

``python -m bench.run`` (what ``make bench`` runs) measures; ``--write`` also rewrites ``BENCHMARKS.md``;
``--quick`` is a smoke check (64 MiB, one run). Progress goes to stderr, one line per variant run.

Processes: the OmboriGrid simulator (one process for the whole run), the S3 emulator (moto server, a fresh
process for every run that writes to S3, so no run inherits another's heap), and each measured variant (its
own process, see :mod:`bench.variant`). They all share the machine's cores, which BENCHMARKS.md states.
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
#: The options that shape BENCHMARKS.md, saved with the results so --render-only writes the same text.
RENDERED_ARGS = ("quick", "part_size", "concurrency", "quiet_wait", "quiet_budget")
NOTES_START, NOTES_END = "<!-- notes:start -->", "<!-- notes:end -->"

#: Seconds left for waiting on other load, over the whole run (set from --quiet-budget).
QUIET_BUDGET = [0.0]
CAPS_MIB = (10, 20)  # per-connection caps: 10 is the must-show case (see BENCHMARKS.md), 20 for context

LABELS = {
    "source-ranged": "source alone: requests, ranged parts × concurrency (how ours reads)",
    "source-stream": "source alone: requests, one stream",
    "curl": "source alone: `curl -o /dev/null`, one stream",
    "sink": "sink alone: multipart upload from memory, same parts × concurrency",
    "ours": f"**ours**: `Transfer.land` (defaults: {DEFAULT_PART_SIZE // MIB} MiB parts × {DEFAULT_CONCURRENCY})",
    "ours-16x4": "ours with 16 MiB parts × 4 (not the default: half the connections)",
    "upload_fileobj": "boto3 `upload_fileobj(response.raw)`, default TransferConfig",
    "smart_open": "`smart_open` http → `smart_open` s3, `shutil.copyfileobj`",
    "put_object": "read everything (`response.content`), then `put_object`",
}
S3_VARIANTS = frozenset({"sink", "ours", "ours-16x4", "upload_fileobj", "smart_open", "put_object"})


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


def run_child(command: list[str], timeout_s: float, log_path: Path) -> tuple[int, str, Any, float]:
    """Run one variant process to its end (or kill it at the deadline). Returns (status, stdout, rusage, wall)."""
    out_path = log_path.with_suffix(".out")
    with out_path.open("w") as out, log_path.open("w") as err:
        started = time.monotonic()
        proc = subprocess.Popen(command, stdout=out, stderr=err, cwd=ROOT)
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


def measure(variant: str, run: int, case: Case, sim: SimulatorProcess, args: argparse.Namespace, logs: Path) -> Sample:
    moto = MotoProcess(logs) if variant in S3_VARIANTS else None
    try:
        timeout_s = 60 + case.size / (2 * MIB)
        log_path = logs / f"{case.name}-{variant}-{run}.log"
        rss_path = logs / f"{case.name}-{variant}-{run}.rss"
        if variant == "curl":
            url = sim.get_job(case.job_id)["downloadUrl"]
            command = ["curl", "-sS", "-o", "/dev/null", "-w", "%{time_total} %{size_download} %{http_code}", url]
            if Path("/usr/bin/time").exists():
                # A small parent, so curl's peak RSS is curl's (see bench.variant.peak_rss_mib).
                command = ["/usr/bin/time", "-f", "%M", "-o", str(rss_path), *command]
        else:
            alternative = variant == "ours-16x4"
            params = {
                "variant": "ours" if alternative else variant,
                "api_url": sim.base_url,
                "token": TOKEN,
                "job_id": case.job_id,
                "s3_endpoint": moto.endpoint if moto else "",
                "bucket": BUCKET,
                "key": f"bench/{case.name}/{variant}/{run}",
                "part_size": 16 * MIB if alternative else args.part_size,
                "concurrency": 4 if alternative else args.concurrency,
                "size": case.size,
            }
            command = [sys.executable, "-m", "bench.variant", json.dumps(params)]
        pids = [sim.pid, *([moto.pid] if moto else [])]
        waited = time.monotonic()
        other_before = wait_quiet(pids, min(args.quiet_wait, QUIET_BUDGET[0]))
        QUIET_BUDGET[0] = max(0.0, QUIET_BUDGET[0] - (time.monotonic() - waited))
        s3_cpu0, sim_cpu0 = cpu_seconds(moto.pid) if moto else 0.0, cpu_seconds(sim.pid)
        busy0, own0 = busy_cpu_seconds(), own_cpu_seconds()
        status, out, usage, wall = run_child(command, timeout_s, log_path)
        busy, own = busy_cpu_seconds() - busy0, own_cpu_seconds() - own0
        s3_cpu = cpu_seconds(moto.pid) - s3_cpu0 if moto else 0.0
        sim_cpu = cpu_seconds(sim.pid) - sim_cpu0
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
        else:
            result = json.loads(out.strip().splitlines()[-1])
            seconds, moved, cpu, rss = result["seconds"], result["bytes"], result["cpu_seconds"], result["peak_rss_mib"]
        return Sample(variant, run, True, seconds, moved, rss, cpu, s3_cpu, sim_cpu, other, other_before)
    finally:
        if moto is not None:
            moto.close()


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
    peers = ["upload_fileobj", *(["smart_open"] if with_smart_open else []), "put_object"]
    uncapped = ["source-ranged", "source-stream", "curl", "sink", "ours", *peers]
    # The cap is on the source, so the sink alone is the uncapped case's sink (same size): not measured twice.
    capped = ["source-ranged", "source-stream", "ours", "ours-16x4", *peers]
    # The second cap is context only: the one-stream source and put_object add little there and cost minutes.
    capped_context = ["source-ranged", "ours", "ours-16x4", *[p for p in peers if p != "put_object"]]
    low, high = (c * MIB for c in CAPS_MIB)
    if args.quick:
        return [
            Case("uncapped-64MiB", "64 MiB", 64 * MIB, "2026-01-03", None, 1, uncapped),
            Case(f"capped{CAPS_MIB[0]}-64MiB", "64 MiB", 64 * MIB, "2026-01-03", low, 1, capped),
        ]
    return [
        Case("uncapped-256MiB", "256 MiB", 256 * MIB, "2026-01-01", None, args.runs, uncapped),
        Case(f"capped{CAPS_MIB[0]}-256MiB", "256 MiB", 256 * MIB, "2026-01-01", low, args.capped_runs, capped),
        Case(
            f"capped{CAPS_MIB[1]}-256MiB",
            "256 MiB",
            256 * MIB,
            "2026-01-01",
            high,
            1,
            capped_context,
        ),
        Case("uncapped-2GiB", "2 GiB", 2 * GIB, "2026-01-02", None, args.large_runs, uncapped),
    ]


def run_cases(args: argparse.Namespace, cases: list[Case], logs: Path) -> list[CaseResult]:
    deadline = time.monotonic() + args.deadline_minutes * 60
    results: list[CaseResult] = []
    sim = SimulatorProcess(CACHE / "sim", logs)
    try:
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
                    sample = measure(variant, run, case, sim, args, logs)
                    result.samples.append(sample)
                    if sample.ok:
                        log(
                            f"[{case.name} {n}/{total}] {variant} run {run}: {sample.mib_s:7.1f} MiB/s "
                            f"({sample.seconds:6.2f} s), peak RSS {sample.rss_mib:7.1f} MiB, CPU {sample.cpu_s:5.1f} s, "
                            f"S3 emulator CPU {sample.s3_cpu_s:5.1f} s, others' load {sample.other_cores:4.2f} cores"
                        )
                    else:
                        log(f"[{case.name} {n}/{total}] {variant} run {run}: FAILED: {sample.error}")
            sim.configure(bandwidth_bytes_per_sec=None)
    finally:
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
        "| variant | MiB/s (median) | each run, MiB/s | peak RSS MiB (max) | client CPU s | S3 emulator CPU s "
        "| simulator CPU s | others' load, cores (max) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for variant in result.case.variants:
        ok = result.of(variant)
        tried = [s for s in result.samples if s.variant == variant]
        failed = [s.error for s in tried if not s.ok]
        if not ok:
            lines.append(f"| {LABELS[variant]} | failed: {failed[0] if failed else 'not run'} | | | | | | |")
            continue

        def med(attr: str, samples: list[Sample] = ok) -> float:
            return statistics.median(getattr(s, attr) for s in samples)

        each = ", ".join(f"{s.mib_s:.0f}" if s.ok else "failed" for s in tried)
        s3_cpu = fmt(med("s3_cpu_s")) if variant in S3_VARIANTS else "–"
        lines.append(
            f"| {LABELS[variant]} | {fmt(result.median_mib_s(variant))} | {each} | {fmt(result.peak_rss(variant))} | "
            f"{fmt(med('cpu_s'))} | {s3_cpu} | {fmt(med('sim_cpu_s'))} | {max(s.other_cores for s in ok):.2f} |"
        )
    return lines


@dataclass
class Figure:
    name: str
    value: str
    target: str
    met: bool | None  # None: could not be computed in this run


def figures(results: list[CaseResult]) -> list[Figure]:
    out: list[Figure] = []
    by_name = {r.case.name: r for r in results}
    uncapped = [r for r in results if r.case.cap is None]
    capped = [r for r in results if r.case.cap is not None]
    for r in uncapped:
        ours, src, snk = r.median_mib_s("ours"), r.median_mib_s("source-ranged"), r.median_mib_s("sink")
        if ours is None or src is None or snk is None:
            out.append(Figure(f"ours ÷ min(source, sink), {r.case.size_label} uncapped", "n/a", "≥ 0.90", None))
            continue
        ratio = ours / min(src, snk)
        value = f"{ratio:.2f} ({ours:.1f} ÷ min({src:.1f}, {snk:.1f}) MiB/s)"
        out.append(Figure(f"ours ÷ min(source, sink), {r.case.size_label} uncapped", value, "≥ 0.90", ratio >= 0.9))
    for r in capped:
        cap = f"{r.case.cap / MIB:.0f} MiB/s" if r.case.cap else ""
        ours = r.median_mib_s("ours")
        for peer in ("upload_fileobj", "smart_open"):
            theirs = r.median_mib_s(peer)
            name = f"ours ÷ {peer}, {r.case.size_label}, cap {cap} per connection"
            if ours is None or theirs is None:
                out.append(Figure(name, "n/a", "≥ 4.0", None))
                continue
            ratio = ours / theirs
            out.append(Figure(name, f"{ratio:.2f} ({ours:.1f} ÷ {theirs:.1f} MiB/s)", "≥ 4.0", ratio >= 4.0))
    rss = {r.case.size_label: r.peak_rss("ours") for r in uncapped}
    for size_label, peak in rss.items():
        out.append(
            Figure(
                f"ours peak RSS, {size_label}",
                f"{fmt(peak)} MiB",
                "≤ 200 MiB",
                None if peak is None else peak <= 200,
            )
        )
    small, large = by_name.get("uncapped-256MiB"), by_name.get("uncapped-2GiB")
    if small and large and small.peak_rss("ours") and large.peak_rss("ours"):
        a, b = small.peak_rss("ours"), large.peak_rss("ours")
        assert a is not None
        assert b is not None
        growth = (b - a) / a
        out.append(
            Figure(
                "ours peak RSS flat: 2 GiB vs 256 MiB",
                f"{growth:+.1%} ({b:.1f} vs {a:.1f} MiB)",
                "within ±10 %",
                abs(growth) <= 0.10,
            )
        )
    else:
        out.append(Figure("ours peak RSS flat: 2 GiB vs 256 MiB", "n/a (needs both sizes)", "within ±10 %", None))
    return out


def reading(results: list[CaseResult]) -> list[str]:
    """Sentences computed from the numbers (the hand-written notes below them are kept across rewrites)."""
    lines: list[str] = []
    for r in results:
        ours = r.median_mib_s("ours")
        if ours is None:
            continue
        if r.case.cap is None:
            src, snk = r.median_mib_s("source-ranged"), r.median_mib_s("sink")
            if src and snk:
                limit = "the sink (S3 emulator)" if snk < src else "the source"
                lines.append(
                    f"- {r.case.size_label} uncapped: the limit is {limit}: source {src:.0f} MiB/s, sink {snk:.0f} "
                    f"MiB/s; ours {ours:.0f} MiB/s = {ours / min(src, snk):.0%} of it."
                )
        else:
            src = r.median_mib_s("source-ranged")
            stream = r.median_mib_s("source-stream")
            peers = {p: r.median_mib_s(p) for p in ("upload_fileobj", "smart_open", "put_object")}
            peer_text = ", ".join(f"{p} {v:.0f}" for p, v in peers.items() if v)
            alternative = r.median_mib_s("ours-16x4")
            stream_text = f"one stream reads {stream:.0f} MiB/s and " if stream else ""
            lines.append(
                f"- {r.case.size_label} with a {r.case.cap / MIB:.0f} MiB/s per-connection cap: {stream_text}the "
                f"ranged parts {fmt(src, 0)} MiB/s; the peers, each one stream, get {peer_text} MiB/s; ours gets "
                f"{ours:.0f} MiB/s" + (f" ({alternative:.0f} MiB/s with 16 MiB parts × 4)." if alternative else ".")
            )
            sink = next(
                (u.median_mib_s("sink") for u in results if u.case.cap is None and u.case.size == r.case.size), None
            )
            if src and sink:
                serial = 1 / (1 / src + 1 / sink)
                lines.append(
                    f"  Ours overlaps reads and uploads, so it can approach min(source, sink) = {min(src, sink):.0f} "
                    "MiB/s, less the last parts' uploads and the completion, which nothing overlaps; workers that "
                    f"read a part and then upload it would move at most 1/(1/source + 1/sink) = 1/(1/{src:.0f} + "
                    f"1/{sink:.0f}) = {serial:.0f} MiB/s."
                )
        rss = r.peak_rss("ours")
        peers_rss = {p: r.peak_rss(p) for p in ("upload_fileobj", "smart_open", "put_object")}
        if rss is not None and r.case.cap is None:
            lines.append(
                f"- {r.case.size_label} memory: ours peaks at {rss:.0f} MiB; "
                + ", ".join(f"{p} {v:.0f} MiB" for p, v in peers_rss.items() if v)
                + "."
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
        f"- S3 emulator: {MotoProcess.name} {moto_version()} (`moto_server -H 127.0.0.1 -p PORT`), a fresh process for "
        "every run that writes to S3. Looked at for a faster one (15-minute budget): LocalStack (`localstack-core` from "
        "PyPI) installs but its runtime did not start here without pinning several of its dependencies; s3rver (npm) "
        "was not tried: our transfer needs the emulator to record a FULL_OBJECT CRC32 and return it on `HeadObject` "
        "(moto does), which could not be confirmed for s3rver within the budget.",
        "- Source: the OmboriGrid simulator (`omborigrid-export simulate`) in its own process, serving real parquet "
        "padded to the size (`target_bytes`), from the page cache, with `sendfile` (uncapped) or paced writes (capped: "
        "`bandwidth_bytes_per_sec`, per connection)",
        f"- Part size {args.part_size // MIB} MiB and concurrency {args.concurrency} for ours, the sink alone and the "
        "ranged source alone (TransferSettings' defaults)",
        "- **All processes share the same cores**: the simulator, the S3 emulator and the variant being measured each "
        f"run in their own process on these {info['nproc']} cores, so the S3 emulator's CPU (its own column) is taken "
        "from the transfer it measures.",
        "- Each variant runs in its own process; the clock covers the transfer only (imports, client set-up and the "
        "job lookup come before it). Peak RSS is the process's own VmHWM (whole process, interpreter included; curl's "
        "from `/usr/bin/time`). Client CPU is the process's CPU time during the clock (curl: whole process). Runs are interleaved "
        "across variants. Throughput is the median over runs, RSS the maximum. S3 emulator and simulator CPU are "
        "those processes' CPU time during the run (from /proc). Others' load is the CPU the rest of the machine used "
        "during the run (busy time in /proc/stat minus ours), in cores: this machine may be shared with other "
        f"sessions' work, so each run first waits up to {args.quiet_wait:.0f} s for that load to drop below 0.3 cores "
        f"({args.quiet_budget:.0f} s in all).",
        "",
    ]
    for r in results:
        cap = f", source capped at {r.case.cap / MIB:.0f} MiB/s per connection" if r.case.cap else ", uncapped"
        runs = f"{r.case.runs} run{'s' if r.case.runs > 1 else ''} per variant"
        lines += [f"## {r.case.size_label} ({r.case.size:,} bytes){cap}, {runs}", ""]
        if r.case.cap is not None:
            lines += ["The cap is on the source only, so the sink alone is the uncapped table's (same size).", ""]
        lines += [*table(r), ""]
    lines += ["## Must-show figures", "", "| figure | value | target | met |", "| --- | --- | --- | --- |"]
    for f in figures(results):
        met = "n/a" if f.met is None else ("yes" if f.met else "**no**")
        lines.append(f"| {f.name} | {f.value} | {f.target} | {met} |")
    lines += ["", "## Reading", "", *reading(results), "", NOTES_START, kept_notes(), NOTES_END, ""]
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
    started, t0 = dt.datetime.now(dt.UTC), time.monotonic()
    try:
        results = run_cases(args, plan(args, with_smart_open), logs)
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
        help="runs per variant, 256 MiB capped at 10 MiB/s (default 3; the 20 MiB/s context case: 1)",
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
    args = parser.parse_args(argv)
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
        (RESULTS_JSON_QUICK if args.quick else RESULTS_JSON).write_text(json.dumps(raw, indent=1))
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
