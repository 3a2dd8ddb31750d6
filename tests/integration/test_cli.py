"""The ``omborigrid-export run`` contract: exit codes, --json, one-sentence failures, and every simulator
fault knob driven through the CLI to a byte-identical object or a clean failure with nothing landed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from omborigrid_export_cli.main import main
from tests.conftest import MIB, TENANT, object_keys, open_uploads

DAY = "2026-11-01"


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main(["run", *args])
    captured = capsys.readouterr()
    payload = json.loads(captured.out) if "--json" in args and captured.out.strip() else None
    return code, payload, captured.err


def export_args(bucket: str, *extra: str, day_to: str = DAY) -> list[str]:
    return [
        "--tenant",
        TENANT,
        "--from",
        DAY,
        "--to",
        day_to,
        "--dest",
        f"s3://{bucket}/lake",
        "--poll-initial",
        "1",
        "--poll-max",
        "2",
        "--json",
        *extra,
    ]


def assert_identical(s3: Any, sim: Any, export: dict[str, Any]) -> None:
    body = s3.get_object(Bucket=export["bucket"], Key=export["key"])["Body"].read()
    assert body == sim.job_file(export["jobId"]).read_bytes()


def test_given_a_two_day_range_when_run_then_two_daily_exports_land_with_manifests(
    cli_env, simulator, s3, bucket, capsys
):
    code, payload, err = run_cli(capsys, *export_args(bucket, day_to="2026-11-02"))
    assert code == 0, err
    exports = payload["exports"]
    assert [e["dataDateFrom"] for e in exports] == ["2026-11-01", "2026-11-02"]
    for export in exports:
        assert export["key"] == f"lake/tenant={TENANT}/dt={export['dataDateFrom']}/{export['sourceFilename']}"
        assert export["checksum"].startswith("crc32:")
        assert_identical(s3, simulator, export)
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=export["manifestKey"])["Body"].read())
        assert manifest["jobId"] == export["jobId"]
        assert manifest["bytes"] == export["bytes"]
        assert "X-Sim-Signature" not in json.dumps(manifest)
    assert simulator.stats().jobs_created == 2


def test_given_split_none_then_one_job_covers_the_range(cli_env, simulator, bucket, capsys):
    code, payload, _ = run_cli(capsys, *export_args(bucket, "--split", "none", day_to="2026-11-03"))
    assert code == 0
    assert len(payload["exports"]) == 1
    assert payload["exports"][0]["dataDateTo"] == "2026-11-03"


def test_given_a_rerun_then_nothing_is_downloaded_again(cli_env, simulator, bucket, capsys):
    assert run_cli(capsys, *export_args(bucket))[0] == 0
    downloads = simulator.stats().by_route.get("GET /download", 0)
    code, payload, _ = run_cli(capsys, *export_args(bucket))
    assert code == 0
    assert payload["exports"][0]["alreadyExisted"] is True
    assert simulator.stats().by_route.get("GET /download", 0) == downloads


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "../evil", "--from", DAY, "--to", DAY, "--dest", "s3://b-ok/x"], "not acceptable"),
        (
            ["--tenant", TENANT, "--from", "2026-02-30", "--to", DAY, "--dest", "s3://b-ok/x"],
            "not a real calendar date",
        ),
        (["--tenant", TENANT, "--from", "2026-11-05", "--to", DAY, "--dest", "s3://b-ok/x"], "reversed"),
        (["--tenant", TENANT, "--from", DAY, "--to", DAY, "--dest", "/tmp/x"], "s3://"),
        (["--tenant", TENANT, "--from", DAY, "--to", DAY], "--dest"),
        (
            ["--tenant", TENANT, "--from", DAY, "--to", DAY, "--dest", "s3://b-ok", "--poll-initial", "0"],
            "more than 0 seconds",
        ),
    ],
)
def test_given_bad_usage_then_exit_2_with_one_sentence(cli_env, capsys, args, message):
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_given_no_token_then_exit_2(cli_env, bucket, capsys, monkeypatch):
    monkeypatch.delenv("OMBORIGRID_TOKEN")
    code, _, err = run_cli(capsys, *export_args(bucket))
    assert code == 2
    assert "OMBORIGRID_TOKEN" in err


# Every fault knob of the simulator, through the CLI. "ok" knobs must still land byte-identical objects;
# "fail" knobs must exit 1 with the named error and leave nothing under the final key.
FAULTS = [
    ("rate-limit", {"fail_next": [{"status": 429, "retry_after": 1, "count": 2}]}, "ok", None),
    (
        "5xx-burst",
        {"fail_next": [{"status": 503, "count": 2}, {"status": 502, "methods": ["GET"], "count": 2}]},
        "ok",
        None,
    ),
    (
        "ambiguous-500",
        {"fail_next": [{"status": 500, "methods": ["POST"], "after_create": True}]},
        "fail",
        "AmbiguousCreate",
    ),
    (
        "malformed-body",
        {"fail_next": [{"status": 200, "body": "<html>", "methods": ["GET"], "count": 9}]},
        "fail",
        "InvalidApiResponse",
    ),
    ("dropped-connection", {"drop_after_bytes": 2 * MIB + 5, "drop_count": 2, "target_bytes": 8 * MIB}, "ok", None),
    ("slow-job", {"queue_seconds": 20, "processing_seconds": 40}, "ok", None),
    ("never-finishes", {"processing_seconds": None}, "fail", "ExportTimedOut"),
    ("failed-status", {"final_status": "failed"}, "fail", "ExportFailed"),
    ("expired-urls", {"expire_next_downloads": 2}, "ok", None),
    ("expired-forever", {"expire_next_downloads": 1000}, "fail", "DownloadUrlExpired"),
    ("range-ignored", {"ignore_range": True, "drop_after_bytes": 3 * MIB, "target_bytes": 7 * MIB}, "ok", None),
    ("bandwidth-cap", {"bandwidth_bytes_per_sec": 4 * MIB, "target_bytes": 6 * MIB}, "ok", None),
    ("size-lies", {"file_size_delta": 1234}, "fail", "IntegrityError"),
    ("large-file", {"target_bytes": 24 * MIB}, "ok", None),
    ("expired-token", {"expired_tokens": ["sim-token"]}, "fail", "AuthError"),
]


@pytest.mark.parametrize(("name", "knobs", "expect", "error"), FAULTS, ids=[f[0] for f in FAULTS])
def test_given_a_fault_knob_then_the_cli_lands_identical_bytes_or_fails_cleanly(
    cli_env, simulator, s3, bucket, capsys, name, knobs, expect, error
):
    simulator.configure(**knobs)
    extra = ["--timeout", "8"] if name == "never-finishes" else []
    code, payload, err = run_cli(capsys, *export_args(bucket, *extra))
    assert "Traceback" not in err
    if expect == "ok":
        assert code == 0, err
        (export,) = payload["exports"]
        assert_identical(s3, simulator, export)
        assert export["bytes"] == simulator.job_file(export["jobId"]).stat().st_size
    else:
        assert code == 1, err
        (failure,) = payload["failures"]
        assert failure["error"] == error
        assert payload["exports"] == []
        assert object_keys(s3, bucket) == []
        assert open_uploads(s3, bucket) == []


def test_the_console_script_reports_failures_in_one_sentence(cli_env, simulator, bucket):
    simulator.configure(final_status="failed")
    script = Path(sys.executable).with_name("omborigrid-export")
    result = subprocess.run(
        [str(script), "run", *export_args(bucket)[:-1]],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **cli_env},
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "treating the export as failed" in result.stderr
    assert "landed" not in result.stdout


def test_given_a_zip_delivery_then_its_members_land_per_table_and_read_back(cli_env, simulator, s3, bucket, capsys):
    import io

    import pyarrow.parquet as pq

    simulator.configure(delivery="zip", filename_override="analytics.parquet")
    code, payload, err = run_cli(capsys, *export_args(bucket, "--split", "none", day_to="2026-11-02"))
    assert code == 0, err
    (export,) = payload["exports"]
    assert export["contentKind"] == "zip"
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=export["manifestKey"])["Body"].read())
    files = manifest["files"]
    assert {f["table"] for f in files} == {"events", "sessions", "clients"}
    assert {f["dataDate"] for f in files} == {"2026-11-01", "2026-11-02"}
    expected = simulator.expected_rows(TENANT, "2026-11-01", "2026-11-02")
    rows: dict[str, int] = {}
    for f in files:
        assert f["key"] == f"lake/{f['table']}/tenant={TENANT}/dt={f['dataDate']}/part-0.parquet"
        body = s3.get_object(Bucket=bucket, Key=f["key"])["Body"].read()
        assert len(body) == f["bytes"]
        rows[f["table"]] = rows.get(f["table"], 0) + pq.read_table(io.BytesIO(body)).num_rows
    assert rows == expected
    # The staged archive is gone; only data and the manifest remain.
    assert not [k for k in object_keys(s3, bucket) if "/_staging/" in k]
