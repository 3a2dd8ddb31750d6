"""Archive deliveries publish whole or not at all (issue 8 part 3), over real HTTP and moto's S3.

The zips are crafted here (``zipfile`` + real parquet from pyarrow) and served by a tiny stand-in of the API on
loopback: one job document per id and its file, so a broken member, a zip bomb or a lying size can be delivered
exactly as a faulty vendor would.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ConnectionClosedError

from omborigrid_export.archive import ArchiveLander
from omborigrid_export.client import JOBS_PATH, OmboriGridClient
from omborigrid_export.errors import IntegrityError, LandingConflict, TransferFailed
from omborigrid_export.exporter import Exporter, Landed
from omborigrid_export.layout import KeyLayout
from omborigrid_export.manifest import Manifest
from omborigrid_export.models import ExportJob, ExportRequest, JobIdentity, JobStatus
from omborigrid_export.proof import CheckResult, Column, Proof
from omborigrid_export.settings import MIB, ArchiveLimits, Settings, TransferSettings
from omborigrid_export.transfer import LandedObject
from omborigrid_export.zipmembers import inflate
from tests.conftest import TENANT, free_port, object_keys, open_uploads
from tests.tail_file import TailOnlyFile

DAY = "2026-11-01"
TOKEN = "crafted-token"


class CraftedApi:
    """Serves job documents and their files; ``deliver`` puts a done job with the given bytes."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.startswith(JOBS_PATH + "/"):
                    job_id = self.path.rsplit("/", 1)[-1]
                    body = json.dumps(api.job(job_id)).encode()
                    self._send(200, body, "application/json")
                elif self.path.startswith("/files/"):
                    self._send(200, api.files[self.path.rsplit("/", 1)[-1]], "application/octet-stream")
                else:
                    self._send(404, b"{}", "application/json")

            def _send(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # A client that has read what it needed (a peek at the first bytes) hangs up: not an error.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def job(self, job_id: str) -> dict[str, Any]:
        return {
            "id": job_id,
            "status": "done",
            "tenantId": TENANT,
            "dataDateFrom": DAY,
            "dataDateTo": DAY,
            "filename": "export.zip",
            "fileSize": len(self.files[job_id]),
            "downloadUrl": f"{self.base_url}/files/{job_id}",
        }

    def deliver(self, job_id: str, data: bytes) -> JobIdentity:
        self.files[job_id] = data
        return JobIdentity(job_id, ExportRequest.parse(TENANT, DAY, DAY))


@pytest.fixture
def api() -> Iterator[CraftedApi]:
    server = CraftedApi()
    yield server
    server.server.shutdown()


def parquet_bytes(rows: int, seed: int = 0) -> bytes:
    table = pa.table({"tenantId": [TENANT] * rows, "value": [(i * 7919 + seed) % 1000 for i in range(rows)]})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=max(1, rows // 3))
    return sink.getvalue()


def zip_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


MEMBERS = {
    f"events/dt={DAY}/part-0.parquet": parquet_bytes(3000, 1),
    f"sessions/dt={DAY}/part-0.parquet": parquet_bytes(500, 2),
    f"clients/dt={DAY}/part-0.parquet": parquet_bytes(200, 3),
}


def with_broken_third_member() -> bytes:
    """The third member's compressed bytes are damaged in the middle: it fails its inflate or its CRC-32."""
    data = bytearray(zip_of(MEMBERS))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).infolist()[2]
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    data[middle : middle + 16] = bytes(16)
    return bytes(data)


def declaring(data: bytes, member: int, file_size: int) -> bytes:
    """The zip with one member's inflated size in the central directory replaced by ``file_size``."""
    patched = bytearray(data)
    offset = -1
    for _ in range(member + 1):
        offset = patched.index(b"PK\x01\x02", offset + 1)
    struct.pack_into("<L", patched, offset + 24, file_size)
    return bytes(patched)


def with_a_twin_entry() -> bytes:
    """One member's compressed bytes listed twice in the central directory, under two names."""
    name = f"events/dt={DAY}/part-0.parquet"
    data = zip_of({name: MEMBERS[name]})
    eocd_at = data.rindex(b"PK\x05\x06")
    size, offset = struct.unpack_from("<LL", data, eocd_at + 12)
    entry = data[offset : offset + size]
    twin = entry.replace(name.encode(), name.replace("events", "eventz").encode())
    eocd = bytearray(data[eocd_at:])
    struct.pack_into("<HHL", eocd, 8, 2, 2, 2 * size)
    return data[:offset] + entry + twin + bytes(eocd)


def renamed_in_the_directory() -> bytes:
    """A member whose central directory entry names another file than its local header does."""
    name = f"events/dt={DAY}/part-0.parquet"
    data = zip_of({name: MEMBERS[name]})
    offset = data.rindex(b"PK\x01\x02")
    return data[:offset] + data[offset:].replace(name.encode(), name.replace("part-0", "part-9").encode())


class FooterProver:
    """A real content prover for tests: decodes the footer with pyarrow from the tail alone."""

    def __init__(self, max_tail_bytes: int = 16 * MIB) -> None:
        self.max_tail_bytes = max_tail_bytes

    def tail_length(self, size: int, last8: bytes) -> int:
        return int.from_bytes(last8[:4], "little") + 8

    def prove(self, tail: bytes, size: int) -> Proof:
        meta = pq.read_metadata(TailOnlyFile(tail, size))
        columns = tuple(
            Column(meta.schema.column(i).path, meta.schema.column(i).physical_type, None, "OPTIONAL")
            for i in range(meta.num_columns)
        )
        return Proof(
            rows=meta.num_rows,
            row_groups=meta.num_row_groups,
            schema_fingerprint="sha256:" + "0" * 64,
            columns=columns,
            created_by=meta.created_by,
            event_time_min=None,
            event_time_max=None,
            tenant_ids=(TENANT,),
            checks={"footer": CheckResult.PASSED, "dates": CheckResult.NOT_VERIFIED},
        )


def make_exporter(api: CraftedApi, s3: Any, **kwargs: Any) -> Exporter:
    settings = Settings(
        api_url=api.base_url,
        token=TOKEN,
        allow_local_urls=True,
        transfer=TransferSettings(part_size=5 * MIB),
        layout=KeyLayout(prefix="lake"),
        archive_layout=KeyLayout(
            prefix="lake", template="{prefix}/{table}/tenant={tenantId}/dt={dataDateFrom}/{filename}"
        ),
    )
    return Exporter(settings, OmboriGridClient(api.base_url, TOKEN), s3, **kwargs)


def landed_keys(s3: Any, bucket: str) -> list[str]:
    """Everything outside the staging area (where a delivery waits; the lifecycle rule expires it)."""
    return [k for k in object_keys(s3, bucket) if not k.startswith("lake/_staging/")]


def member_keys(table: str = "") -> list[str]:
    tables = [table] if table else ["clients", "events", "sessions"]
    return [f"lake/{t}/tenant={TENANT}/dt={DAY}/part-0.parquet" for t in tables]


def test_a_broken_third_member_lands_nothing_and_the_corrected_re_delivery_lands(api, s3, bucket):
    exporter = make_exporter(api, s3)
    broken = api.deliver("job-broken", with_broken_third_member())
    with pytest.raises(IntegrityError, match=re.escape("clients/dt=2026-11-01/part-0.parquet")):
        exporter.land(broken, bucket=bucket)
    assert landed_keys(s3, bucket) == []
    assert open_uploads(s3, bucket) == []

    corrected = api.deliver("job-corrected", zip_of(MEMBERS))
    result = exporter.land(corrected, bucket=bucket)
    assert isinstance(result, Landed)
    manifest = result.manifest
    assert sorted(f.key for f in manifest.files) == member_keys()
    assert landed_keys(s3, bucket) == sorted([*member_keys(), manifest.manifest_key])
    for f in manifest.files:
        assert s3.get_object(Bucket=bucket, Key=f.key)["Body"].read() == MEMBERS[str(f.member)]
    assert open_uploads(s3, bucket) == []


@pytest.mark.s3_beyond_localstack(
    "leftovers are removed with a conditional DeleteObject (If-Match: the ETag seen), which S3 supports on general "
    "purpose buckets and LocalStack 4.14 answers 501 NotImplemented"
)
def test_leftovers_without_a_manifest_never_block_a_later_delivery(api, s3, bucket):
    """Given a member key holding a different object from a run that died before its manifest, when the day is
    delivered again, then the leftover is replaced instead of refused with LandingConflict."""
    leftover = member_keys("events")[0]
    s3.put_object(Bucket=bucket, Key=leftover, Body=b"PAR1 half a file", Metadata={"omborigrid-job-id": "job-dead"})
    result = make_exporter(api, s3).land(api.deliver("job-again", zip_of(MEMBERS)), bucket=bucket)
    assert isinstance(result, Landed)
    assert s3.get_object(Bucket=bucket, Key=leftover)["Body"].read() == MEMBERS[f"events/dt={DAY}/part-0.parquet"]


def test_a_member_another_manifest_names_is_not_replaced_unless_forced(api, s3, bucket):
    exporter = make_exporter(api, s3)
    first = exporter.land(api.deliver("job-first", zip_of(MEMBERS)), bucket=bucket)
    assert isinstance(first, Landed)
    changed = {**MEMBERS, f"events/dt={DAY}/part-0.parquet": parquet_bytes(3001, 9)}
    with pytest.raises(LandingConflict, match="a manifest names"):
        exporter.land(api.deliver("job-second", zip_of(changed)), bucket=bucket)
    assert landed_keys(s3, bucket) == sorted([*member_keys(), first.manifest.manifest_key])
    assert open_uploads(s3, bucket) == []


def test_a_zip_bomb_is_refused_from_its_central_directory_with_memory_bounded(api, s3, bucket):
    bomb = zip_of({f"events/dt={DAY}/part-0.parquet": b"PAR1" + bytes(300 * MIB)})
    assert len(bomb) < MIB
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError, match="zip bomb"):
            make_exporter(api, s3).land(api.deliver("job-bomb", bomb), bucket=bucket)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * MIB, f"peak {peak / MIB:.1f} MiB"
    assert landed_keys(s3, bucket) == []
    assert open_uploads(s3, bucket) == []


