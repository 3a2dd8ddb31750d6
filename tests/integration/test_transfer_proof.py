"""The content proof hook of the transfer, against the simulator (real HTTP) and moto's S3 server.

With Range, the tail is read and proven before any part is uploaded, so a bad file never reaches S3; from a
stream, the tail held in memory is proven before the completion; a resumed transfer proves again from Range.
The prover here is small but real: it refuses an impossible footer length, and has pyarrow decode the footer
from nothing but the tail it was handed (so a wrong tail cannot pass).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from omborigrid_export.client import OmboriGridClient
from omborigrid_export.errors import IntegrityError
from omborigrid_export.proof import CheckResult, Proof
from omborigrid_export.settings import MIB, TransferSettings
from omborigrid_export.transfer import Continued, Landed, Transfer
from tests.conftest import object_keys, open_uploads
from tests.integration.test_transfer import FAST, assert_identical, done_job, source_bytes
from tests.tail_file import TailOnlyFile

MAX_FOOTER = 1 * MIB


class FooterProver:
    """Refuses an impossible footer length; proves rows, row groups and schema by decoding the footer."""

    max_tail_bytes = MAX_FOOTER + 8

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def tail_length(self, size: int, last8: bytes) -> int:
        self.events.append("tail_length")
        if len(last8) != 8 or last8[4:] != b"PAR1":
            raise IntegrityError("The file does not end like a parquet file.")
        footer = int.from_bytes(last8[:4], "little")
        if not 2 <= footer <= min(MAX_FOOTER, size - 12):
            raise IntegrityError(f"A parquet footer of {footer} bytes is impossible in a {size}-byte file.")
        return footer + 8

    def prove(self, tail: bytes, size: int) -> Proof:
        self.events.append("prove")
        try:
            metadata = pq.read_metadata(TailOnlyFile(tail, size))
        except (pa.ArrowException, OSError) as exc:
            raise IntegrityError(f"The parquet footer does not decode ({exc}).") from None
        schema = str(metadata.schema)
        return Proof(
            rows=metadata.num_rows,
            row_groups=metadata.num_row_groups,
            schema_fingerprint="sha256:" + hashlib.sha256(schema.encode()).hexdigest(),
            columns=(),
            created_by=metadata.created_by,
            event_time_min=None,
            event_time_max=None,
            tenant_ids=(),
            checks={"footer": CheckResult.PASSED},
        )


@pytest.fixture
def own_simulator(tmp_path: Path) -> Iterator[Any]:
    """A simulator with its own cache, so a test may spoil a delivery without spoiling other tests'."""
    from omborigrid_local.simulator import Simulator, SimulatorConfig

    with Simulator(SimulatorConfig(queue_seconds=1, processing_seconds=2, time_scale=20), cache_dir=tmp_path) as sim:
        yield sim


def recording(s3: Any) -> list[str]:
    """The order of prover calls and UploadPart requests, in one list."""
    events: list[str] = []
    s3.meta.events.register("before-call.s3.UploadPart", lambda **_: events.append("upload"))
    return events


def land(s3: Any, client: OmboriGridClient, job: Any, bucket: str, events: list[str], **kwargs: Any) -> Any:
    transfer = Transfer(s3, kwargs.pop("settings", FAST), allow_local_urls=True, sleep=lambda _s: None)
    return transfer.land(
        job, lambda: client.get_job(job.id), bucket=bucket, key="k/file", prover=FooterProver(events), **kwargs
    )


def footer_length(data: bytes) -> int:
    return int.from_bytes(data[-8:-4], "little") + 8


def spoil(sim: Any, job: Any, how: str) -> None:
    """Rewrite the job's delivery in place, same size: the first 4 KiB of the real file, then zeros, then a
    footer length and ``PAR1`` (the truncated-upload shape that used to land as verified)."""
    path = sim.job_file(job.id)
    data = path.read_bytes()
    length = {"zero footer": 0, "garbage footer": 300}[how]
    spoiled = data[:4096] + b"\x00" * (len(data) - 4096 - 8) + length.to_bytes(4, "little") + b"PAR1"
    if how == "garbage footer":
        spoiled = spoiled[: -8 - 300] + bytes(range(256)) + b"\x07" * 44 + spoiled[-8:]
    assert len(spoiled) == len(data)
    path.write_bytes(spoiled)


@pytest.fixture
def client(simulator: Any) -> OmboriGridClient:
    return OmboriGridClient(simulator.base_url, simulator.token)


