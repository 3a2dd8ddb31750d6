"""The CLI against an adversarial API and delivery (the simulator's issue-8 knobs): each run ends in a
byte-identical, proven landing or in exit 1 with the error named, nothing under any final key and no multipart
upload left open. What a buggy gateway, a mis-routed job or a truncated upload on the vendor's side produces."""

from __future__ import annotations

import json
from typing import Any

import pytest

from omborigrid_export_cli.main import main
from tests.conftest import MIB, TENANT, object_keys, open_uploads

DAY = "2026-11-01"
OTHER_TENANT = "5f0c1d2e3f405162738495a6"

#: (id, simulator knobs, the error named, or None for a landing).
CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("identity-changes-tenant", {"identity_change": "tenant", "identity_change_after": 1}, "IntegrityError"),
    ("identity-changes-dates", {"identity_change": "dates", "identity_change_after": 1}, "IntegrityError"),
    ("identity-changes-id", {"identity_change": "id", "identity_change_after": 1}, "IntegrityError"),
    ("truncated-parquet", {"truncated_parquet": 4096}, "IntegrityError"),
    ("another-tenants-data", {"foreign_tenant": OTHER_TENANT}, "IntegrityError"),
    ("data-of-other-dates", {"foreign_dates": -30}, "IntegrityError"),
    ("zero-bytes", {"empty_file": "bytes"}, "IntegrityError"),
    ("archive-member-3-bad-crc", {"delivery": "zip", "archive_bad_member": 3}, "IntegrityError"),
    (
        "archive-member-3-bad-footer",
        {"delivery": "zip", "archive_bad_member": 3, "archive_bad_member_kind": "footer"},
        "IntegrityError",
    ),
    ("zip-bomb-ratio", {"delivery": "zip", "zip_bomb": "ratio", "zip_bomb_bytes": 64 * MIB}, "IntegrityError"),
    ("zip-bomb-lying-size", {"delivery": "zip", "zip_bomb": "lie", "zip_bomb_bytes": 64 * MIB}, "IntegrityError"),
    ("zip-garbage-directory", {"delivery": "zip", "bad_zip": "garbage_directory"}, "IntegrityError"),
    ("zip-truncated", {"delivery": "zip", "bad_zip": "truncated"}, "IntegrityError"),
    ("bad-location-ipv6", {"bad_location": "ipv6"}, "UnsafeUrl"),
    ("bad-location-control", {"bad_location": "control"}, "UnsafeUrl"),
    # Without a scheme, a Location is a relative reference (RFC 3986): followed, it answers 404.
    ("bad-location-no-scheme", {"bad_location": "no_scheme"}, "TransferFailed"),
    ("bad-location-empty", {"bad_location": "empty"}, "TransferFailed"),
    ("two-garbled-status-answers", {"garbled_status": 2}, None),
]


def run(capsys: pytest.CaptureFixture[str], bucket: str, *extra: str) -> tuple[int, Any, str]:
    args = ["--tenant", TENANT, "--from", DAY, "--to", DAY, "--dest", f"s3://{bucket}/lake"]
    code = main(["run", *args, "--poll-initial", "0.5", "--poll-max", "1", "--json", *extra])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def final_keys(s3: Any, bucket: str) -> list[str]:
    """Keys a reader of the lake would see: everything but the staging area (expired by a lifecycle rule)."""
    return [k for k in object_keys(s3, bucket) if not k.startswith("lake/_staging/")]


@pytest.mark.parametrize(("name", "knobs", "error"), CASES, ids=[c[0] for c in CASES])
def test_given_an_adversarial_api_then_a_proven_landing_or_exit_1_with_nothing_landed(
    cli_env: dict[str, str],
    simulator: Any,
    s3: Any,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
    name: str,
    knobs: dict[str, Any],
    error: str | None,
) -> None:
    simulator.configure(**knobs)

    code, payload, err = run(capsys, bucket)

    assert "Traceback" not in err
    assert open_uploads(s3, bucket) == []
    if error is None:
        assert code == 0, err
        [export] = payload["exports"]
        body = s3.get_object(Bucket=bucket, Key=export["key"])["Body"].read()
        assert body == simulator.job_file(export["jobId"]).read_bytes()
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=export["manifestKey"])["Body"].read())
        [proof] = [f["proof"] for f in manifest["files"]]
        assert proof["tenantIds"] == [TENANT]
        assert proof["checks"]["tenant"] == "passed"
        return
    assert code == 1, err
    assert payload["exports"] == []
    [failure] = payload["failures"]
    assert failure["error"] == error, failure["message"]
    assert final_keys(s3, bucket) == []


def test_given_another_tenants_data_then_the_error_names_what_the_file_holds(
    cli_env: dict[str, str], simulator: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.configure(foreign_tenant=OTHER_TENANT)

    code, payload, _ = run(capsys, bucket)

    assert code == 1
    [failure] = payload["failures"]
    assert OTHER_TENANT in failure["message"]
    assert TENANT in failure["message"]


def test_given_a_valid_file_with_no_rows_then_it_lands_as_an_empty_day_with_its_proof(
    cli_env: dict[str, str], simulator: Any, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.configure(empty_file="rows")

    code, payload, err = run(capsys, bucket)

    assert code == 0, err
    [export] = payload["exports"]
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=export["manifestKey"])["Body"].read())
    [proof] = [f["proof"] for f in manifest["files"]]
    assert proof["rows"] == 0
    assert proof["checks"]["footer"] == "passed"
    assert proof["checks"]["tenant"] == "not verified"