def test_a_member_larger_than_declared_stops_at_the_first_extra_byte(api, s3, bucket):
    """Given a member whose central directory understates its size (so no ratio cap sees it), when it is
    inflated, then inflation stops one byte past the declared size with an IntegrityError."""
    events = MEMBERS[f"events/dt={DAY}/part-0.parquet"]
    lying = declaring(zip_of(MEMBERS), 0, len(events) - 1000)
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError, match=f"beyond the {len(events) - 1000} bytes"):
            make_exporter(api, s3).land(api.deliver("job-lying", lying), bucket=bucket)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 48 * MIB, f"peak {peak / MIB:.1f} MiB"
    assert landed_keys(s3, bucket) == []
    assert open_uploads(s3, bucket) == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"PK\x03\x04" + bytes(100) + b"PK\x05\x06" + bytes(18), "contains no files", id="empty-zip"),
        pytest.param(
            b"PK\x03\x04" + bytes(100) + b"PK\x05\x06" + struct.pack("<4H2LH", 0, 0, 1, 1, 46, 4, 0),
            "cannot be read as a zip",
            id="bad-central-directory",
        ),
        pytest.param(declaring(zip_of(MEMBERS), 1, 10**9 - 1), "more than the cap", id="beyond-the-total-cap"),
        pytest.param(with_a_twin_entry(), "overlapping members", id="overlapping-members"),
        pytest.param(renamed_in_the_directory(), "in its local header", id="names-that-differ"),
    ],
)
def test_a_malformed_zip_is_an_integrity_error_with_nothing_landed(api, s3, bucket, data, reason):
    exporter = make_exporter(api, s3, archive_limits=ArchiveLimits(max_inflated_bytes=10**8, max_ratio=10**9))
    with pytest.raises(IntegrityError, match=reason):
        exporter.land(api.deliver("job-bad", data), bucket=bucket)
    assert landed_keys(s3, bucket) == []
    assert open_uploads(s3, bucket) == []


