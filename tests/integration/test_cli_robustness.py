"""``omborigrid-export run`` against a misbehaving API and a misconfigured machine (issue 8 parts 5-7).

The CLI runs in-process against the simulator over real HTTP and moto's S3 server; where the simulator has
no knob for a fault (a slow drip, an identity change), a shaping proxy sits in front of its API.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from omborigrid_export.exporter import Exporter, LandingResult
from omborigrid_export.models import JobIdentity
from omborigrid_export_cli.main import build_parser, main
from omborigrid_export_cli.preflight import MAX_JOBS_WITHOUT_YES, plan_run
from tests.conftest import TENANT, free_port, object_keys, open_uploads
from tests.integration.api_proxy import api_proxy

DAY = "2026-11-01"
OTHER_TENANT = "aaaaaaaaaaaaaaaaaaaaaaaa"
POST = "POST /api/analytics-export-job"


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str, float]:
    started = time.monotonic()
    code = main(["run", *args])
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err, elapsed


def args_for(bucket: str, *extra: str, day_to: str = DAY, tenants: tuple[str, ...] = (TENANT,)) -> list[str]:
    tenant_args = [a for t in tenants for a in ("--tenant", t)]
    return [
        *tenant_args,
        *("--from", DAY, "--to", day_to, "--dest", f"s3://{bucket}/lake"),
        *("--poll-initial", "0.2", "--poll-max", "0.5", "--json"),
        *extra,
    ]


def assert_nothing_landed(s3: Any, bucket: str) -> None:
    assert object_keys(s3, bucket) == []
    assert open_uploads(s3, bucket) == []


def assert_identical(s3: Any, sim: Any, export: dict[str, Any]) -> None:
    body = s3.get_object(Bucket=export["bucket"], Key=export["key"])["Body"].read()
    assert body == sim.job_file(export["jobId"]).read_bytes()


# --- garbled status answers ------------------------------------------------------------------------------


def test_given_two_garbled_status_answers_in_a_row_then_the_export_still_lands(cli_env, simulator, s3, bucket, capsys):
    simulator.configure(fail_next=[{"status": 200, "body": '{"id": "65f1', "methods": ["GET"], "count": 2}])
    code, payload, err, _ = run_cli(capsys, *args_for(bucket))
    assert code == 0, err
    (export,) = payload["exports"]
    assert payload["failures"] == []
    assert_identical(s3, simulator, export)
    assert simulator.stats().faults_served == 2


def test_given_three_garbled_status_answers_in_a_row_then_the_export_fails_and_nothing_lands(
    cli_env, simulator, s3, bucket, capsys
):
    simulator.configure(fail_next=[{"status": 200, "body": "<html>", "methods": ["GET"], "count": 3}])
    code, payload, err, _ = run_cli(capsys, *args_for(bucket))
    assert code == 1
    (failure,) = payload["failures"]
    assert failure["error"] == "InvalidApiResponse"
    assert "3 status answers in a row could not be read" in failure["message"]
    assert payload["exports"] == []
    assert "Traceback" not in err
    assert_nothing_landed(s3, bucket)


def test_given_a_garbled_answer_to_the_re_read_before_landing_then_it_is_asked_again_and_lands(
    cli_env, simulator, s3, bucket, capsys, monkeypatch
):
    simulator.configure(queue_seconds=0, processing_seconds=0)  # done at once: GET 1 checks, GET 2 re-reads
    with api_proxy(simulator.base_url) as proxy:
        proxy.shaping.garbled_gets = (2,)
        monkeypatch.setenv("OMBORIGRID_API_URL", proxy.base_url)
        code, payload, err, _ = run_cli(capsys, *args_for(bucket))
        gets = proxy.shaping.job_gets
    assert code == 0, err
    (export,) = payload["exports"]
    assert_identical(s3, simulator, export)
    assert gets == 4  # check, garbled re-read, check, re-read that landed


# --- a slow drip and --timeout ---------------------------------------------------------------------------


def test_given_a_slow_drip_api_then_timeout_2_ends_the_run_within_3_seconds(
    cli_env, simulator, s3, bucket, capsys, monkeypatch
):
    with api_proxy(simulator.base_url) as proxy:
        proxy.shaping.drip_seconds = 0.2  # a job document would take ~100 s to arrive
        monkeypatch.setenv("OMBORIGRID_API_URL", proxy.base_url)
        code, payload, err, elapsed = run_cli(capsys, *args_for(bucket, "--timeout", "2"))
    assert code == 1, err
    assert elapsed < 3.0
    (failure,) = payload["failures"]
    assert failure["error"] == "ExportTimedOut"
    assert "did not land within --timeout (2 s)" in failure["message"]
    assert "did not answer completely" in failure["message"]
    assert_nothing_landed(s3, bucket)


def test_given_jobs_that_never_finish_then_timeout_fails_every_export_on_time(cli_env, simulator, bucket, capsys):
    simulator.configure(processing_seconds=None)
    code, payload, _, elapsed = run_cli(capsys, *args_for(bucket, "--timeout", "1.5", day_to="2026-11-02"))
    assert code == 1
    assert elapsed < 2.5
    assert [f["error"] for f in payload["failures"]] == ["ExportTimedOut", "ExportTimedOut"]
    assert all(f["jobId"] for f in payload["failures"])


# --- identity pinned --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rewrite", "named"),
    [
        ({"tenantId": OTHER_TENANT}, OTHER_TENANT),
        ({"dataDateFrom": "2026-10-30", "dataDateTo": "2026-10-30"}, "2026-10-30"),
    ],
    ids=["other-tenant", "other-dates"],
)
def test_given_a_later_answer_about_another_identity_then_exit_1_and_nothing_under_any_key(
    cli_env, simulator, s3, bucket, capsys, monkeypatch, rewrite, named
):
    with api_proxy(simulator.base_url) as proxy:
        # The first status check is honest; from the second on (the re-read before landing) it names another.
        proxy.shaping.rewrite_from_get = 2
        proxy.shaping.rewrite = rewrite
        monkeypatch.setenv("OMBORIGRID_API_URL", proxy.base_url)
        code, payload, err, _ = run_cli(capsys, *args_for(bucket))
        assert proxy.shaping.job_gets >= 2
    assert code == 1, err
    (failure,) = payload["failures"]
    assert failure["error"] == "IntegrityError"
    assert named in failure["message"]
    assert TENANT in failure["message"]
    assert_nothing_landed(s3, bucket)


# --- per-export reporting --------------------------------------------------------------------------------


def test_given_one_tenant_failing_then_the_other_tenants_landing_is_still_reported(
    cli_env, simulator, s3, bucket, capsys
):
    simulator.configure(strict_tenant_ids=True)  # the API refuses an id that is not 24 hex characters
    code, payload, err, _ = run_cli(capsys, *args_for(bucket, tenants=("not-a-grid-tenant", TENANT)))
    assert code == 1
    (export,) = payload["exports"]
    assert export["tenantId"] == TENANT
    assert_identical(s3, simulator, export)
    (failure,) = payload["failures"]
    assert (failure["tenantId"], failure["error"], failure["jobId"]) == ("not-a-grid-tenant", "RequestRejected", None)
    assert "error: not-a-grid-tenant 2026-11-01:" in err


class ExplodingExporter(Exporter):
    """A real exporter whose landing of one tenant hits an exception nobody anticipated."""

    def land(self, identity: JobIdentity, **kwargs: Any) -> LandingResult:
        if identity.request.tenant_id == OTHER_TENANT:
            raise KeyError("contentKind")
        return super().land(identity, **kwargs)


def test_given_an_unexpected_exception_in_one_export_then_it_is_that_exports_typed_failure(
    cli_env, simulator, s3, bucket, capsys, monkeypatch
):
    monkeypatch.setattr("omborigrid_export.exporter.Exporter", ExplodingExporter)
    code, payload, err, _ = run_cli(capsys, *args_for(bucket, tenants=(OTHER_TENANT, TENANT)))
    assert code == 1
    assert [e["tenantId"] for e in payload["exports"]] == [TENANT]
    (failure,) = payload["failures"]
    assert failure["tenantId"] == OTHER_TENANT
    assert failure["error"] == "UnexpectedFailure"
    assert "KeyError" in failure["message"]
    assert "Traceback" not in err


# --- configuration errors: exit 2 before any job exists ---------------------------------------------------


def _no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _unreachable_s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    del tmp_path
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")


def _bad_template(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    del tmp_path
    monkeypatch.setenv("EXPORT_KEY_TEMPLATE", "{prefix}/dt={dataDateFrom}/{filename}")


def _template_leaving_the_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    del tmp_path
    monkeypatch.setenv("EXPORT_KEY_TEMPLATE", "other/tenant={tenantId}/{filename}")


def _bad_api_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    del tmp_path
    monkeypatch.setenv("OMBORIGRID_API_URL", "http://127.0.0.1:99999")


CONFIG_ERRORS = [
    ("no-credentials", _no_credentials, "No usable AWS credentials"),
    ("unreachable-s3", _unreachable_s3, "cannot be reached"),
    ("template-without-tenant", _bad_template, "{tenantId}"),
    ("template-outside-prefix", _template_leaving_the_prefix, "under the prefix"),
    ("bad-api-url", _bad_api_url, "OMBORIGRID_API_URL"),
]


@pytest.mark.parametrize(("name", "break_it", "message"), CONFIG_ERRORS, ids=[c[0] for c in CONFIG_ERRORS])
def test_given_a_configuration_error_then_exit_2_before_any_job_with_json(
    cli_env, simulator, bucket, capsys, monkeypatch, tmp_path, name, break_it, message
):
    break_it(monkeypatch, tmp_path)
    code, payload, err, elapsed = run_cli(capsys, *args_for(bucket))
    assert code == 2, err
    assert message in err
    assert "Traceback" not in err
    assert payload["exports"] == []
    assert payload["failures"] == []
    assert payload["error"]["error"] == "ConfigurationError"
    assert message in payload["error"]["message"]
    assert simulator.stats().by_route.get(POST, 0) == 0
    assert elapsed < 10


def test_given_a_missing_bucket_then_exit_2_naming_it_before_any_job(cli_env, simulator, capsys):
    code, payload, err, _ = run_cli(capsys, *args_for("no-such-bucket-here"))
    assert code == 2
    assert "no-such-bucket-here does not exist" in err
    assert payload["error"]["error"] == "ConfigurationError"
    assert simulator.stats().jobs_created == 0


# --- pacing and confirmation ------------------------------------------------------------------------------


def test_given_max_in_flight_2_then_never_more_than_2_jobs_are_live_at_the_api(cli_env, simulator, s3, bucket, capsys):
    simulator.configure(queue_seconds=4, processing_seconds=8)  # 0.6 s live each at time_scale 20
    code, payload, err, _ = run_cli(capsys, *args_for(bucket, "--max-in-flight", "2", day_to="2026-11-06"))
    assert code == 0, err
    assert len(payload["exports"]) == 6
    stats = simulator.stats()
    assert stats.jobs_created == 6
    assert stats.max_live_jobs == 2  # paced, yet in parallel
    for export in payload["exports"]:
        assert_identical(s3, simulator, export)


def test_given_more_jobs_than_the_limit_without_yes_then_exit_2_saying_so(cli_env, simulator, bucket, capsys):
    # Two tenants for 184 days: 368 jobs.
    args = args_for(bucket, day_to="2027-05-03", tenants=(TENANT, OTHER_TENANT))
    code, payload, err, _ = run_cli(capsys, *args)
    assert code == 2
    assert "368 export jobs" in err
    assert "--yes" in err
    assert payload["error"]["error"] == "InvalidInput"
    assert simulator.stats().jobs_created == 0


def test_given_exactly_the_limit_or_yes_then_the_run_is_planned(cli_env, bucket):
    parser = build_parser()
    at_limit = parser.parse_args(["run", *args_for(bucket, day_to="2027-11-01")])  # 366 days
    assert len(plan_run(at_limit, dict(cli_env)).requests) == MAX_JOBS_WITHOUT_YES
    confirmed = parser.parse_args(["run", *args_for(bucket, "--yes", day_to="2027-11-02")])
    assert len(plan_run(confirmed, dict(cli_env)).requests) == MAX_JOBS_WITHOUT_YES + 1


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5"])
def test_given_a_bad_max_in_flight_then_exit_2_and_still_json(cli_env, simulator, bucket, capsys, value):
    code, payload, err, _ = run_cli(capsys, *args_for(bucket, "--max-in-flight", value))
    assert code == 2
    assert "--max-in-flight" in err
    assert payload["exports"] == []
    assert payload["error"]["error"] == "InvalidInput"
    assert "--max-in-flight" in payload["error"]["message"]
    assert simulator.stats().jobs_created == 0


def test_given_an_interrupt_mid_run_then_json_still_reports_every_export(cli_env, simulator, s3, bucket, capsys):
    import os
    import signal
    import threading

    simulator.configure(processing_seconds=None)
    interrupt = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    interrupt.start()
    try:
        code, payload, err, elapsed = run_cli(capsys, *args_for(bucket, day_to="2026-11-02"))
    finally:
        interrupt.cancel()
    assert code == 130
    assert elapsed < 3
    assert payload["exports"] == []
    assert [f["error"] for f in payload["failures"]] == ["UnexpectedFailure", "UnexpectedFailure"]
    assert all("interrupted" in f["message"] for f in payload["failures"])
    assert "interrupted" in err
    assert_nothing_landed(s3, bucket)
