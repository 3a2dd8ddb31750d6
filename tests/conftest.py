"""Shared fixtures: the OmboriGrid simulator on loopback, and an S3 over real HTTP.

The integration tier (tests/integration/) lands files on LocalStack's S3 (``strict_s3``, started once per
session from its own venv by :mod:`tests.s3servers`), because LocalStack refuses what S3 refuses — a
wrong full-object or part checksum, parts out of order, a part after an abort — where moto accepts it.
``OMBORIGRID_TEST_S3=moto`` runs that tier on moto's server instead (a quick check, or a machine without
``make localstack``). Everything else stays on moto: its ``s3`` fixture is moto's server, and the state
machine tier's engine runs on in-process moto, which needs every AWS service in the same process.

Nothing here reaches the network beyond 127.0.0.1; AWS credentials are fake and every client points at
a local server.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import boto3
import pytest

from tests.s3servers import LocalStackS3

os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.pop("AWS_PROFILE", None)

TENANT = "621e1fc633350f0007637a0c"
MIB = 1024 * 1024
#: ``localstack`` (the default) or ``moto``: the S3 of the integration tier.
S3_BACKEND_VARIABLE = "OMBORIGRID_TEST_S3"
INTEGRATION_TIER = Path(__file__).resolve().parent / "integration"


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


@pytest.fixture(scope="session")
def strict_s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackS3]:
    """LocalStack's S3 on a free loopback port, its state and log under the session's temporary folder."""
    with LocalStackS3(tmp_path_factory.mktemp("localstack")) as server:
        yield server


@pytest.fixture(scope="session")
def strict_s3(strict_s3_server: LocalStackS3) -> str:
    """The endpoint URL of an S3 that enforces S3's rules (LocalStack)."""
    return strict_s3_server.endpoint_url


def s3_backend() -> str:
    backend = os.environ.get(S3_BACKEND_VARIABLE, "localstack")
    if backend not in ("localstack", "moto"):
        raise pytest.UsageError(f"{S3_BACKEND_VARIABLE} must be 'localstack' or 'moto', not {backend!r}.")
    return backend


def on_strict_s3(node: pytest.Item) -> bool:
    """Whether this test's S3 is LocalStack: the integration tier's, except tests marked ``s3_beyond_localstack``."""
    if node.get_closest_marker("s3_beyond_localstack") is not None:
        return False
    return INTEGRATION_TIER in node.path.parents and s3_backend() == "localstack"


#: Where this test's lines start in LocalStack's log (for the report of a failing test).
_LOG_START = pytest.StashKey[tuple[LocalStackS3, int]]()


@pytest.fixture
def s3_endpoint(request: pytest.FixtureRequest) -> str:
    """The S3 endpoint of this test: LocalStack in the integration tier (see the module docstring), else moto."""
    if not on_strict_s3(request.node):
        return str(request.getfixturevalue("moto_server"))
    server: LocalStackS3 = request.getfixturevalue("strict_s3_server")
    request.node.stash[_LOG_START] = (server, server.log_path.stat().st_size)
    return server.endpoint_url


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing test on LocalStack shows what LocalStack logged while it ran (its requests and errors)."""
    report = yield
    if report.failed and _LOG_START in item.stash:
        server, start = item.stash[_LOG_START]
        with server.log_path.open("rb") as log:
            log.seek(start)
            report.sections.append(("LocalStack log", log.read()[-20_000:].decode(errors="replace")))
    return report


@pytest.fixture
def s3(s3_endpoint: str) -> object:
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="eu-west-1", config=Config(max_pool_connections=32))


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
