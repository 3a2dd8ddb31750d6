"""SchemaChangePolicy=quarantine on the library: a breaking schema is judged before publication and the delivery
lands under ``{prefix}/_quarantine/`` only, over real HTTP (the simulator) and S3.

The gate's history is the facts of what landed before, kept in memory here (``facts_of`` the real manifests; the
Lambda keeps them in the ledger table, tests/unit/test_lake_signals.py runs that store).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from omborigrid_export.exporter import Exporter, Landed, LandingResult, Quarantined
from omborigrid_export.lake_facts import LandingFact, facts_of
from omborigrid_export.layout import KeyLayout
from omborigrid_export.manifest import Manifest
from omborigrid_export.manifest_history import ManifestHistory
from omborigrid_export.manifest_store import read_manifest_at
from omborigrid_export.schema_gate import SchemaGate
from omborigrid_export.settings import MIB
from omborigrid_export.transfer import Continued
from tests.conftest import TENANT, object_keys, open_uploads
from tests.integration.test_exporter import lake_exporter, pinned
from tests.integration.test_transfer import done_job

BEFORE, CHANGED = "2026-11-01", "2026-11-02"


class KeptFacts:
    """The facts of the landings a test made, as the ledger table would return them (newest first)."""

    def __init__(self) -> None:
        self.facts: list[LandingFact] = []

    def keep(self, manifest: Manifest) -> None:
        self.facts.extend(facts_of(manifest))

    def before(self, tenant_id: str, table: str, day: date, *, limit: int) -> list[LandingFact]:
        earlier = [f for f in self.facts if (f.tenant_id, f.table) == (tenant_id, table) and f.day < day]
        return sorted(earlier, key=lambda f: f.day, reverse=True)[:limit]


@pytest.fixture
def exporter(simulator: Any, s3: Any) -> Exporter:
    return lake_exporter(simulator, s3)


def baseline(simulator: Any, exporter: Exporter, bucket: str, history: KeptFacts, **knobs: Any) -> None:
    """The day before lands under its table (no gate) and becomes the history."""
    simulator.configure(schema_change_from=CHANGED, **knobs)
    result = exporter.land(pinned(done_job(simulator, exporter.client, BEFORE)), bucket=bucket)
    assert isinstance(result, Landed)
    history.keep(result.manifest)


def quarantined(result: LandingResult) -> Quarantined:
    assert isinstance(result, Quarantined), result
    return result


@pytest.mark.parametrize("ignore_range", [False, True], ids=["ranged", "streamed"])
def test_a_retyped_file_lands_in_quarantine_only(simulator, exporter, s3, bucket, ignore_range):
    """Given day 1 landed and day 2 retyping int1, when day 2 lands through the gate (its footer proven from ranged
    reads before any part is uploaded, or from the stream's tail before completion), then the file and its manifest
    are under _quarantine/tenant/day/job only: nothing under the table, no upload left open."""
    history = KeptFacts()
    baseline(simulator, exporter, bucket, history, ignore_range=ignore_range)
    job = done_job(simulator, exporter.client, CHANGED)
    held = quarantined(exporter.land(pinned(job), bucket=bucket, gate=SchemaGate(history)))
    folder = f"lake/_quarantine/tenant={TENANT}/dt={CHANGED}/job={job.id}/"
    assert held.location == f"s3://{bucket}/{folder}"
    assert held.manifest.key == f"{folder}export/{job.filename}"
    assert held.manifest.manifest_key == f"{folder}export/_{job.filename}.manifest.json"
    assert [k for k in object_keys(s3, bucket) if CHANGED in k] == sorted(
        [held.manifest.key, held.manifest.manifest_key]
    )
    assert open_uploads(s3, bucket) == []
    written = read_manifest_at(s3, bucket, held.manifest.manifest_key)
    assert written is not None
    assert written.files[0].proof is not None
    assert written.files[0].proof["schemaFingerprint"] != history.facts[0].schema_fingerprint


def test_an_archive_with_a_retyped_member_lands_every_member_in_quarantine(simulator, exporter, s3, bucket):
    """All or none: the events member breaks, so sessions and clients go to quarantine with it, and the staged
    archive is removed as after any landing."""
    history = KeptFacts()
    baseline(simulator, exporter, bucket, history, delivery="zip")
    job = done_job(simulator, exporter.client, CHANGED)
    held = quarantined(exporter.land(pinned(job), bucket=bucket, gate=SchemaGate(history)))
    folder = f"lake/_quarantine/tenant={TENANT}/dt={CHANGED}/job={job.id}/"
    members = [f"{folder}{table}/part-0.parquet" for table in ("clients", "events", "sessions")]
    assert [k for k in object_keys(s3, bucket) if CHANGED in k or job.id in k] == sorted(
        [*members, f"{folder}events/_{job.id}.manifest.json"]
    )
    assert sorted(f.key for f in held.manifest.files) == members
    assert open_uploads(s3, bucket) == []


def test_a_rerun_of_a_quarantined_job_finds_it_there(simulator, exporter, s3, bucket):
    """A retried Download (its events were refused) lands nothing twice: the quarantined file is already there."""
    history = KeptFacts()
    baseline(simulator, exporter, bucket, history)
    identity = pinned(done_job(simulator, exporter.client, CHANGED))
    first = quarantined(exporter.land(identity, bucket=bucket, gate=SchemaGate(history)))
    again = quarantined(exporter.land(identity, bucket=bucket, gate=SchemaGate(history)))
    assert again.manifest.already_existed
    assert (again.manifest.key, again.location) == (first.manifest.key, first.location)


def test_an_additive_change_and_a_forced_re_export_land_under_the_table(simulator, exporter, s3, bucket):
    """A new column is absorbed by the table's readers: it lands. A breaking one lands with ``replace`` (force): the
    operator accepted it, so the gate is not asked."""
    history = KeptFacts()
    baseline(simulator, exporter, bucket, history, schema_change="add")
    added = exporter.land(
        pinned(done_job(simulator, exporter.client, CHANGED)), bucket=bucket, gate=SchemaGate(history)
    )
    assert isinstance(added, Landed)
    assert added.manifest.key.startswith(f"lake/tenant={TENANT}/dt={CHANGED}/")
    simulator.configure(schema_change_from=CHANGED, schema_change="type")
    forced = exporter.land(
        pinned(done_job(simulator, exporter.client, CHANGED)),
        bucket=bucket,
        replace=True,
        previous_manifest_key=added.manifest.manifest_key,
        gate=SchemaGate(history),
    )
    assert isinstance(forced, Landed)
    assert forced.manifest.key.startswith(f"lake/tenant={TENANT}/dt={CHANGED}/")
    assert not [k for k in object_keys(s3, bucket) if "_quarantine/" in k]


def test_a_quarantine_landing_out_of_time_resumes_into_the_quarantine(simulator, exporter, s3, bucket):
    """Given a retyped 16 MiB file and an invocation already out of time, when it lands through the gate, then the
    checkpoint it returns is the quarantine's, and the next invocation (which carries no verdict, only the
    checkpoint) resumes it there: the file is never under its table."""
    history = KeptFacts()
    baseline(simulator, exporter, bucket, history)
    simulator.configure(schema_change_from=CHANGED, target_bytes=16 * MIB)
    identity = pinned(done_job(simulator, exporter.client, CHANGED))
    first = exporter.land(identity, bucket=bucket, gate=SchemaGate(history), time_left=lambda: 0.0)
    assert isinstance(first, Continued)
    folder = f"lake/_quarantine/tenant={TENANT}/dt={CHANGED}/job={identity.job_id}/"
    assert first.checkpoint.key.startswith(folder)
    assert [k for k in object_keys(s3, bucket) if CHANGED in k] == []
    resumed = quarantined(exporter.land(identity, bucket=bucket, gate=SchemaGate(history), resume=first.checkpoint))
    assert resumed.manifest.key == first.checkpoint.key
    assert resumed.manifest.bytes == simulator.job_file(identity.job_id).stat().st_size > 16 * MIB
    assert [k for k in object_keys(s3, bucket) if CHANGED in k] == sorted(
        [resumed.manifest.key, resumed.manifest.manifest_key]
    )
    assert open_uploads(s3, bucket) == []


def test_the_manifest_history_finds_the_day_before_in_s3_and_says_when_a_layout_cannot_be_listed(
    simulator, exporter, s3, bucket, caplog
):
    """What the CLI compares with: the facts of the last day landed before, read from its manifest (a day further
    back when the one before is missing); a template with the job id in the folder has no history, said once."""
    simulator.configure(delivery="zip")
    first = exporter.land(pinned(done_job(simulator, exporter.client, BEFORE)), bucket=bucket)
    assert isinstance(first, Landed)
    settings = exporter.settings
    history = ManifestHistory(s3, bucket, layout=settings.layout, archive_layout=settings.archive_layout)
    [fact] = history.before(TENANT, "events", date(2026, 11, 3), limit=7)
    assert (fact.day, fact.job_id, fact.manifest_key) == (
        date(2026, 11, 1),
        first.manifest.job_id,
        first.manifest.manifest_key,
    )
    assert fact.schema_fingerprint == facts_of(first.manifest)[0].schema_fingerprint
    assert history.before(TENANT, "events", date(2026, 11, 1), limit=7) == []
    assert history.before("another-tenant", "events", date(2026, 11, 3), limit=7) == []
    by_job = KeyLayout(prefix="lake", template="{prefix}/{table}/{jobId}/tenant={tenantId}/{filename}")
    blind = ManifestHistory(s3, bucket, layout=settings.layout, archive_layout=by_job)
    assert blind.before(TENANT, "events", date(2026, 11, 3), limit=7) == []
    assert blind.before(TENANT, "sessions", date(2026, 11, 3), limit=7) == []
    warnings = [r.getMessage() for r in caplog.records if "cannot be found by day" in r.getMessage()]
    assert len(warnings) == 1
