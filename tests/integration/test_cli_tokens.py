"""The CLI with a token per tenant (``--tokens FILE``, as the stack's token secret holds them): each tenant's
requests carry its own token, and a tenant the map cannot serve stops the run before any job exists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from omborigrid_export_cli.main import main
from tests.conftest import TENANT, object_keys

OTHER = "5f0c1d2e3f405162738495a6"
DAY = "2026-11-01"
POST = "POST /api/analytics-export-job"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main(["run", *args, "--poll-initial", "0.2", "--poll-max", "0.5", "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_given_a_token_map_then_each_tenant_lands_with_its_own_token(
    cli_env: dict[str, str], simulator: Any, s3: Any, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given: the API accepts each tenant's requests only with that tenant's token (as Grid console tokens are).
    simulator.configure(tenant_tokens={TENANT: "token-of-the-first", OTHER: "token-of-the-second"})
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        json.dumps({"tenants": {TENANT: {"token": "token-of-the-first"}, OTHER: {"token": "token-of-the-second"}}})
    )

    code, payload, _ = run(
        capsys, "--tenant", TENANT, "--tenant", OTHER, "--from", DAY, "--to", DAY, "--dest", f"s3://{bucket}/lake",
        "--tokens", str(tokens),
    )  # fmt: skip

    assert code == 0, payload
    assert sorted(e["tenantId"] for e in payload["exports"]) == sorted([TENANT, OTHER])
    assert payload["failures"] == []
    landed = [k for k in object_keys(s3, bucket) if k.endswith(".parquet")]
    assert len(landed) == 2
    assert {f"tenant={TENANT}" in k for k in landed} == {True, False}


def test_given_a_tenant_the_map_has_no_token_for_then_exit_2_before_any_job(
    cli_env: dict[str, str], simulator: Any, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tenants": {TENANT: {"token": simulator.token}}}))

    code, payload, err = run(
        capsys, "--tenant", TENANT, "--tenant", OTHER, "--from", DAY, "--to", DAY, "--dest", f"s3://{bucket}/lake",
        "--tokens", str(tokens),
    )  # fmt: skip

    assert code == 2
    assert payload["exports"] == payload["failures"] == []
    assert f"no token for tenant {OTHER}" in err
    assert simulator.token not in err
    assert simulator.stats().by_route.get(POST, 0) == 0
