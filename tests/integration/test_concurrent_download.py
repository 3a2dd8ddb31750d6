"""A Download retried while its first invocation still runs (issue 11, "concurrency").

Step Functions retries the Download task when its invocation times out or fails, and on AWS the first
invocation may still be running: two landings of one job at once. The engine runs one invocation at a time, so
this drives two landings of the export use case (:meth:`Exporter.land`) from two threads, against the simulator
and LocalStack's S3 (which answers conditional writes and NoSuchUpload as S3 does). After both: one data
object, byte-identical to the source, one manifest naming it, both landings answer that same manifest, and no
multipart upload is left open.

Everything before the completions runs at once; the completions themselves are ordered (the second landing's is
delayed a moment). LocalStack does not serialise two conditional completions of one key arriving at the same
instant: both may succeed, or one fails with a 500 and leaves an object that cannot be read. S3 applies them one
after the other, so ordering them here tests what S3 does.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from omborigrid_export.client import OmboriGridClient
from omborigrid_export.errors import TransferFailed
from omborigrid_export.exporter import Exporter, Landed, LandingResult
from omborigrid_export.layout import KeyLayout
from omborigrid_export.ledger import EntryState, Ledger
from omborigrid_export.models import ExportJob, JobIdentity
from omborigrid_export.settings import MIB, Settings, TransferSettings
from omborigrid_export.transfer import Checkpoint, Continued
from tests.conftest import object_keys, open_uploads
from tests.integration.test_transfer import done_job, source_bytes
from tests.ledger_table import SerializedCalls, create_ledger_table

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def exporter_on(simulator: Any, s3_endpoint: str, **slow: float) -> Exporter:
    """An exporter with an S3 client of its own; ``slow`` delays each call of those S3 operations by that many
    seconds before it is sent (``PutObject=0.5``): how the tests order the two landings' steps."""
    from botocore.config import Config

    # LocalStack answers NoSuchUpload to an UploadPart before it reads the part's body, then stops reading: the
    # client's send stalls until its socket timeout (60 s by default) before botocore tries again.
    config = Config(max_pool_connections=8, read_timeout=5)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="eu-west-1", config=config)
    for operation, seconds in slow.items():
        s3.meta.events.register(f"before-call.s3.{operation}", lambda seconds=seconds, **_: time.sleep(seconds))
    settings = Settings(
        api_url=simulator.base_url,
        token=simulator.token,
        allow_local_urls=True,
        transfer=TransferSettings(part_size=5 * MIB, concurrency=2),
        layout=KeyLayout(prefix="lake"),
    )
    return Exporter(settings, OmboriGridClient(simulator.base_url, simulator.token), s3)


def together(*landings: Callable[[], LandingResult]) -> list[LandingResult | BaseException]:
    """Run each landing on a thread of its own, released at the same moment; their results (or errors)."""
    barrier = threading.Barrier(len(landings))
    results: list[LandingResult | BaseException | None] = [None] * len(landings)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = landings[index]()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test's thread
            results[index] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(landings))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return [r for r in results if r is not None]


def assert_landed_once(s3: Any, bucket: str, source: bytes, results: list[LandingResult | BaseException]) -> None:
    keys = object_keys(s3, bucket)
    manifests = [k for k in keys if k.rsplit("/", 1)[-1].startswith("_")]
    data = [k for k in keys if k not in manifests]
    assert len(data) == 1, keys
    assert len(manifests) == 1, keys
    assert s3.get_object(Bucket=bucket, Key=data[0])["Body"].read() == source
    stored = json.loads(s3.get_object(Bucket=bucket, Key=manifests[0])["Body"].read())
    assert (stored["key"], stored["manifestKey"]) == (data[0], manifests[0])
    assert open_uploads(s3, bucket) == []
    for result in results:
        assert isinstance(result, Landed), result
        assert {**result.manifest.to_dict(), "alreadyExisted": False} == {**stored, "alreadyExisted": False}


def slow_job(simulator: Any, exporter: Exporter) -> tuple[ExportJob, JobIdentity]:
    simulator.configure(target_bytes=16 * MIB)
    job = done_job(simulator, exporter.client)
    simulator.configure(bandwidth_bytes_per_sec=16 * MIB)  # each invocation takes about a second
    return job, JobIdentity(job.id, job.request)


