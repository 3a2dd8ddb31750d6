"""``omborigrid-export run`` honours SCHEMA_CHANGE_POLICY like the stack: a day whose schema breaks with the day
landed before it (found from the manifests in S3, the CLI has no ledger) lands under ``_quarantine/`` and fails."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import TENANT, object_keys, open_uploads
from tests.integration.test_cli import export_args, run_cli

DAYS = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
BROKEN = DAYS[2]


@pytest.fixture
def quarantining(cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("SCHEMA_CHANGE_POLICY", "quarantine")
    return {**cli_env, "SCHEMA_CHANGE_POLICY": "quarantine"}


def test_a_broken_day_is_quarantined_and_fails_the_run_and_force_lands_it(
    quarantining: dict[str, str], simulator: Any, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given int1 retyped on the third of four days only, when they are run one at a time, then days 1, 2 and 4 land,
    day 3 is under lake/_quarantine/ only and is the run's one failure (exit 1) with the sentence; run again with
    --force, day 3 lands under its table."""
    simulator.configure(delivery="zip", schema_change_from=BROKEN, schema_change_until=BROKEN)
    code, payload, err = run_cli(capsys, *export_args(bucket, "--max-in-flight", "1", day_to=DAYS[-1]))
    assert code == 1, err
    assert [e["dataDateFrom"] for e in payload["exports"]] == [DAYS[0], DAYS[1], DAYS[3]]
    [failure] = payload["failures"]
    folder = f"lake/_quarantine/tenant={TENANT}/dt={BROKEN}/job={failure['jobId']}/"
    assert (failure["dataDateFrom"], failure["error"]) == (BROKEN, "SchemaQuarantined")
    assert failure["message"] == (
        f"The export of tenant {TENANT} for {BROKEN} was not published: the events table changed its schema on "
        f"{BROKEN}: int1 changed type from INT64 to BYTE_ARRAY (STRING) (breaking, against {DAYS[1]}); the file was "
        f"quarantined at s3://{bucket}/{folder} (nothing was written under the table); set SchemaChangePolicy=land "
        "or fix the source, then re-export the day with force."
    )
    assert f"error: {TENANT} {BROKEN}: The export of tenant" in err
    members = [f"{folder}{table}/part-0.parquet" for table in ("clients", "events", "sessions")]
    assert [k for k in object_keys(s3, bucket) if f"dt={BROKEN}/" in k] == sorted(
        [*members, f"{folder}events/_{failure['jobId']}.manifest.json"]
    )
    assert open_uploads(s3, bucket) == []

    again = ["--tenant", TENANT, "--from", BROKEN, "--to", BROKEN, "--dest", f"s3://{bucket}/lake", "--json"]
    code, payload, err = run_cli(capsys, *again, "--poll-initial", "1", "--poll-max", "2", "--force")
    assert code == 0, err
    [forced] = payload["exports"]
    assert forced["manifestKey"] == f"lake/events/tenant={TENANT}/dt={BROKEN}/_{forced['jobId']}.manifest.json"


def test_without_the_policy_the_broken_day_lands_as_before(
    cli_env: dict[str, str], simulator: Any, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.configure(delivery="zip", schema_change_from=BROKEN, schema_change_until=BROKEN)
    code, payload, err = run_cli(capsys, *export_args(bucket, "--max-in-flight", "1", day_to=DAYS[-1]))
    assert code == 0, err
    assert len(payload["exports"]) == len(DAYS)
    assert not [k for k in object_keys(s3, bucket) if "/_quarantine/" in k]


def test_a_policy_the_cli_does_not_know_is_bad_usage(
    cli_env: dict[str, str], bucket: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCHEMA_CHANGE_POLICY", "hold")
    code, _, err = run_cli(capsys, *export_args(bucket))
    assert code == 2
    assert "SCHEMA_CHANGE_POLICY must be land or quarantine, not 'hold'" in err
