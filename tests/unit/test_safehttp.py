"""safehttp.py without a network: what a pinned connection resolves, refuses, and hands to the socket layer.

The unit-test guard (conftest.py) fails any real lookup or connect, and names what was attempted: a pinned
connection must only ever reach it with an address literal that was checked. The sockets actually opened are
asserted in tests/integration/test_pinned_connections.py.
"""

from __future__ import annotations

import errno
import socket

import pytest
import requests
from urllib3.exceptions import NameResolutionError

from omborigrid_export.errors import UnsafeUrl
from omborigrid_export.safehttp import (
    AddressPolicy,
    PinnedHTTPConnection,
    PinnedHTTPSConnection,
    pinned_session,
    pinned_session_factory,
)
from tests.unit.conftest import NetworkBlocked


class Resolver:
    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        return self.answers


def connection(
    host: str, resolver: Resolver, *, allow_local: bool = False, https: bool = True
) -> PinnedHTTPConnection | PinnedHTTPSConnection:
    policy = AddressPolicy(allow_local=allow_local, resolver=resolver)
    cls = PinnedHTTPSConnection if https else PinnedHTTPConnection
    return cls(host, 443 if https else 80, address_policy=policy)


def test_given_a_public_answer_then_only_that_literal_reaches_the_socket_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    looked_up: list[object] = []

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> None:
        looked_up.append(host)
        raise NetworkBlocked("unit tests must not use the network")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    resolver = Resolver("93.184.216.34")

    with pytest.raises(NetworkBlocked):
        connection("files.example.com", resolver)._new_conn()

    assert looked_up == ["93.184.216.34"]  # a numeric literal: getaddrinfo does no lookup for it
    assert resolver.calls == [("files.example.com", 443)]


@pytest.mark.parametrize(
    "answers",
    [("169.254.169.254",), ("93.184.216.34", "10.0.0.1"), ("93.184.216.34", "::ffff:a9fe:a9fe"), ("64:ff9b::7f00:1",)],
)
def test_given_any_refused_answer_then_nothing_reaches_the_socket_layer(answers: tuple[str, ...]) -> None:
    with pytest.raises(UnsafeUrl, match=r"files\.example\.com"):
        connection("files.example.com", Resolver(*answers))._new_conn()


def test_given_an_ip_literal_host_then_it_is_checked_without_resolving() -> None:
    resolver = Resolver()

    with pytest.raises(UnsafeUrl, match="link-local or metadata"):
        connection("169.254.169.254", resolver, allow_local=True)._new_conn()

    assert resolver.calls == []


def test_given_a_trailing_dot_then_the_resolver_gets_the_name_as_the_connection_would_resolve_it() -> None:
    resolver = Resolver("127.0.0.1")

    with pytest.raises(UnsafeUrl, match=r"files\.example\.com resolves to 127\.0\.0\.1"):
        connection("files.example.com.", resolver)._new_conn()

    assert resolver.calls == [("files.example.com.", 443)]


def test_given_a_failing_resolver_then_a_name_resolution_error_the_transfer_retries() -> None:
    def failing(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    pinned = PinnedHTTPSConnection("files.example.com", 443, address_policy=AddressPolicy(False, failing))

    with pytest.raises(NameResolutionError):
        pinned._new_conn()
    with pytest.raises(requests.ConnectionError):  # what the transfer's retry loops catch
        pinned_session(AddressPolicy(False, failing)).get("https://files.example.com/x")


def test_given_a_resolver_raising_a_plain_oserror_then_also_a_name_resolution_error() -> None:
    def failing(host: str, port: int) -> list[str]:
        raise OSError(errno.ENETUNREACH, "resolver unreachable")

    with pytest.raises(NameResolutionError, match="resolver unreachable"):
        PinnedHTTPSConnection("files.example.com", 443, address_policy=AddressPolicy(False, failing))._new_conn()


@pytest.mark.parametrize("answers", [(), ("not-an-address",)])
def test_given_no_answer_or_nonsense_then_refused(answers: tuple[str, ...]) -> None:
    with pytest.raises(UnsafeUrl, match=r"no address|not an address"):
        connection("files.example.com", Resolver(*answers))._new_conn()


def test_a_session_refuses_http_unless_local_urls_are_allowed() -> None:
    resolver = Resolver("93.184.216.34")

    with pytest.raises(UnsafeUrl, match="only https"):
        pinned_session(AddressPolicy(False, resolver)).get("http://files.example.com/x")

    assert resolver.calls == []


def test_a_session_ignores_the_environment_and_refuses_explicit_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://10.0.0.1:3128")
    session = pinned_session_factory(allow_local=False, resolver=Resolver("169.254.169.254"))()

    assert session.trust_env is False
    with pytest.raises(UnsafeUrl, match="link-local"):  # not sent to the proxy from the environment
        session.get("https://files.example.com/x")
    with pytest.raises(UnsafeUrl, match="proxy"):
        session.get("https://files.example.com/x", proxies={"https": "http://10.0.0.1:3128"})


def test_each_factory_call_gives_a_new_session_with_the_same_policy() -> None:
    factory = pinned_session_factory(allow_local=True, resolver=Resolver("127.0.0.1"))

    first, second = factory(), factory()

    assert first is not second
    assert isinstance(first, requests.Session)
    assert first.get_adapter("https://x").policy is second.get_adapter("http://x").policy  # type: ignore[attr-defined]