def test_exploding_past_the_deadline_fails_retryably_with_nothing_published(s3, bucket):
    staged_key = "lake/_staging/job-late/export.zip"
    data = zip_of(MEMBERS)
    s3.put_object(Bucket=bucket, Key=staged_key, Body=data)
    staged = LandedObject(bucket, staged_key, len(data), "", "zip", "job-late", False, "")
    calls = iter([60.0, 60.0, 0.0])
    lander = ArchiveLander(
        s3,
        layout=KeyLayout(prefix="lake", template="{prefix}/{table}/tenant={tenantId}/dt={dataDateFrom}/{filename}"),
        part_size=5 * MIB,
        limits=ArchiveLimits(),
        time_left=lambda: next(calls, 0.0),
    )
    identity = JobIdentity("job-late", ExportRequest.parse(TENANT, DAY, DAY))
    job = make_job_for(identity)
    with pytest.raises(TransferFailed, match="deadline") as late:
        lander.land(staged, identity, job, replace=False)
    assert late.value.retryable
    assert object_keys(s3, bucket) == [staged_key]
    assert open_uploads(s3, bucket) == []

    # The retry, in an invocation with time, lands the staged archive whole.
    calls = iter([60.0] * 100)
    contents = lander.land(staged, identity, job, replace=False)
    in_archive_order = [*member_keys("events"), *member_keys("sessions"), *member_keys("clients")]
    assert [e.landed.key for e in contents.entries] == in_archive_order


