"""HTTP sessions whose every connection goes to an address that was checked, for the host it was checked for.

Checking a URL and then handing it to an HTTP client leaves two gaps: the client resolves the host again
(DNS rebinding: the second answer can be 169.254.169.254), and it may spell the host differently from the
check (IDNA variants). Here the check moves into the connection itself: urllib3 asks this module for a
socket, and this module resolves the very host string the connection carries (already normalised by
requests/urllib3, the only normalisation there is), through one injectable resolver, checks every address
with ``urlsafety.check_address``, connects to a checked address, and checks the socket's peer again. TLS is
still verified against the host name, with SNI set to it, by urllib3 as usual; only the socket is ours.

Every new socket passes through here: each part, each resume, each redirect target, each refreshed URL.
Pools are per host (urllib3's pool key), so a kept-alive socket is reused only for the host it was opened
for, and it stays connected to the address that was checked. Proxies are refused: a proxy resolves the
host itself, which is exactly what this module exists to prevent.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import create_connection

from .errors import UnsafeUrl
from .urlsafety import IPAddress, Resolver, check_address, check_addresses, ip_literal, parse_answers, system_resolver


@dataclass(frozen=True)
class AddressPolicy:
    """Where connections may go: ``allow_local`` as in ``urlsafety``, names resolved by ``resolver`` only."""

    allow_local: bool
    resolver: Resolver = system_resolver

    def checked_addresses(self, connection: HTTPConnection) -> list[IPAddress]:
        """Resolve the connection's own host and check every answer (any refused answer refuses the host)."""
        name = connection._dns_host  # the exact string urllib3 would have resolved (trailing dot kept)
        host = connection.host
        literal = ip_literal(name)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                answers = self.resolver(name, connection.port)
            except OSError as exc:
                error = exc if isinstance(exc, socket.gaierror) else socket.gaierror(str(exc))
                raise NameResolutionError(host, connection, error) from exc
            addresses = parse_answers(host, answers)
        check_addresses(host, addresses, allow_local=self.allow_local)
        return addresses

    def open_socket(self, connection: HTTPConnection) -> socket.socket:
        """A socket connected to a checked address of ``connection.host``, its peer checked once more."""
        addresses = self.checked_addresses(connection)
        failure: OSError | None = None
        for address in addresses:
            try:
                sock = create_connection(
                    (str(address), connection.port),
                    connection.timeout,
                    source_address=connection.source_address,
                    socket_options=connection.socket_options,
                )
            except TimeoutError as exc:
                raise ConnectTimeoutError(
                    connection, f"Connection to {connection.host} timed out. (connect timeout={connection.timeout})"
                ) from exc
            except OSError as exc:
                failure = exc
                continue
            self._check_peer(sock, connection.host, address)
            return sock
        raise NewConnectionError(connection, f"Failed to establish a new connection: {failure}")

    def _check_peer(self, sock: socket.socket, host: str, address: IPAddress) -> None:
        try:
            peer = ip_literal(str(sock.getpeername()[0]))
            if peer != address:
                raise UnsafeUrl(f"The connection to {host} reached {peer}, not the checked address {address}; refused.")
            check_address(host, peer, allow_local=self.allow_local)
        except BaseException:
            sock.close()
            raise


class PinnedHTTPConnection(HTTPConnection):
    def __init__(self, *args: Any, address_policy: AddressPolicy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.address_policy = address_policy

    def _new_conn(self) -> socket.socket:
        return self.address_policy.open_socket(self)


class PinnedHTTPSConnection(HTTPSConnection):
    def __init__(self, *args: Any, address_policy: AddressPolicy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.address_policy = address_policy

    def _new_conn(self) -> socket.socket:
        return self.address_policy.open_socket(self)


class PinnedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = PinnedHTTPConnection


class PinnedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = PinnedHTTPSConnection


class PinnedPoolManager(PoolManager):
    """A pool manager whose pools open only pinned connections, and only for the schemes the policy allows."""

    def __init__(self, policy: AddressPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = policy
        self.pool_classes_by_scheme = {"https": PinnedHTTPSConnectionPool}
        if policy.allow_local:
            self.pool_classes_by_scheme["http"] = PinnedHTTPConnectionPool

    def _new_pool(
        self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None
    ) -> HTTPConnectionPool:
        if scheme not in self.pool_classes_by_scheme:
            raise UnsafeUrl(f"The download URL for {host} uses the {scheme} scheme; only https is followed.")
        context = dict(self.connection_pool_kw if request_context is None else request_context)
        context["address_policy"] = self.policy
        return super()._new_pool(scheme, host, port, context)


class PinnedAdapter(HTTPAdapter):
    """A requests transport adapter that connects only through :class:`AddressPolicy`."""

    def __init__(self, policy: AddressPolicy, **kwargs: Any) -> None:
        self.policy = policy  # set first: HTTPAdapter.__init__ builds the pool manager
        super().__init__(**kwargs)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = DEFAULT_POOLBLOCK, **pool_kwargs: Any
    ) -> None:
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = PinnedPoolManager(
            self.policy, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
        )

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:  # noqa: ARG002 - refused whatever it is
        raise UnsafeUrl(
            "A proxy is configured for the download; a proxy would resolve the host itself, so it is refused."
        )


def pinned_session(policy: AddressPolicy, *, ca_bundle: str | None = None) -> requests.Session:
    """A session that connects only to checked addresses and ignores proxy and netrc settings of the environment.

    TLS is verified against the system's trusted CAs, or only those of ``ca_bundle`` (a file) when given: the
    environment's REQUESTS_CA_BUNDLE is not read, as nothing of the environment is.
    """
    session = requests.Session()
    session.trust_env = False
    if ca_bundle is not None:
        session.verify = ca_bundle
    session.proxies.clear()
    adapter = PinnedAdapter(policy)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def pinned_session_factory(
    *, allow_local: bool, resolver: Resolver = system_resolver, ca_bundle: str | None = None
) -> Callable[[], requests.Session]:
    """What ``Transfer(session_factory=...)`` takes: a new pinned session per call, all sharing one policy."""
    policy = AddressPolicy(allow_local=allow_local, resolver=resolver)
    return lambda: pinned_session(policy, ca_bundle=ca_bundle)
