"""A transfer whose process is killed (as Lambda kills a timed-out or out-of-memory invocation: no
cleanup runs) resumes from the last saved checkpoint: it fetches only the parts not yet in S3, and the
object lands byte-identical and verified."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from omborigrid_export.client import OmboriGridClient
from omborigrid_export.settings import MIB, TransferSettings
from omborigrid_export.transfer import Checkpoint, Landed, Transfer
from tests.conftest import object_keys
from tests.integration.test_transfer import done_job, source_bytes

CHILD = textwrap.dedent(
    """
    import json, sys, boto3
    from omborigrid_export.client import OmboriGridClient
    from omborigrid_export.settings import MIB, TransferSettings
    from omborigrid_export.transfer import Transfer

    api, token, s3_url, bucket, job_id, out = sys.argv[1:]
    client = OmboriGridClient(api, token)
    s3 = boto3.client("s3", endpoint_url=s3_url, region_name="eu-west-1")

    def save(checkpoint):
        with open(out + ".tmp", "w") as f:
            json.dump(checkpoint.to_dict(), f)
        import os
        os.replace(out + ".tmp", out)

    job = client.get_job(job_id)
    Transfer(s3, TransferSettings(part_size=5 * MIB, concurrency=1), allow_local_urls=True,
             checkpoint_every=0.0).land(job, lambda: client.get_job(job_id), bucket=bucket, key="k/file",
                                         on_checkpoint=save, keep_upload_on_failure=True)
    print("landed")
    """
)


def test_given_a_killed_transfer_then_the_next_one_resumes_from_the_saved_checkpoint(
    simulator: Any, s3: Any, bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    simulator.configure(target_bytes=30 * MIB)
    client = OmboriGridClient(simulator.base_url, simulator.token)
    job = done_job(simulator, client)
    # ~0.6 s per 5 MiB part: slow enough to kill the child mid-file.
    simulator.configure(bandwidth_bytes_per_sec=8 * MIB)
    saved = tmp_path / "checkpoint.json"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, simulator.base_url, simulator.token, s3_endpoint, bucket, job.id, str(saved)],
        env={**os.environ, "OMBORIGRID_ALLOW_LOCAL_URLS": "1"},
    )
    deadline = time.monotonic() + 60
    parts_saved: list[int] = []
    while time.monotonic() < deadline and child.poll() is None:
        if saved.exists():
            parts_saved = Checkpoint.from_dict(json.loads(saved.read_text())).part_numbers
            if len(parts_saved) >= 2:
                break
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    assert len(parts_saved) >= 2, "the child never saved a checkpoint with two parts"
    assert object_keys(s3, bucket) == []  # killed mid-way: nothing visible

    checkpoint = Checkpoint.from_dict(json.loads(saved.read_text()))
    simulator.configure(bandwidth_bytes_per_sec=None)
    simulator.reset_stats()
    outcome = Transfer(s3, TransferSettings(part_size=5 * MIB, concurrency=2), allow_local_urls=True).land(
        client.get_job(job.id), lambda: client.get_job(job.id), bucket=bucket, key="k/file", resume=checkpoint
    )
    assert isinstance(outcome, Landed)
    assert job.file_size is not None
    total_parts = -(-job.file_size // (5 * MIB))
    assert outcome.object.parts == total_parts
    body = s3.get_object(Bucket=bucket, Key="k/file")["Body"].read()
    assert body == source_bytes(simulator, job)
    # Only the parts missing from the checkpoint were fetched again (plus the last 64 KiB for the format
    # check, when the parts holding them were landed before the kill).
    fetched = [r for r in simulator.stats().download_ranges if r]
    starts = {int(r.split("=")[1].split("-")[0]) for r in fetched}
    for number in checkpoint.part_numbers:
        assert (number - 1) * 5 * MIB not in starts
    tail_parts = set(range((job.file_size - 65_557) // (5 * MIB) + 1, total_parts + 1))
    refetch_tail = 1 if tail_parts & set(checkpoint.part_numbers) else 0
    assert len(fetched) == total_parts - len(checkpoint.part_numbers) + refetch_tail


def test_given_a_checkpoint_sink_then_the_upload_is_checkpointed_before_its_first_part(
    simulator: Any, s3: Any, bucket: str
) -> None:
    """Found by DownloadFunction:s3.UploadPart@t0#1-crash_after (tests/statemachine/faults): an invocation that
    died (or failed retryably) before the first periodic checkpoint left its upload open, and the retry started
    another. Now the sink hears of the upload as soon as it exists, with no part yet, so the retry resumes it."""
    simulator.configure(target_bytes=12 * MIB)
    client = OmboriGridClient(simulator.base_url, simulator.token)
    job = done_job(simulator, client)
    saved: list[Checkpoint] = []

    outcome = Transfer(s3, TransferSettings(part_size=5 * MIB, concurrency=1), allow_local_urls=True).land(
        job, lambda: client.get_job(job.id), bucket=bucket, key="k/file", on_checkpoint=saved.append
    )

    assert isinstance(outcome, Landed)
    first = saved[0]
    assert (first.bytes_done, first.part_numbers, first.key) == (0, [], "k/file")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