def make_job_for(identity: JobIdentity) -> ExportJob:
    return ExportJob(identity.job_id, JobStatus.DONE, TENANT, date(2026, 11, 1), date(2026, 11, 1), "export.zip")


def test_each_member_carries_its_proof_and_the_manifest_says_which_checks_ran(api, s3, bucket):
    exporter = make_exporter(api, s3, prover_for=lambda _identity, _table: FooterProver())
    result = exporter.land(api.deliver("job-proven", zip_of(MEMBERS)), bucket=bucket)
    assert isinstance(result, Landed)
    document = result.manifest.to_dict()
    rows = {f["member"]: f["proof"]["rows"] for f in document["files"]}
    assert rows == {name: pq.read_metadata(io.BytesIO(data)).num_rows for name, data in MEMBERS.items()}
    assert document["proof"] == {
        "filesProven": 3,
        "filesTotal": 3,
        "rows": 3700,
        "checks": {"dates": "not verified", "footer": "passed"},
    }
    stored = s3.get_object(Bucket=bucket, Key=result.manifest.manifest_key)["Body"].read()
    assert Manifest.from_dict(json.loads(stored)) == result.manifest


def test_the_inflated_crc_is_the_zips_own(api, s3, bucket):
    """The manifest's per-member CRC-32 is the zip's, as S3 recorded it for the published member."""
    result = make_exporter(api, s3).land(api.deliver("job-crc", zip_of(MEMBERS)), bucket=bucket)
    assert isinstance(result, Landed)
    for f in result.manifest.files:
        expected = zlib.crc32(MEMBERS[str(f.member)]).to_bytes(4, "big")
        head = s3.head_object(Bucket=bucket, Key=f.key, ChecksumMode="ENABLED")
        assert base64.b64decode(f.checksum_crc32) == expected == base64.b64decode(head["ChecksumCRC32"])