def test_given_a_ranged_source_then_the_proof_is_read_with_two_ranges_before_any_part(simulator, client, s3, bucket):
    simulator.configure(target_bytes=12 * MIB)
    job = done_job(simulator, client)
    data = source_bytes(simulator, job)
    events = recording(s3)
    outcome = land(s3, client, job, bucket, events)
    assert isinstance(outcome, Landed)
    assert outcome.proof is not None
    assert events[:2] == ["tail_length", "prove"]
    assert events.count("upload") == 3
    expected = pq.read_metadata(io.BytesIO(data))
    assert (outcome.proof.rows, outcome.proof.row_groups) == (expected.num_rows, expected.num_row_groups)
    assert outcome.proof.created_by == expected.created_by
    ranges = simulator.stats().download_ranges
    assert f"bytes={len(data) - 8}-{len(data) - 1}" in ranges
    assert f"bytes={len(data) - footer_length(data)}-{len(data) - 1}" in ranges
    assert_identical(s3, bucket, "k/file", data)


@pytest.mark.parametrize("how", ["zero footer", "garbage footer"])
def test_given_a_bad_file_on_a_ranged_source_then_it_is_refused_before_a_byte_is_uploaded(
    own_simulator, s3, bucket, how
):
    client = OmboriGridClient(own_simulator.base_url, own_simulator.token)
    job = done_job(own_simulator, client)
    spoil(own_simulator, job, how)
    events = recording(s3)
    with pytest.raises(IntegrityError, match="impossible" if how == "zero footer" else "does not decode"):
        land(s3, client, job, bucket, events)
    assert "upload" not in events
    assert object_keys(s3, bucket) == []
    assert open_uploads(s3, bucket) == []


def test_given_a_stream_source_then_the_tail_held_in_memory_is_proven_before_completion(simulator, client, s3, bucket):
    simulator.configure(target_bytes=11 * MIB)
    job = done_job(simulator, client)
    simulator.configure(ignore_range=True)
    events = recording(s3)
    completions: list[int] = []
    s3.meta.events.register(
        "before-call.s3.CompleteMultipartUpload", lambda **_: completions.append(events.count("prove"))
    )
    outcome = land(s3, client, job, bucket, events)
    assert outcome.object.ranged is False
    assert completions == [1]  # proven once, before the completion
    assert outcome.proof.rows == pq.read_metadata(io.BytesIO(source_bytes(simulator, job))).num_rows
    assert_identical(s3, bucket, "k/file", source_bytes(simulator, job))


def test_given_a_bad_file_on_a_stream_source_then_nothing_lands(own_simulator, s3, bucket):
    client = OmboriGridClient(own_simulator.base_url, own_simulator.token)
    job = done_job(own_simulator, client)
    spoil(own_simulator, job, "garbage footer")
    own_simulator.configure(ignore_range=True)
    events = recording(s3)
    with pytest.raises(IntegrityError, match="does not decode"):
        land(s3, client, job, bucket, events)
    assert object_keys(s3, bucket) == []
    assert open_uploads(s3, bucket) == []


def test_given_a_resumed_transfer_then_the_tail_is_read_again_with_range_and_proven(simulator, client, s3, bucket):
    simulator.configure(target_bytes=16 * MIB)
    job = done_job(simulator, client)
    data = source_bytes(simulator, job)
    settings = TransferSettings(part_size=5 * MIB, concurrency=1)
    calls = {"n": 0}

    def two_parts_of_time() -> float:
        calls["n"] += 1
        return 1000.0 if calls["n"] <= 2 else 0.0

    first = land(s3, client, job, bucket, [], settings=settings, time_left=two_parts_of_time)
    assert isinstance(first, Continued)
    simulator.reset_stats()
    events = recording(s3)
    resumed = land(s3, client, job, bucket, events, settings=settings, resume=first.checkpoint)
    assert isinstance(resumed, Landed)
    assert resumed.proof is not None
    assert resumed.proof.rows == pq.read_metadata(io.BytesIO(data)).num_rows
    assert events[:2] == ["tail_length", "prove"]
    # The probe opens the first missing part (kept open for that part); then the two ranges of the proof.
    ranges = simulator.stats().download_ranges
    assert ranges[0] == f"bytes={2 * 5 * MIB}-{3 * 5 * MIB - 1}"
    assert ranges[1:3] == [
        f"bytes={len(data) - 8}-{len(data) - 1}",
        f"bytes={len(data) - footer_length(data)}-{len(data) - 1}",
    ]
    assert_identical(s3, bucket, "k/file", data)


def test_given_no_prover_then_no_proof_and_no_extra_reads(simulator, client, s3, bucket):
    job = done_job(simulator, client)
    transfer = Transfer(s3, FAST, allow_local_urls=True, sleep=lambda _s: None)
    outcome = transfer.land(job, lambda: client.get_job(job.id), bucket=bucket, key="k/file")
    assert isinstance(outcome, Landed)
    assert outcome.proof is None
    size = job.file_size
    assert size is not None
    assert f"bytes={size - 8}-{size - 1}" not in simulator.stats().download_ranges
