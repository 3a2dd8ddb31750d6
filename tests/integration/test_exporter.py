"""The export use case end to end on the library: manifests that match their schema, forced
re-exports that leave exactly one copy of a day, and archives landing idempotently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from omborigrid_export.client import OmboriGridClient
from omborigrid_export.exporter import Exporter, Landed, LandingResult
from omborigrid_export.layout import KeyLayout
from omborigrid_export.models import ExportJob, ExportRequest, JobIdentity
from omborigrid_export.settings import MIB, Settings, TransferSettings
from tests.conftest import TENANT, object_keys
from tests.integration.test_transfer import done_job

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text())


@pytest.fixture
def exporter(simulator: Any, s3: Any) -> Exporter:
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