def test_a_bomb_lying_about_its_size_inflates_exactly_the_declared_bytes_then_stops():
    """Given 300 MiB of zeros declared as 2 MiB (a ratio no cap objects to), when inflated, then exactly the
    declared 2 MiB come out, the first extra byte is an IntegrityError, and memory stays small."""
    declared = 2 * MIB
    lying = declaring(zip_of({"events/part-0.parquet": bytes(300 * MIB)}), 0, declared)
    archive = zipfile.ZipFile(io.BytesIO(lying))
    (info,) = archive.infolist()
    assert info.file_size == declared
    assert info.file_size < 100 * info.compress_size
    sizes: list[int] = []
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError, match=f"beyond the {declared} bytes .* first extra byte"):
            sizes.extend(len(chunk) for chunk in inflate(io.BytesIO(lying), info))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(sizes) == declared
    assert peak < 8 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_the_footer_is_proven_from_the_kept_tail_alone_and_a_footer_beyond_it_cannot_be_verified(api, s3, bucket):
    kept = 4096
    events = MEMBERS[f"events/dt={DAY}/part-0.parquet"]
    footer = int.from_bytes(events[-8:-4], "little") + 8
    assert footer < kept < len(events)
    exporter = make_exporter(api, s3, prover_for=lambda _identity, _table: FooterProver(max_tail_bytes=kept))
    result = exporter.land(api.deliver("job-tail", zip_of(MEMBERS)), bucket=bucket)
    assert isinstance(result, Landed)
    assert [f.proof["rows"] for f in result.manifest.files if f.proof] == [3000, 500, 200]

    tight = make_exporter(api, s3, prover_for=lambda _identity, _table: FooterProver(max_tail_bytes=footer - 1))
    with pytest.raises(IntegrityError, match="cannot be verified"):
        tight.land(api.deliver("job-tight", zip_of(MEMBERS)), bucket=bucket, replace=True)
    assert landed_keys(s3, bucket) == sorted([*member_keys(), result.manifest.manifest_key])
    assert open_uploads(s3, bucket) == []


def test_a_completion_that_fails_midway_takes_back_the_members_already_published(api, s3, bucket):
    """Given another run landing the third member's key between our check and our completion (raced in
    through boto3's own event hook), when the third completion is refused, then the two members this job
    already published are deleted before LandingConflict is raised, and the racer's object stays."""
    racer_key = member_keys("clients")[0]
    completed: list[str] = []

    def race(params: dict[str, Any], **_kwargs: Any) -> None:
        if not params["Key"].startswith("lake/_staging/"):
            completed.append(params["Key"])
        if params["Key"] == racer_key:
            s3.put_object(Bucket=bucket, Key=racer_key, Body=b"the other run's file")

    s3.meta.events.register("provide-client-params.s3.CompleteMultipartUpload", race)
    try:
        with pytest.raises(LandingConflict):
            make_exporter(api, s3).land(api.deliver("job-raced", zip_of(MEMBERS)), bucket=bucket)
    finally:
        s3.meta.events.unregister("provide-client-params.s3.CompleteMultipartUpload", race)
    assert completed == [*member_keys("events"), *member_keys("sessions"), racer_key]
    assert landed_keys(s3, bucket) == [racer_key]
    assert s3.get_object(Bucket=bucket, Key=racer_key)["Body"].read() == b"the other run's file"
    assert open_uploads(s3, bucket) == []