#: The second landing's completion waits this long, so the two completions reach S3 one after the other.
SECOND = {"CompleteMultipartUpload": 0.5}


def test_given_two_fresh_landings_of_one_job_at_once_then_one_object_one_manifest(simulator, s3_endpoint, s3, bucket):
    """Given the first invocation and its retry both starting from no checkpoint (two uploads of one job at once),
    then the second completion loses (412), finds the same bytes landed, aborts its own upload and answers the
    first's manifest."""
    first, second = exporter_on(simulator, s3_endpoint), exporter_on(simulator, s3_endpoint, **SECOND)
    job, identity = slow_job(simulator, first)

    results = together(
        lambda: first.land(identity, bucket=bucket, keep_upload_on_failure=True),
        lambda: second.land(identity, bucket=bucket, keep_upload_on_failure=True),
    )

    assert_landed_once(s3, bucket, source_bytes(simulator, job), results)


def test_given_two_landings_resuming_one_checkpoint_at_once_then_one_object_one_manifest(
    simulator, s3_endpoint, s3, bucket
):
    """Given the first invocation's continuation and its retry resuming the same checkpoint (one upload, two
    writers of the same parts), then the second completion finds the upload completed, and answers the landing."""
    first, second = exporter_on(simulator, s3_endpoint), exporter_on(simulator, s3_endpoint, **SECOND)
    job, identity = slow_job(simulator, first)
    budget = iter([5.0, 0.0])
    started = first.land(identity, bucket=bucket, keep_upload_on_failure=True, time_left=lambda: next(budget, 0.0))
    assert isinstance(started, Continued), started
    checkpoint = started.checkpoint
    assert 0 < checkpoint.bytes_done < (job.file_size or 0)

    results = together(
        lambda: first.land(identity, bucket=bucket, resume=checkpoint, keep_upload_on_failure=True),
        lambda: second.land(identity, bucket=bucket, resume=checkpoint, keep_upload_on_failure=True),
    )

    assert_landed_once(s3, bucket, source_bytes(simulator, job), results)


def test_given_the_winners_manifest_is_slow_then_both_landings_answer_the_one_stored_manifest(
    simulator, s3_endpoint, s3, bucket
):
    """Given two fresh landings whose manifest writes are slow, so the one that lost the completion reads no
    manifest yet, then each answers the manifest that is stored (one, with the content proof)."""
    first = exporter_on(simulator, s3_endpoint, PutObject=0.5)
    second = exporter_on(simulator, s3_endpoint, PutObject=0.5, **SECOND)
    job, identity = slow_job(simulator, first)

    results = together(
        lambda: first.land(identity, bucket=bucket, keep_upload_on_failure=True),
        lambda: second.land(identity, bucket=bucket, keep_upload_on_failure=True),
    )

    assert_landed_once(s3, bucket, source_bytes(simulator, job), results)
    [manifest] = [k for k in object_keys(s3, bucket) if k.endswith(".json")]
    assert json.loads(s3.get_object(Bucket=bucket, Key=manifest)["Body"].read())["proof"] is not None


def test_given_a_retry_resuming_the_upload_its_first_invocation_completes_then_the_retry_lands_too(
    simulator, s3_endpoint, s3, bucket
):
    """Given the first invocation's continuation and its retry resuming one checkpoint, the retry's part uploads
    slow, then the continuation completes the upload first; the retry, whose upload is gone (NoSuchUpload),
    finds the object landed and answers the same manifest instead of failing."""
    fast, slow = exporter_on(simulator, s3_endpoint), exporter_on(simulator, s3_endpoint, UploadPart=1.5)
    job, identity = slow_job(simulator, fast)
    budget = iter([5.0, 0.0])
    first = fast.land(identity, bucket=bucket, keep_upload_on_failure=True, time_left=lambda: next(budget, 0.0))
    assert isinstance(first, Continued), first

    results = together(
        lambda: fast.land(identity, bucket=bucket, resume=first.checkpoint, keep_upload_on_failure=True),
        lambda: slow.land(identity, bucket=bucket, resume=first.checkpoint, keep_upload_on_failure=True),
    )

    assert_landed_once(s3, bucket, source_bytes(simulator, job), results)


