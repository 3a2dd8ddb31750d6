"""The address checked is the address connected to: asserted on the sockets the process actually opens.

Every ``socket.connect`` of the test process is recorded (address, port); a connect to anything but loopback
is refused before it leaves the machine, and still recorded, so "none to a refused address" is measured, not
inferred from an error message. Download hosts are fake names (``*.sim.test``) that only the injected
resolver knows; the simulator serves them on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import ipaddress
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from urllib3.util.connection import create_connection

from omborigrid_export.client import OmboriGridClient
from omborigrid_export.errors import UnsafeUrl
from omborigrid_export.models import ExportJob, ExportRequest, JobStatus
from omborigrid_export.safehttp import AddressPolicy, pinned_session, pinned_session_factory
from omborigrid_export.settings import MIB, TransferSettings
from omborigrid_export.transfer import Landed, Transfer
from tests.conftest import TENANT, object_keys, open_uploads

RANGED = TransferSettings(part_size=5 * MIB, concurrency=3, max_attempts=4)
METADATA = "169.254.169.254"


class Connections:
    """Every TCP connect of the process; non-loopback ones are refused (and recorded) without leaving the host."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_connect = socket.socket.connect
        record = self._record

        def connect(sock: socket.socket, address: Any) -> None:
            if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
                host = str(address[0])
                record(host, int(address[1]))
                if not ipaddress.ip_address(host.split("%", 1)[0]).is_loopback:
                    raise ConnectionRefusedError(errno.ECONNREFUSED, "the test refuses non-loopback connections")
            real_connect(sock, address)

        monkeypatch.setattr(socket.socket, "connect", connect)

    def _record(self, host: str, port: int) -> None:
        with self._lock:
            self.opened.append((host, port))

    def to_port(self, port: int) -> Counter[str]:
        return Counter(host for host, p in self.opened if p == port)

    def refused_addresses(self) -> list[tuple[str, int]]:
        return [(h, p) for h, p in self.opened if ipaddress.ip_address(h.split("%", 1)[0]).is_link_local]


class ScriptedResolver:
    """Answers name lookups from a script: a name maps to a list of answers, the last one repeating."""

    def __init__(self, script: dict[str, list[list[str]]]) -> None:
        self.script = script
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, host: str, port: int) -> list[str]:
        with self._lock:
            self.calls.append(host)
            answers = self.script.get(host)
            if answers is None:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            seen = sum(1 for call in self.calls if call == host)
            return answers[min(seen, len(answers)) - 1]


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> Connections:
    recorder = Connections()
    recorder.install(monkeypatch)
    return recorder


@pytest.fixture
def client(simulator: Any) -> OmboriGridClient:
    return OmboriGridClient(simulator.base_url, simulator.token)


def done_job(client: OmboriGridClient) -> ExportJob:
    job = client.create_job(ExportRequest.parse(TENANT, "2026-11-01", "2026-11-01"))
    deadline = time.monotonic() + 30
    while job.status is not JobStatus.DONE:
        assert time.monotonic() < deadline, "the simulator job never finished"
        time.sleep(0.05)
        job = client.get_job(job.id)
    return job


def on_host(job: ExportJob, host: str) -> ExportJob:
    assert job.download_url is not None
    return dataclasses.replace(job, download_url=job.download_url.replace("//127.0.0.1:", f"//{host}:", 1))


def fooled_precheck(host: str, port: int) -> list[str]:
    """The transfer's own URL pre-check, in its worst case: any name looks fine to it."""
    return ["127.0.0.1"]


def transfer_with(s3: Any, resolver: Callable[[str, int], list[str]], **kwargs: Any) -> Transfer:
    """A transfer whose connections resolve through ``resolver``; only the pinned session stands guard."""
    return Transfer(
        s3,
        RANGED,
        allow_local_urls=True,
        sleep=lambda _s: None,
        session_factory=kwargs.pop("session_factory", pinned_session_factory(allow_local=True, resolver=resolver)),
        resolver=fooled_precheck,
    )


def assert_nothing_landed(s3: Any, bucket: str) -> None:
    assert object_keys(s3, bucket) == []
    assert open_uploads(s3, bucket) == []


def report(case: str, connections: Connections, port: int) -> None:
    print(
        f"\n[connections] {case}: to download port {dict(connections.to_port(port))}, "
        f"to refused addresses {connections.refused_addresses()}"
    )


# --- a whole ranged transfer ---------------------------------------------------------------------------------


