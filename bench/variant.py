"""One measured run of one variant, in its own process: ``python -m bench.variant '<json params>'``.

The parent (:mod:`bench.run`) starts one process per run, so each variant's peak RSS is its own. Imports,
the S3 client and the job lookup are set up before the clock starts, so every variant pays the same fixed
costs outside it. The clock covers the transfer only: from opening the download (or, for the sink,
starting the upload) to the object being complete in S3. The object is checked (size) and deleted afterwards,
outside the clock, so the S3 emulator does not grow across runs.

Prints one JSON line on stdout: ``{"seconds", "bytes", "cpu_seconds", "peak_rss_mib"}``: CPU time of this process
(all threads) during the clock, and its peak RSS over its whole life (VmHWM).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, cast

CHUNK = 1024 * 1024  # what our transfer reads per iter_content step


def _s3(params: dict[str, Any]) -> Any:
    import boto3

    # Default client settings for every peer: the same client a user would make. (Over TLS the test CA comes
    # from AWS_CA_BUNDLE, set by the parent.)
    return boto3.client("s3", endpoint_url=params["s3_endpoint"], region_name="eu-west-1")


def _product_s3(params: dict[str, Any]) -> Any:
    """The S3 client the Download function makes (omborigrid_lambda.runtime, with the transfer's setting merged
    in), for ours and the sink alone."""
    import boto3
    from botocore.config import Config

    from omborigrid_export.transfer import transfer_s3_config

    endpoint = params["s3_endpoint"]
    config = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32)
    config = config.merge(transfer_s3_config(endpoint))
    return boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-1", config=config)


def _over_tls(job: Any, params: dict[str, Any]) -> Any:
    """The job with its download URL served through the TLS proxy in front of the simulator (same path and
    query: the proxy forwards the bytes unchanged), when the run is over TLS."""
    import dataclasses
    from urllib.parse import urlsplit, urlunsplit

    base = params.get("download_base")
    if not base or job.download_url is None:
        return job
    url, front = urlsplit(job.download_url), urlsplit(base)
    return dataclasses.replace(job, download_url=urlunsplit((front.scheme, front.netloc, *url[2:])))


def _job(params: dict[str, Any]) -> Any:
    from omborigrid_export.client import OmboriGridClient

    client = OmboriGridClient(params["api_url"], params["token"])
    job = _over_tls(client.get_job(params["job_id"]), params)
    return client, job


def _ranges(size: int, part_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + part_size, size) - 1) for start in range(0, size, part_size)]


def _drain(response: Any) -> int:
    got = 0
    for chunk in response.iter_content(CHUNK):
        got += len(chunk)
    return got


# -- the limit ------------------------------------------------------------------------------------------


def source_ranged(params: dict[str, Any]) -> Callable[[], int]:
    """The source alone, read the way ours reads it: the same byte ranges and concurrency, over the same pinned
    connections, each part read in the same steps straight into a reused memory map (and dropped)."""
    from omborigrid_export.safehttp import pinned_session_factory
    from omborigrid_export.transfer import choose_part_size
    from omborigrid_export.transfer.buffers import PartBufferPool
    from omborigrid_export.transfer.limits import CHUNK as STEP

    _client, job = _job(params)
    size = job.file_size
    part = choose_part_size(size, params["part_size"])
    sessions = pinned_session_factory(allow_local=True, ca_bundle=os.environ.get("REQUESTS_CA_BUNDLE"))
    buffers = PartBufferPool(part, keep=params["concurrency"])
    local = threading.local()

    def fetch(byte_range: tuple[int, int]) -> int:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = sessions()
        headers = {"Range": f"bytes={byte_range[0]}-{byte_range[1]}", "Accept-Encoding": "identity"}
        length = byte_range[1] - byte_range[0] + 1
        buffer = buffers.take(length)
        got = 0
        with session.get(job.download_url, headers=headers, stream=True, timeout=(10, 60)) as response:
            response.raise_for_status()
            with buffer.view() as view:
                while got < length:
                    n = response.raw.readinto(view[got : min(got + STEP, length)])
                    if not n:
                        break
                    got += n
        buffer.close()
        return got

    def run() -> int:
        with ThreadPoolExecutor(max_workers=params["concurrency"]) as pool:
            moved = sum(pool.map(fetch, _ranges(size, part)))
        buffers.close()
        return moved

    return run


def source_stream(params: dict[str, Any]) -> Callable[[], int]:
    """The source alone as one stream (what every peer reads)."""
    import requests

    _client, job = _job(params)

    def run() -> int:
        headers = {"Accept-Encoding": "identity"}
        with requests.get(job.download_url, headers=headers, stream=True, timeout=(10, 60)) as response:
            response.raise_for_status()
            return _drain(response)

    return run


def sink(params: dict[str, Any]) -> Callable[[], int]:
    """The sink alone: the same number of bytes, from memory, as the same multipart upload ours makes
    (same part size, concurrency and CRC32 checksums, computed by the same function)."""
    from omborigrid_export import checksum
    from omborigrid_export.transfer import choose_part_size

    s3 = _product_s3(params)
    size = params["size"]
    part = choose_part_size(size, params["part_size"])
    block = os.urandom(part)
    bucket, key = params["bucket"], params["key"]

    def run() -> int:
        upload_id = s3.create_multipart_upload(
            Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
        )["UploadId"]

        def put(number_range: tuple[int, tuple[int, int]]) -> dict[str, Any]:
            number, (start, end) = number_range
            data = block if end - start + 1 == part else block[: end - start + 1]
            crc = checksum.crc32_of(data)
            response = s3.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ChecksumCRC32=checksum.to_base64(crc),
            )
            return {"PartNumber": number, "ETag": response["ETag"], "crc": crc, "size": len(data)}

        with ThreadPoolExecutor(max_workers=params["concurrency"]) as pool:
            parts = list(pool.map(put, enumerate(_ranges(size, part), start=1)))
        crc = checksum.combine_parts((p["crc"], p["size"]) for p in parts)
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": p["PartNumber"], "ETag": p["ETag"], "ChecksumCRC32": checksum.to_base64(p["crc"])}
                    for p in parts
                ]
            },
            ChecksumCRC32=checksum.to_base64(crc),
            ChecksumType="FULL_OBJECT",
        )
        return size

    return run


# -- ours -----------------------------------------------------------------------------------------------


def ours(params: dict[str, Any]) -> Callable[[], int]:
    from omborigrid_export.safehttp import pinned_session_factory
    from omborigrid_export.settings import TransferSettings
    from omborigrid_export.transfer import Landed, Transfer

    s3 = _product_s3(params)
    client, job = _job(params)
    settings = TransferSettings(part_size=params["part_size"], concurrency=params["concurrency"])
    # The product's own download connections (pinned, checked), trusting the run's test CA over TLS: pinned
    # sessions read nothing of the environment, so the bundle is passed as the product would be given it.
    sessions = pinned_session_factory(allow_local=True, ca_bundle=os.environ.get("REQUESTS_CA_BUNDLE"))
    transfer = Transfer(s3, settings, allow_local_urls=True, session_factory=sessions)

    def refresh() -> Any:
        return _over_tls(client.get_job(job.id), params)

    def run() -> int:
        outcome = transfer.land(job, refresh, bucket=params["bucket"], key=params["key"])
        assert isinstance(outcome, Landed)
        return int(outcome.object.bytes)

    return run


# -- the peers a user would otherwise write --------------------------------------------------------------


def upload_fileobj(params: dict[str, Any]) -> Callable[[], int]:
    """``s3.upload_fileobj(requests.get(url, stream=True).raw, ...)`` with boto3's default TransferConfig."""
    import requests

    s3 = _s3(params)
    _client, job = _job(params)

    def run() -> int:
        with requests.get(job.download_url, stream=True, timeout=(10, 60)) as response:
            response.raise_for_status()
            s3.upload_fileobj(response.raw, params["bucket"], params["key"])
        return int(job.file_size)

    return run