def test_given_both_runs_keep_their_checkpoints_in_the_ledger_then_it_ends_landed_with_no_checkpoint_left(
    simulator, s3_endpoint, s3, bucket, moto_server
):
    """What Download does around a landing, for both runs: resume from the ledger's checkpoint, save one when
    continuing, mark the day landed. Given the first run's continuation and its retry (which read that checkpoint
    from the ledger) at once, then one of them marks the entry LANDED, the other's mark is refused, the landed
    entry holds no checkpoint any more, and a checkpoint either saves afterwards is refused too (so no later
    retry resumes an upload that was completed)."""
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_server, region_name="eu-west-1")
    table = create_ledger_table(dynamodb, f"ledger-{bucket}")
    ledger = Ledger(cast("DynamoDBClient", SerializedCalls(dynamodb)), table)
    first, second = exporter_on(simulator, s3_endpoint), exporter_on(simulator, s3_endpoint, **SECOND)
    job, identity = slow_job(simulator, first)
    request = identity.request
    assert ledger.plan(request) is None
    claim = ledger.dispatch(request, cap=5)
    assert claim is not None
    assert ledger.record_job(request, claim, job.id)
    budget = iter([5.0, 0.0])
    started = first.land(identity, bucket=bucket, keep_upload_on_failure=True, time_left=lambda: next(budget, 0.0))
    assert isinstance(started, Continued), started
    assert ledger.save_checkpoint(request, job.id, started.checkpoint.to_dict())
    marks: list[bool] = []

    def download(exporter: Exporter) -> LandingResult:
        saved = ledger.load_checkpoint(request, job.id)
        resume = Checkpoint.from_dict(saved) if saved is not None else None
        result = exporter.land(identity, bucket=bucket, resume=resume, keep_upload_on_failure=True)
        assert isinstance(result, Landed), result
        marks.append(ledger.mark_landed(request, job.id, result.manifest.key, result.manifest.manifest_key))
        return result

    results = together(lambda: download(first), lambda: download(second))

    assert_landed_once(s3, bucket, source_bytes(simulator, job), results)
    assert sorted(marks) == [False, True]
    entry = ledger.get(request)
    assert entry is not None
    assert entry.state is EntryState.LANDED
    assert ledger.load_checkpoint(request, job.id) is None
    assert ledger.save_checkpoint(request, job.id, started.checkpoint.to_dict()) is False
    assert ledger.in_flight() == 0


def test_given_a_409_while_completing_then_the_upload_is_kept_and_a_retry_lands_it(simulator, s3_endpoint, s3, bucket):
    """S3 answers 409 ConditionalRequestConflict to a conditional completion while another write to the key is
    under way, which may be the other run completing this same upload: the run does not abort it, fails
    retryably, and its retry resumes the upload and lands the file."""
    exporter = exporter_on(simulator, s3_endpoint)
    job, identity = slow_job(simulator, exporter)
    budget = iter([5.0, 0.0])
    started = exporter.land(identity, bucket=bucket, keep_upload_on_failure=True, time_left=lambda: next(budget, 0.0))
    assert isinstance(started, Continued), started
    conflicted = exporter_on(simulator, s3_endpoint)
    conflicted.s3.meta.events.register("before-call.s3.CompleteMultipartUpload", answer_409)  # type: ignore[arg-type]

    with pytest.raises(TransferFailed, match="in progress") as failed:
        conflicted.land(identity, bucket=bucket, resume=started.checkpoint, keep_upload_on_failure=True)

    assert failed.value.retryable
    assert open_uploads(s3, bucket) == [started.checkpoint.key]
    assert object_keys(s3, bucket) == []
    retried = exporter.land(identity, bucket=bucket, resume=started.checkpoint, keep_upload_on_failure=True)
    assert_landed_once(s3, bucket, source_bytes(simulator, job), [retried])


def answer_409(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
    """A before-call hook: S3's 409 to a conditional write while another write to the key is in progress."""
    error = {"Code": "ConditionalRequestConflict", "Message": "A conflicting operation is in progress."}
    response = AWSResponse("http://s3.test/", 409, HTTPHeaders(), None)
    return response, {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 409}}