@pytest.fixture
def s3_elsewhere() -> Iterator[Any]:
    """moto's S3 in a process of its own, so that what it stores is not counted as our memory."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto did not start"
                time.sleep(0.1)
        yield boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="eu-west-1")
    finally:
        server.terminate()
        server.wait(10)


def test_a_large_member_lands_with_memory_bounded_by_parts_and_the_footer_tail(api, s3_elsewhere):
    """Memory does not grow with the member: the transfer's parts, then one part plus the footer tail."""
    s3 = s3_elsewhere
    bucket = "lake-memory"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    rng = random.Random(7)
    big = pa.table({"tenantId": [TENANT] * 600_000, "blob": [rng.randbytes(64) for _ in range(600_000)]})
    sink = io.BytesIO()
    pq.write_table(big, sink, compression="none")
    member = sink.getvalue()
    del big, sink
    assert len(member) > 36 * MIB
    exporter = make_exporter(api, s3, prover_for=lambda _i, _t: FooterProver(max_tail_bytes=4 * MIB))
    identity = api.deliver("job-large", zip_of({f"events/dt={DAY}/part-0.parquet": member}))
    tracemalloc.start()
    try:
        result = exporter.land(identity, bucket=bucket)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result, Landed)
    assert result.manifest.files[0].proof is not None
    assert result.manifest.files[0].proof["rows"] == 600_000
    assert s3.get_object(Bucket=bucket, Key=member_keys("events")[0])["Body"].read() == member
    print(f"peak {peak / MIB:.1f} MiB for a {len(member) / MIB:.0f} MiB member")
    assert peak < 32 * MIB, f"peak {peak / MIB:.1f} MiB for a {len(member) / MIB:.0f} MiB member"


def test_a_rerun_finds_the_members_landed_and_proves_them_from_their_stored_footers(api, s3, bucket):
    """Given an archive landed, when the same job lands again, then no member is inflated or uploaded again
    (only the delivery is staged once more), and the manifest still carries each member's proof."""
    exporter = make_exporter(api, s3, prover_for=lambda _identity, _table: FooterProver())
    identity = api.deliver("job-rerun", zip_of(MEMBERS))
    first = exporter.land(identity, bucket=bucket)
    uploads: list[str] = []

    def record(params: dict[str, Any], **_kwargs: Any) -> None:
        uploads.append(params["Key"])

    s3.meta.events.register("provide-client-params.s3.CreateMultipartUpload", record)
    try:
        again = exporter.land(identity, bucket=bucket)
    finally:
        s3.meta.events.unregister("provide-client-params.s3.CreateMultipartUpload", record)
    assert isinstance(first, Landed)
    assert isinstance(again, Landed)
    assert [k for k in uploads if not k.startswith("lake/_staging/")] == []
    assert again.manifest.already_existed is True
    assert [f.proof for f in again.manifest.files] == [f.proof for f in first.manifest.files]
    assert all(f.proof is not None for f in again.manifest.files)


def test_a_retry_after_the_archive_was_staged_lands_it_from_the_staged_copy(api, s3, bucket):
    """Given a Download that staged the archive whole and then failed before its members were published (here: the
    first member's upload loses its connection), when the same job lands again, then the staged object is recognised
    as a zip by its bytes (its kind was not recorded when it was written) and the members land from it, once."""
    exporter = make_exporter(api, s3, prover_for=lambda _identity, _table: FooterProver())
    identity = api.deliver("job-staged", zip_of(MEMBERS))
    failed_once: list[str] = []

    def unreachable_once(params: dict[str, Any], **_kwargs: Any) -> None:
        if not params["Key"].startswith("lake/_staging/") and not failed_once:
            failed_once.append(params["Key"])
            raise ConnectionClosedError(endpoint_url="http://s3.invalid")

    s3.meta.events.register("provide-client-params.s3.CreateMultipartUpload", unreachable_once)
    try:
        with pytest.raises(TransferFailed):
            exporter.land(identity, bucket=bucket)
    finally:
        s3.meta.events.unregister("provide-client-params.s3.CreateMultipartUpload", unreachable_once)
    assert failed_once
    assert landed_keys(s3, bucket) == []
    assert [k for k in object_keys(s3, bucket) if k.startswith("lake/_staging/")] != []

    again = exporter.land(identity, bucket=bucket)
    assert isinstance(again, Landed)
    assert again.manifest.content_kind == "zip"
    assert [k for k in landed_keys(s3, bucket) if k.endswith(".parquet")] == member_keys()
    assert [k for k in object_keys(s3, bucket) if k.startswith("lake/_staging/")] == []