def test_given_a_stable_name_then_every_connection_of_a_ranged_transfer_is_resolved_and_checked(
    simulator: Any, client: OmboriGridClient, s3: Any, bucket: str, connections: Connections
) -> None:
    simulator.configure(target_bytes=17 * MIB)
    job = on_host(done_job(client), "files.sim.test")
    simulator.configure(drop_after_bytes=2 * MIB, drop_count=2, expire_next_downloads=1)
    pinned = ScriptedResolver({"files.sim.test": [["127.0.0.1"]]})
    transfer = transfer_with(s3, pinned)
    connections.opened.clear()

    outcome = transfer.land(job, lambda: job, bucket=bucket, key="k/file")

    assert isinstance(outcome, Landed)
    assert s3.get_object(Bucket=bucket, Key="k/file")["Body"].read() == simulator.job_file(job.id).read_bytes()
    by_address = connections.to_port(simulator.port)
    report("stable name, 4 parts, 2 drops, 1 refresh", connections, simulator.port)
    assert set(by_address) == {"127.0.0.1"}
    assert by_address["127.0.0.1"] >= 4  # three worker threads, and the drops forced new connections
    # One lookup of the connection's own host per socket opened: no socket was opened without a check.
    assert pinned.calls == ["files.sim.test"] * by_address["127.0.0.1"]
    assert connections.refused_addresses() == []
    assert simulator.stats().connections_dropped == 2
    assert outcome.object.stats["url_refreshes"] == 1


def test_given_a_name_that_rebinds_to_the_metadata_address_then_no_connection_goes_there(
    simulator: Any, client: OmboriGridClient, s3: Any, bucket: str, connections: Connections
) -> None:
    simulator.configure(target_bytes=17 * MIB)
    job = on_host(done_job(client), "files.sim.test")
    # The first lookup (the first connection) says loopback, every later one the metadata address.
    resolver = ScriptedResolver({"files.sim.test": [["127.0.0.1"], [METADATA]]})
    transfer = transfer_with(s3, resolver)
    connections.opened.clear()

    with pytest.raises(UnsafeUrl, match="link-local or metadata"):
        transfer.land(job, lambda: job, bucket=bucket, key="k/file")

    report("rebinding to 169.254.169.254 after the first lookup", connections, simulator.port)
    assert connections.refused_addresses() == []
    assert connections.to_port(simulator.port) == Counter({"127.0.0.1": 1})
    assert connections.to_port(80) == Counter()
    assert len(resolver.calls) >= 2
    assert_nothing_landed(s3, bucket)