def upload_fileobj_crt(params: dict[str, Any]) -> Callable[[], int]:
    """The same ``upload_fileobj(response.raw)`` through the CRT transfer client (``boto3[crt]``).

    boto3's own switch (``TransferConfig(preferred_transfer_client="crt")``) builds its CRT client for AWS's
    endpoint and the system trust store: it drops the client's ``endpoint_url`` (its request serializer is
    made with ``endpoint_url=None``) and passes no CA bundle, so against a local endpoint it would sign for and
    connect to s3.eu-west-1.amazonaws.com. The same CRT pieces are therefore assembled here from s3transfer's
    public ``s3transfer.crt`` module, with the endpoint and the test CA: the same native S3 client and transfer
    manager, pointed at the local endpoint.
    """
    import botocore.session
    import requests
    from s3transfer.crt import (
        BotocoreCRTCredentialsWrapper,
        BotocoreCRTRequestSerializer,
        CRTTransferManager,
        create_s3_crt_client,
    )

    endpoint = params["s3_endpoint"]
    session = botocore.session.Session()
    credentials = BotocoreCRTCredentialsWrapper(session.get_credentials()).to_crt_credentials_provider()
    tls = endpoint.startswith("https")
    crt_client = create_s3_crt_client(
        "eu-west-1",
        crt_credentials_provider=credentials,
        use_ssl=tls,
        verify=os.environ.get("AWS_CA_BUNDLE") if tls else None,
    )
    serializer = BotocoreCRTRequestSerializer(session, {"region_name": "eu-west-1", "endpoint_url": endpoint})
    _client, job = _job(params)

    def run() -> int:
        with requests.get(job.download_url, stream=True, timeout=(10, 60)) as response:
            response.raise_for_status()
            with CRTTransferManager(crt_client, serializer) as manager:
                manager.upload(cast("IO[bytes]", response.raw), params["bucket"], params["key"]).result()
        return int(job.file_size)

    return run


