"""The export use case end to end on the library: manifests that match their schema, forced
re-exports that leave exactly one copy of a day, and archives landing idempotently."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from omborigrid_export.client import OmboriGridClient
from omborigrid_export.errors import IntegrityError
from omborigrid_export.exporter import Exporter, Landed, LandingResult
from omborigrid_export.layout import KeyLayout
from omborigrid_export.manifest import Manifest
from omborigrid_export.models import ExportJob, ExportRequest, JobIdentity, JobStatus
from omborigrid_export.proof import CheckResult, Column, Proof
from omborigrid_export.settings import MIB, Settings, TransferSettings
from tests.conftest import TENANT, object_keys
from tests.integration.test_transfer import done_job

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text())


@pytest.fixture
def exporter(simulator: Any, s3: Any) -> Exporter:
    return lake_exporter(simulator, s3)


def lake_exporter(simulator: Any, s3: Any) -> Exporter:
    """An exporter onto the simulator, landing under the prefix ``lake`` (archive members per table)."""
    settings = Settings(
        api_url=simulator.base_url,
        token=simulator.token,
        allow_local_urls=True,
        transfer=TransferSettings(part_size=5 * MIB),
        layout=KeyLayout(prefix="lake"),
        archive_layout=KeyLayout(
            prefix="lake", template="{prefix}/{table}/tenant={tenantId}/dt={dataDateFrom}/{filename}"
        ),
    )
    return Exporter(settings, OmboriGridClient(simulator.base_url, simulator.token), s3)


def pinned(job: ExportJob) -> JobIdentity:
    return JobIdentity(job.id, job.request)


def landed(result: LandingResult) -> dict[str, Any]:
    assert isinstance(result, Landed)
    return result.manifest.to_dict()


def test_manifests_match_the_published_schema_and_hold_no_secret(simulator, exporter, bucket):
    job = done_job(simulator, exporter.client)
    manifest = landed(exporter.land(pinned(job), bucket=bucket))
    jsonschema.validate(manifest, schema("export-completed.schema.json"))
    assert "X-Sim-Signature" not in json.dumps(manifest)
    assert manifest["sourceHost"].startswith("127.0.0.1:")
    simulator.configure(delivery="zip")
    zipped = landed(exporter.land(pinned(done_job(simulator, exporter.client, "2026-11-02")), bucket=bucket))
    jsonschema.validate(zipped, schema("export-completed.schema.json"))


def test_a_forced_re_export_with_a_new_file_name_removes_the_files_it_replaces(simulator, exporter, s3, bucket):
    simulator.configure(filename_override="first.parquet")
    first = landed(exporter.land(pinned(done_job(simulator, exporter.client)), bucket=bucket))
    simulator.configure(filename_override="second.parquet")
    second = landed(
        exporter.land(
            pinned(done_job(simulator, exporter.client)),
            bucket=bucket,
            replace=True,
            previous_manifest_key=first["manifestKey"],
        )
    )
    assert object_keys(s3, bucket) == sorted([second["key"], second["manifestKey"]])
    assert second["key"].endswith("/second.parquet")


def test_an_archive_landed_twice_lands_once(simulator, exporter, s3, bucket):
    simulator.configure(delivery="zip")
    job = done_job(simulator, exporter.client)
    first = landed(exporter.land(pinned(job), bucket=bucket))
    keys = object_keys(s3, bucket)
    again = landed(exporter.land(pinned(job), bucket=bucket))
    assert object_keys(s3, bucket) == keys
    assert again["alreadyExisted"] is True
    assert [f["key"] for f in again["files"]] == [f["key"] for f in first["files"]]


def test_the_export_failed_schema_accepts_what_the_state_machine_publishes():
    detail = {
        "tenantId": TENANT,
        "dataDateFrom": "2026-11-01",
        "dataDateTo": "2026-11-01",
        "jobId": "6560f1a2b3c4d5e6f7a8b9c0",
        "error": "ExportTimedOut",
        "message": "Export job 6560f1a2b3c4d5e6f7a8b9c0 is still processing after 200 checks; giving up.",
        "executionId": "arn:aws:states:eu-west-1:123456789012:execution:export:x",
    }
    jsonschema.validate(detail, schema("export-failed.schema.json"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in detail.items() if k != "message"}, schema("export-failed.schema.json"))


def test_the_export_requested_schema_matches_the_sample_event():
    sample = json.loads((SCHEMAS.parent / "events" / "export_requested.json").read_text())
    jsonschema.validate(sample["detail"], schema("export-requested.schema.json"))
    assert ExportRequest.parse(
        sample["detail"]["tenantIds"][0], sample["detail"]["dataDateFrom"], sample["detail"]["dataDateTo"]
    )


OTHER_TENANT = "5f0c0ffee0ddba11c0ffee00"


def test_a_forced_re_export_never_deletes_files_a_manifest_of_another_tenant_names(simulator, exporter, s3, bucket):
    """Given tenant A landed, when tenant B is force re-exported with A's manifest named as the previous one
    (a mis-routed pointer), then nothing of A is removed."""
    first = landed(exporter.land(pinned(done_job(simulator, exporter.client)), bucket=bucket))
    other = exporter.client.create_job(ExportRequest.parse(OTHER_TENANT, "2026-11-01", "2026-11-01"))
    other_done = done_job_of(simulator, exporter, other.id)
    second = landed(
        exporter.land(pinned(other_done), bucket=bucket, replace=True, previous_manifest_key=first["manifestKey"])
    )
    assert second["tenantId"] == OTHER_TENANT
    assert object_keys(s3, bucket) == sorted([first["key"], first["manifestKey"], second["key"], second["manifestKey"]])


def done_job_of(simulator: Any, exporter: Exporter, job_id: str) -> ExportJob:
    deadline = time.monotonic() + 30
    job = exporter.client.get_job(job_id)
    while job.status is not JobStatus.DONE:
        assert time.monotonic() < deadline, "the simulator job never finished"
        time.sleep(0.05)
        job = exporter.client.get_job(job_id)
    return job


@pytest.mark.parametrize("garbage", [b"not json", b'{"schemaVersion": 1}', b"[]"])
def test_a_forced_re_export_over_an_unreadable_previous_manifest_lands_and_removes_nothing(
    simulator, exporter, s3, bucket, garbage
):
    s3.put_object(Bucket=bucket, Key="lake/old/_x.manifest.json", Body=garbage)
    result = landed(
        exporter.land(
            pinned(done_job(simulator, exporter.client)),
            bucket=bucket,
            replace=True,
            previous_manifest_key="lake/old/_x.manifest.json",
        )
    )
    assert object_keys(s3, bucket) == sorted(["lake/old/_x.manifest.json", result["key"], result["manifestKey"]])


def test_a_rerun_over_a_landing_whose_manifest_is_missing_writes_the_manifest(simulator, exporter, s3, bucket):
    """The manifest is the commit marker: a file left without one (the run died between the two) gets it."""
    job = done_job(simulator, exporter.client)
    first = landed(exporter.land(pinned(job), bucket=bucket))
    s3.delete_object(Bucket=bucket, Key=first["manifestKey"])
    again = landed(exporter.land(pinned(job), bucket=bucket))
    assert again["alreadyExisted"] is True
    stored = json.loads(s3.get_object(Bucket=bucket, Key=first["manifestKey"])["Body"].read())
    assert Manifest.from_dict(stored).names(first["key"])


def test_the_typed_manifest_round_trips_and_validates_with_and_without_proofs(simulator, exporter, bucket):
    manifest = landed(exporter.land(pinned(done_job(simulator, exporter.client)), bucket=bucket))
    typed = Manifest.from_dict(manifest)
    assert typed.to_dict() == manifest
    # The landing was proven by the parquet prover from the file's footer: the simulator's rows, this tenant.
    [landed_proof] = [f.proof for f in typed.files]
    assert landed_proof is not None
    assert landed_proof["rows"] > 0
    assert landed_proof["tenantIds"] == [TENANT]
    assert landed_proof["checks"] == {
        "eventTime": "passed",
        "footer": "passed",
        "rowGroups": "passed",
        "tenant": "passed",
    }
    proof = Proof(
        rows=2000,
        row_groups=2,
        schema_fingerprint="sha256:" + "ab" * 32,
        columns=(Column("tenantId", "BYTE_ARRAY", "String", "OPTIONAL"),),
        created_by="parquet-cpp-arrow version 18.0.0",
        event_time_min=datetime(2026, 11, 1, 0, 5, tzinfo=UTC),
        event_time_max=datetime(2026, 11, 1, 23, 55, tzinfo=UTC),
        tenant_ids=(TENANT,),
        checks={"tenant": CheckResult.PASSED, "eventTime": CheckResult.PASSED},
    )
    proven = dataclasses.replace(typed, files=(dataclasses.replace(typed.files[0], proof=proof.to_dict()),))
    document = proven.to_dict()
    jsonschema.validate(document, schema("export-completed.schema.json"))
    assert document["proof"] == {
        "filesProven": 1,
        "filesTotal": 1,
        "rows": 2000,
        "checks": {"eventTime": "passed", "tenant": "passed"},
    }
    assert Manifest.from_dict(json.loads(json.dumps(document))) == proven
    old = {k: v for k, v in manifest.items() if k != "proof"}
    old["files"] = [{k: v for k, v in f.items() if k != "proof"} for f in old["files"]]
    jsonschema.validate(old, schema("export-completed.schema.json"))
    unproven = dataclasses.replace(typed, files=tuple(dataclasses.replace(f, proof=None) for f in typed.files))
    assert Manifest.from_dict(old) == unproven


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda m: m.pop("files"), id="no-files"),
        pytest.param(lambda m: m.update(files=[]), id="empty-files"),
        pytest.param(lambda m: m["files"][0].pop("key"), id="file-without-key"),
        pytest.param(lambda m: m.update(bytes="12"), id="bytes-as-string"),
        pytest.param(lambda m: m.update(dataDateFrom="yesterday"), id="bad-date"),
        pytest.param(lambda m: m.update(checksum=None), id="no-checksum"),
        pytest.param(lambda m: m["timings"].pop("landedAt"), id="no-landed-at"),
        pytest.param(lambda m: m.update(schemaVersion=2), id="unknown-version"),
        pytest.param(lambda m: m.update(tenantId="../other"), id="unsafe-tenant"),
        pytest.param(lambda m: m.update(dataDateTo="2026-10-01"), id="reversed-dates"),
        pytest.param(lambda m: m.update(proof=None, files=[{**m["files"][0], "proof": "yes"}]), id="proof-not-object"),
    ],
)
def test_a_malformed_manifest_is_an_integrity_error_never_a_key_error(simulator, exporter, bucket, damage):
    manifest = landed(exporter.land(pinned(done_job(simulator, exporter.client)), bucket=bucket))
    damage(manifest)
    with pytest.raises(IntegrityError, match="not a valid export manifest"):
        Manifest.from_dict(manifest)