def test_given_a_plain_session_the_same_rebinding_reaches_the_metadata_address(
    simulator: Any,
    client: OmboriGridClient,
    s3: Any,
    bucket: str,
    connections: Connections,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The baseline the pinned session fixes: a checked URL handed to requests resolves again, unchecked."""
    simulator.configure(target_bytes=17 * MIB)
    job = on_host(done_job(client), "files.sim.test")
    resolver = ScriptedResolver({"files.sim.test": [["127.0.0.1"], [METADATA]]})
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".sim.test"):
            return real_getaddrinfo(resolver(host, int(port))[0], port, *args, **kwargs)
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    transfer = transfer_with(s3, resolver, session_factory=requests.Session)
    connections.opened.clear()

    with pytest.raises(Exception):  # noqa: B017, PT011 - what fails is beside the point: where it connected is
        transfer.land(job, lambda: job, bucket=bucket, key="k/file")

    report("baseline: plain requests.Session, same rebinding", connections, simulator.port)
    assert connections.refused_addresses(), "the plain session should have tried the metadata address"


@pytest.mark.parametrize(
    ("label", "checked_name", "idna2003_name"),
    [
        ("faß", "xn--fa-hia.sim.test", "fass.sim.test"),
        ("σοφός", "xn--0xagbn4a.sim.test", "xn--0xahbl4a.sim.test"),
        ("\u0915\u094d\u200c\u0937", "xn--11b2ezcs70k.sim.test", "xn--11b2ezc.sim.test"),  # ZWNJ after virama
        ("\u0915\u094d\u200d\u0937", "xn--11b2ezcw70k.sim.test", "xn--11b2ezc.sim.test"),  # ZWJ after virama
    ],
)
@pytest.mark.parametrize("metadata_on", ["connected", "idna2003"])
def test_given_a_host_whose_encodings_differ_then_the_name_checked_is_the_name_connected(
    simulator: Any,
    client: OmboriGridClient,
    s3: Any,
    bucket: str,
    connections: Connections,
    label: str,
    checked_name: str,
    idna2003_name: str,
    metadata_on: str,
) -> None:
    simulator.configure(target_bytes=6 * MIB)
    job = on_host(done_job(client), f"{label}.sim.test")
    bad, good = (checked_name, idna2003_name) if metadata_on == "connected" else (idna2003_name, checked_name)
    resolver = ScriptedResolver({bad: [[METADATA]], good: [["127.0.0.1"]]})
    transfer = transfer_with(s3, resolver)
    connections.opened.clear()

    if metadata_on == "connected":
        with pytest.raises(UnsafeUrl, match="link-local or metadata"):
            transfer.land(job, lambda: job, bucket=bucket, key="k/file")
        assert connections.to_port(simulator.port) == Counter()
        assert_nothing_landed(s3, bucket)
    else:
        outcome = transfer.land(job, lambda: job, bucket=bucket, key="k/file")
        assert isinstance(outcome, Landed)
        assert set(connections.to_port(simulator.port)) == {"127.0.0.1"}
    report(f"{label!r} with the metadata address on the {metadata_on} name", connections, simulator.port)
    assert connections.refused_addresses() == []
    assert set(resolver.calls) == {checked_name}  # the IDNA 2003 spelling is never looked up


@pytest.mark.parametrize("label", ["ex\u200dample", "ex\u200cample"])
def test_given_a_joiner_the_http_client_refuses_then_nothing_is_resolved_or_opened(
    simulator: Any, client: OmboriGridClient, s3: Any, bucket: str, connections: Connections, label: str
) -> None:
    job = on_host(done_job(client), f"{label}.sim.test")
    resolver = ScriptedResolver({"example.sim.test": [["127.0.0.1"]]})
    transfer = transfer_with(s3, resolver)
    connections.opened.clear()

    with pytest.raises(UnsafeUrl, match="malformed"):
        transfer.land(job, lambda: job, bucket=bucket, key="k/file")
    with pytest.raises(requests.exceptions.InvalidURL):  # and the pinned session alone refuses it as well
        pinned_session(AddressPolicy(allow_local=True, resolver=resolver)).get(job.download_url or "")

    assert connections.to_port(simulator.port) == Counter()
    assert resolver.calls == []


# --- one session: redirects, pools, the peer check -----------------------------------------------------------


class _Redirecting(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        target = self.server.redirect_to  # type: ignore[attr-defined]
        if target and self.path.startswith("/go"):
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
        else:
            self.send_response(200)
            self.send_header("Content-Length", "2")
        self.end_headers()
        if self.path != "/go":
            self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def local_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    server.redirect_to = None  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("follow", [True, False])
def test_given_a_redirect_to_a_name_on_the_metadata_address_then_it_is_not_connected(
    local_server: ThreadingHTTPServer, connections: Connections, follow: bool
) -> None:
    port = local_server.server_address[1]
    local_server.redirect_to = f"http://meta.sim.test:{port}/latest/meta-data/"  # type: ignore[attr-defined]
    resolver = ScriptedResolver({"files.sim.test": [["127.0.0.1"]], "meta.sim.test": [[METADATA]]})
    session = pinned_session(AddressPolicy(allow_local=True, resolver=resolver))

    def follow_by_hand() -> None:
        response = session.get(f"http://files.sim.test:{port}/go", allow_redirects=follow)
        session.get(response.headers["Location"])  # what the transfer does with allow_redirects=False

    with pytest.raises(UnsafeUrl, match="link-local or metadata"):
        follow_by_hand()

    assert connections.to_port(port) == Counter({"127.0.0.1": 1})
    assert connections.refused_addresses() == []
    assert resolver.calls == ["files.sim.test", "meta.sim.test"]


def test_given_keep_alive_then_a_socket_is_reused_only_for_its_own_host(
    local_server: ThreadingHTTPServer, connections: Connections
) -> None:
    port = local_server.server_address[1]
    resolver = ScriptedResolver({"a.sim.test": [["127.0.0.1"]], "b.sim.test": [["127.0.0.1"]]})
    session = pinned_session(AddressPolicy(allow_local=True, resolver=resolver))

    bodies = [session.get(f"http://{name}.sim.test:{port}/x").content for name in ("a", "a", "b", "a", "b")]

    assert bodies == [b"ok"] * 5
    assert connections.to_port(port) == Counter({"127.0.0.1": 2})  # one socket per host, reused
    assert resolver.calls == ["a.sim.test", "b.sim.test"]


def test_given_a_socket_whose_peer_is_not_the_checked_address_then_it_is_closed_unused(
    local_server: ThreadingHTTPServer, connections: Connections, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = local_server.server_address[1]
    opened: list[socket.socket] = []

    def elsewhere(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        sock = create_connection(("127.0.0.1", address[1]), *args, **kwargs)  # what a hijacked route would do
        opened.append(sock)
        return sock

    monkeypatch.setattr("omborigrid_export.safehttp.create_connection", elsewhere)
    resolver = ScriptedResolver({"files.sim.test": [["127.0.0.2"]]})
    session = pinned_session(AddressPolicy(allow_local=True, resolver=resolver))

    with pytest.raises(UnsafeUrl, match=r"reached 127\.0\.0\.1, not the checked address 127\.0\.0\.2"):
        session.get(f"http://files.sim.test:{port}/x")

    assert len(opened) == 1
    assert opened[0].fileno() == -1  # closed before a byte of the request was written


def test_given_a_proxy_in_the_environment_then_it_is_ignored(
    local_server: ThreadingHTTPServer, connections: Connections, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = local_server.server_address[1]
    monkeypatch.setenv("HTTP_PROXY", "http://10.9.9.9:3128")
    monkeypatch.setenv("ALL_PROXY", "http://10.9.9.9:3128")
    resolver = ScriptedResolver({"files.sim.test": [["127.0.0.1"]]})
    session = pinned_session(AddressPolicy(allow_local=True, resolver=resolver))

    assert session.get(f"http://files.sim.test:{port}/x").content == b"ok"
    assert [h for h, _ in connections.opened] == ["127.0.0.1"]

    with pytest.raises(UnsafeUrl, match="proxy"):
        session.get(f"http://files.sim.test:{port}/x", proxies={"http": "http://10.9.9.9:3128"})


def test_given_http_without_allow_local_then_no_pool_is_made(connections: Connections) -> None:
    resolver = ScriptedResolver({"files.sim.test": [["127.0.0.1"]]})
    session = pinned_session(AddressPolicy(allow_local=False, resolver=resolver))

    with pytest.raises(UnsafeUrl, match="only https"):
        session.get("http://files.sim.test:9/x")

    assert connections.opened == []
    assert resolver.calls == []


def test_given_a_public_answer_then_rebinding_to_loopback_without_allow_local_then_loopback_is_never_tried(
    connections: Connections,
) -> None:
    resolver = ScriptedResolver({"files.example.com": [["93.184.216.34"], ["127.0.0.1"]]})
    session = pinned_session(AddressPolicy(allow_local=False, resolver=resolver))

    with pytest.raises(requests.ConnectionError):
        session.get("https://files.example.com/x")  # the public address is tried (and refused by the test)
    with pytest.raises(UnsafeUrl, match="not a public address"):
        session.get("https://files.example.com/x")

    assert connections.opened == [("93.184.216.34", 443)]


# --- TLS: verified against the host name, SNI set to it, while the socket goes to the checked address ----------


def _certificates(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """A throwaway CA, and a server certificate for ``name`` only (no IP address in it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, key: Any, issuer: Any, issuer_key: Any, *, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        )
        if ca:
            usage = dict.fromkeys(
                ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement", "crl_sign"), False
            )
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, encipher_only=False, decipher_only=False, **usage
                ),
                critical=True,
            )
        else:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netsec test CA")])
    ca_cert = build("netsec test CA", ca_key, ca_name, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build(name, key, ca_cert.subject, ca_key, ca=False)
    paths = (directory / "ca.pem", directory / "server.pem", directory / "server.key")
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[ThreadingHTTPServer, Path, list[str | None]]]:
    ca, cert, key = _certificates(tmp_path, "files.sim.test")
    server_names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: server_names.append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    server.redirect_to = None  # type: ignore[attr-defined]
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.handle_error = lambda _request, _address: None  # type: ignore[method-assign,assignment]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, ca, server_names
    server.shutdown()
    server.server_close()


def test_given_https_then_the_certificate_is_verified_for_the_name_and_sni_carries_it(
    tls_server: tuple[ThreadingHTTPServer, Path, list[str | None]], connections: Connections
) -> None:
    server, ca, server_names = tls_server
    port = server.server_address[1]
    resolver = ScriptedResolver({"files.sim.test": [["127.0.0.1"]], "other.sim.test": [["127.0.0.1"]]})
    session = pinned_session(AddressPolicy(allow_local=True, resolver=resolver))
    session.verify = str(ca)

    assert session.get(f"https://files.sim.test:{port}/x").content == b"ok"
    with pytest.raises(requests.exceptions.SSLError, match=r"other\.sim\.test"):
        session.get(f"https://other.sim.test:{port}/x")  # same address, a name the certificate does not hold

    assert server_names == ["files.sim.test", "other.sim.test"]
    assert connections.to_port(port) == Counter({"127.0.0.1": 2})