def smart_open_copy(params: dict[str, Any]) -> Callable[[], int]:
    """``smart_open.open(url)`` copied into ``smart_open.open("s3://...", "wb")`` with shutil.copyfileobj."""
    import smart_open

    s3 = _s3(params)
    _client, job = _job(params)
    target = f"s3://{params['bucket']}/{params['key']}"

    def run() -> int:
        with (
            smart_open.open(job.download_url, "rb", compression="disable") as source,
            smart_open.open(target, "wb", compression="disable", transport_params={"client": s3}) as sink_file,
        ):
            shutil.copyfileobj(source, sink_file)
        return int(job.file_size)

    return run


def put_object(params: dict[str, Any]) -> Callable[[], int]:
    """Read everything into memory, then one ``put_object``."""
    import requests

    s3 = _s3(params)
    _client, job = _job(params)

    def run() -> int:
        response = requests.get(job.download_url, timeout=(10, 60))
        response.raise_for_status()
        data = response.content
        s3.put_object(Bucket=params["bucket"], Key=params["key"], Body=data)
        return len(data)

    return run


VARIANTS: dict[str, Callable[[dict[str, Any]], Callable[[], int]]] = {
    "source-ranged": source_ranged,
    "source-stream": source_stream,
    "sink": sink,
    "ours": ours,
    "upload_fileobj": upload_fileobj,
    "upload_fileobj-crt": upload_fileobj_crt,
    "smart_open": smart_open_copy,
    "put_object": put_object,
}
WRITES_S3 = frozenset({"sink", "ours", "upload_fileobj", "upload_fileobj-crt", "smart_open", "put_object"})


def peak_rss_mib() -> float:
    """This process's peak RSS since it started (VmHWM). Unlike ``ru_maxrss`` seen by the parent, it does not
    include the parent's memory image, which Linux counts in a forked child's maximum until exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str]) -> int:
    params = json.loads(argv[0])
    name = params["variant"]
    run = VARIANTS[name](params)
    started, cpu_started = time.perf_counter(), time.process_time()
    moved = run()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    if name in WRITES_S3:
        s3 = _s3(params)
        landed = s3.head_object(Bucket=params["bucket"], Key=params["key"])["ContentLength"]
        if landed != params["size"]:
            print(f"{name}: landed {landed} bytes, expected {params['size']}", file=sys.stderr)
            return 3
        s3.delete_object(Bucket=params["bucket"], Key=params["key"])
    elif moved != params["size"]:
        print(f"{name}: read {moved} bytes, expected {params['size']}", file=sys.stderr)
        return 3
    result = {"seconds": seconds, "bytes": params["size"], "cpu_seconds": cpu_seconds, "peak_rss_mib": peak_rss_mib()}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.pop("AWS_PROFILE", None)
    sys.exit(main(sys.argv[1:]))
