"""Footer benchmark (issue 8): time and memory to decode and prove the footer of a file of many row groups.

``python -m bench.footer`` writes (once, cached under ``.cache/bench``) two parquet files of 10,000 row groups
with pyarrow and measures, for each, the stdlib decoder of :mod:`omborigrid_export.parquet_footer` and the
whole proof (:class:`~omborigrid_export.parquet_proof.ParquetProver`):

* ``narrow``: 4 columns (tenantId, eventTime, int1, str1);
* ``events``: the simulator's full OmboriGrid events schema (26 columns) and data.

Figures: the footer's size; decode and prove time (best and median of ``--repeat`` runs); the tracemalloc
peak of one proof; and the RSS growth of one proof measured in a fresh child process (peak RSS during
the proof minus RSS with the tail already read), so the figure is the decoder's and not the writer's.
This is a benchmark command, not a test; it prints a table and ``--json`` prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from omborigrid_export.models import ExportRequest, JobIdentity
from omborigrid_export.parquet_footer import decode_footer
from omborigrid_export.parquet_proof import ParquetProver, ProofPolicy
from omborigrid_local.simulator.data import DeliverySpec, generate

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
TENANT = "621e1fc633350f0007637a0c"
DAY = dt.date(2024, 4, 12)
MIB = 1024 * 1024
#: Large enough for both files: the benchmark measures the decoder, not the cap.
CAP = 256 * MIB


def narrow_table(rows: int) -> pa.Table:
    start = dt.datetime(2024, 4, 12, tzinfo=dt.UTC)
    return pa.table(
        {
            "tenantId": [TENANT] * rows,
            "eventTime": pa.array(
                [start + dt.timedelta(milliseconds=400 * i) for i in range(rows)], pa.timestamp("us", tz="UTC")
            ),
            "int1": list(range(rows)),
            "str1": [f"search {i % 100}" for i in range(rows)],
        }
    )


def events_table(rows: int) -> pa.Table:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.parquet"
        generate(DeliverySpec(TENANT, DAY.isoformat(), DAY.isoformat(), rows_per_day=rows), path)
        return pq.read_table(path)


def corpus_file(kind: str, row_groups: int, rows_per_group: int) -> Path:
    path = CACHE / f"footer-{kind}-{row_groups}x{rows_per_group}-pyarrow{pa.__version__}.parquet"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        rows = row_groups * rows_per_group
        table = narrow_table(rows) if kind == "narrow" else events_table(rows)
        partial = path.with_suffix(".partial")
        pq.write_table(table, partial, row_group_size=rows_per_group)
        partial.rename(path)
    written = pq.read_metadata(path).num_row_groups
    assert written == row_groups, f"{path.name} has {written} row groups, not {row_groups}"
    return path


def tail_of(path: Path) -> tuple[bytes, int]:
    """The tail a proof needs, read as the transfer reads it: the last 8 bytes, then the footer's bytes."""
    prover = prover_for()
    with path.open("rb") as source:
        size = source.seek(0, 2)
        source.seek(size - 8)
        length = prover.tail_length(size, source.read(8))
        source.seek(size - length)
        return source.read(length), size


def prover_for() -> ParquetProver:
    return ParquetProver(
        JobIdentity("bench-footer", ExportRequest(TENANT, DAY, DAY)), ProofPolicy(max_footer_bytes=CAP)
    )


def timed(action: Any, repeat: int) -> list[float]:
    seconds = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - began)
    return seconds


def measure(path: Path, repeat: int) -> dict[str, Any]:
    tail, size = tail_of(path)
    prover = prover_for()
    decode = timed(lambda: decode_footer(tail, size, max_footer_bytes=CAP), repeat)
    prove = timed(lambda: prover.prove(tail, size), repeat)
    tracemalloc.start()
    proof = prover.prove(tail, size)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    child = subprocess.run(
        [sys.executable, "-m", "bench.footer", "--rss-child", str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return {
        "file": path.name,
        "fileBytes": size,
        "footerBytes": len(tail) - 8,
        "rowGroups": proof.row_groups,
        "columns": len(proof.columns),
        "rows": proof.rows,
        "checks": {k: v.value for k, v in proof.checks.items()},
        "decodeSecondsBest": min(decode),
        "decodeSecondsMedian": statistics.median(decode),
        "proveSecondsBest": min(prove),
        "proveSecondsMedian": statistics.median(prove),
        "tracemallocPeakBytes": peak,
        **json.loads(child.stdout),
    }


def rss_child(path: Path) -> None:
    """In a fresh process: RSS growth of one proof, the tail already in memory.

    The peak (VmHWM) is reset just before the proof (``/proc/self/clear_refs``), so what importing pyarrow
    and reading the tail took is not counted.
    """
    tail, size = tail_of(path)
    prover = prover_for()
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    prover.prove(tail, size)
    peak = _status_kib("VmHWM")
    print(json.dumps({"rssBeforeBytes": before * 1024, "rssGrowthBytes": max(0, peak - before) * 1024}))


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise SystemExit(f"/proc/self/status has no {field}: the RSS figures need Linux.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.footer", description=__doc__.splitlines()[0])
    parser.add_argument("--row-groups", type=int, default=10_000)
    parser.add_argument("--rows-per-group", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--kind", choices=["narrow", "events", "both"], default="both")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--rss-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(args.rss_child)
        return 0
    kinds = ["narrow", "events"] if args.kind == "both" else [args.kind]
    results = [measure(corpus_file(kind, args.row_groups, args.rows_per_group), args.repeat) for kind in kinds]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"python {sys.version.split()[0]}, pyarrow {pa.__version__} (writer only), {args.repeat} runs each")
    for r in results:
        print(
            f"{r['file']}: {r['rowGroups']} row groups x {r['columns']} columns, footer {r['footerBytes'] / MIB:.2f} MiB"
            f" | decode best {r['decodeSecondsBest']:.3f} s, median {r['decodeSecondsMedian']:.3f} s"
            f" | prove best {r['proveSecondsBest']:.3f} s, median {r['proveSecondsMedian']:.3f} s"
            f" | tracemalloc peak {r['tracemallocPeakBytes'] / MIB:.1f} MiB"
            f" | RSS growth {r['rssGrowthBytes'] / MIB:.1f} MiB | checks {r['checks']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
