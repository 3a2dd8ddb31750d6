"""LocalStack's S3 as a local process: the S3 of the integration tier, because it enforces S3's rules.

moto's S3 accepts a CompleteMultipartUpload whose full-object CRC32 is wrong (and keeps the object under
its final key), a wrong part checksum, parts out of order and a composite upload completed without its
part checksums, and it answers 500 rather than NoSuchUpload after an abort. LocalStack refuses each of
these as S3 does (tests/integration/test_strict_s3.py shows both sides), so a test that lands a file
there shows what S3 would accept.

LocalStack needs Python >= 3.12 and pins that the project's venv must not share, so it runs from its own
venv (``make localstack`` builds ``.localstack/`` from requirements-localstack.lock) as a child process:

* it binds 127.0.0.1 only (``GATEWAY_SERVER=hypercorn``; LocalStack's default server listens on 0.0.0.0),
  with S3 alone, no analytics, no certificate download and no DNS server (nor, see :data:`LAUNCHER`, DNS
  query), so it never reaches beyond loopback;
* everything it writes (objects, state, its TLS certificate, its temporary files) lives under the
  instance's own directory, apart from any other instance on the same machine: ``OVERRIDE_IN_DOCKER=0`` +
  ``FILESYSTEM_ROOT`` keep it out of the machine-wide ``/var/lib/localstack``, ``TMPDIR`` moves its
  ``/tmp/localstack`` (which it empties at start), and :data:`LAUNCHER` its S3 object store;
* it is ready when ``/_localstack/health`` reports s3 ``running``, within a bounded wait; its output goes to
  a log file that is quoted when it fails to start;
* it stops on SIGTERM (LocalStack 4.14 alone would not: see :data:`LAUNCHER`); should it not within a
  few seconds, it is killed, as its state is disposable by design.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parents[1]
#: Built by ``make localstack``.
LOCALSTACK_VENV = REPO / ".localstack"
#: LocalStack's entry point. On Linux it first asks for SIGTERM when its parent dies, so a test process
#: that is killed (no fixture teardown) leaves no LocalStack behind. Then three of LocalStack's defects
#: are mended:
#:
#: * its S3 object store moves from the machine-wide ``/tmp/localstack-s3-storage`` (a constant shared by
#:   every instance, left behind when one is killed) to this instance's folder, the first argument;
#: * it takes the virtual-host name of S3 as not resolving, instead of asking the machine's DNS server for
#:   ``s3.localhost.localstack.cloud`` at start;
#: * on SIGTERM it stops its asyncio loop from another thread without waking it, so it never exits: the
#:   loop is woken once more after the shutdown; and once LocalStack has returned, the process exits
#:   without the interpreter's final garbage collection of its ~500 MB heap (seconds on a busy machine).
LAUNCHER = """
import ctypes, os, runpy, signal, sys

if sys.platform == "linux":
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
import localstack.services.s3.provider as provider
import localstack.utils.aws.aws_stack as aws_stack
from localstack.runtime.server.hypercorn import HypercornRuntimeServer

provider.DEFAULT_S3_TMP_DIR = sys.argv.pop(1)
aws_stack.CACHE_S3_HOSTNAME_DNS_STATUS = False
_shutdown = HypercornRuntimeServer.shutdown

def shutdown(self):
    _shutdown(self)
    self.loop.call_soon_threadsafe(self.loop.stop)

HypercornRuntimeServer.shutdown = shutdown
try:
    runpy.run_module("localstack.runtime.main", run_name="__main__", alter_sys=True)
except SystemExit as stopped:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(stopped.code if isinstance(stopped.code, int) else int(stopped.code is not None))
"""
START_TIMEOUT_SECONDS = 120.0
STOP_GRACE_SECONDS = 5.0
LOG_TAIL_CHARS = 4000


class LocalStackUnavailable(RuntimeError):
    """LocalStack could not be started; the message says why and what to do."""


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalStackS3:
    """One LocalStack process serving S3 on a free loopback port, with its state under ``root``.

    Use as a context manager; :attr:`endpoint_url` is the S3 endpoint once started.
    """

    def __init__(self, root: Path, *, venv: Path = LOCALSTACK_VENV, start_timeout: float = START_TIMEOUT_SECONDS):
        self.root = root
        self.log_path = root / "localstack.log"
        self._python = venv / "bin" / "python"
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.startup_seconds = 0.0

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise LocalStackUnavailable("LocalStack is not running.")
        return self._process.pid

    def _environment(self) -> dict[str, str]:
        tmp = self.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        # The machine's environment, less anything that would point LocalStack at real AWS or a profile.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOCALSTACK_"))}
        return {
            **inherited,
            "SERVICES": "s3",
            "EAGER_SERVICE_LOADING": "1",
            "GATEWAY_LISTEN": f"127.0.0.1:{self.port}",
            "GATEWAY_SERVER": "hypercorn",
            "DISABLE_EVENTS": "1",
            "LOCALSTACK_VOLUME_DIR": str(self.root / "volume"),
            "LOCALSTACK_CLI": "0",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DNS_ADDRESS": "0",
            "OVERRIDE_IN_DOCKER": "0",
            "FILESYSTEM_ROOT": str(self.root / "filesystem"),
            "TMPDIR": str(tmp),
        }

    def start(self) -> str:
        if not self._python.exists():
            raise LocalStackUnavailable(
                f"LocalStack's venv {self._python.parent.parent} is missing: run `make localstack` (it needs "
                "Python 3.13), or set OMBORIGRID_TEST_S3=moto to run these tests on moto."
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_loopback_port()
        started = time.monotonic()
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [str(self._python), "-c", LAUNCHER, str(self.root / "s3-objects")],
                env=self._environment(),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_until_ready(started)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self.endpoint_url

    def _wait_until_ready(self, started: float) -> None:
        assert self._process is not None
        while True:
            code = self._process.poll()
            if code is not None:
                raise LocalStackUnavailable(f"LocalStack exited with status {code} while starting.\n{self.log_tail()}")
            if self._s3_running():
                return
            if time.monotonic() - started > self._start_timeout:
                raise LocalStackUnavailable(
                    f"LocalStack's S3 was not running after {self._start_timeout:.0f} s.\n{self.log_tail()}"
                )
            time.sleep(0.25)

    def _s3_running(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("GET", "/_localstack/health")
            health = json.loads(connection.getresponse().read())
        except (OSError, http.client.HTTPException, ValueError):
            return False
        finally:
            connection.close()
        return bool(health.get("services", {}).get("s3") == "running")

    def log_tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        return f"--- last lines of {self.log_path} ---\n{text[-LOG_TAIL_CHARS:]}"

    def rss_bytes(self) -> int:
        """Resident memory of the LocalStack process (Linux), for the figures tests report."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_GRACE_SECONDS)

    def __enter__(self) -> LocalStackS3:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
