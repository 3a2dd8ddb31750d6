"""Shared fixtures: the OmboriGrid simulator on loopback, and moto's S3 server (real HTTP) for S3.

Nothing here reaches the network beyond 127.0.0.1; AWS credentials are fake and every client points at
the local moto server.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.pop("AWS_PROFILE", None)

TENANT = "621e1fc633350f0007637a0c"
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def sim_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated deliveries are cached across the session (they are deterministic)."""
    return tmp_path_factory.mktemp("sim-cache")


@pytest.fixture
def simulator(sim_cache: Path) -> Iterator[object]:
    from omborigrid_local.simulator import Simulator, SimulatorConfig

    config = SimulatorConfig(queue_seconds=1, processing_seconds=2, time_scale=20)
    with Simulator(config, cache_dir=sim_cache) as sim:
        yield sim


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(moto_server: str) -> object:
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=moto_server, region_name="eu-west-1", config=Config(max_pool_connections=32))


@pytest.fixture
def bucket(s3: object) -> str:
    name = f"lake-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})  # type: ignore[attr-defined]
    return name


def object_keys(s3: object, bucket: str) -> list[str]:
    response = s3.list_objects_v2(Bucket=bucket)  # type: ignore[attr-defined]
    return sorted(o["Key"] for o in response.get("Contents", []))


def open_uploads(s3: object, bucket: str) -> list[str]:
    response = s3.list_multipart_uploads(Bucket=bucket)  # type: ignore[attr-defined]
    return [u["Key"] for u in response.get("Uploads", [])]
