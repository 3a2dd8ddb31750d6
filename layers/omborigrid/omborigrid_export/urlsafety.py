"""Which download URLs may be followed, and which addresses may be connected to.

A download URL comes from an API response, so it is untrusted input: without a check, a compromised or
buggy API could point the Download Lambda at the instance metadata service or a private network. Two
checks live here:

- :func:`check_download_url` looks at the URL itself (scheme, credentials, an IP-literal host). It reads the
  host the way the HTTP client does (``urllib3.util.parse_url``: IDNA 2008 / UTS-46 labels, never Python's
  IDNA 2003 codec, which maps ``faß`` to ``fass`` while the client connects to ``xn--fa-hia``).
- :func:`check_address` decides whether one resolved address may be connected to. ``safehttp`` calls it for
  every address it resolves and for the peer of every socket it opens, so the address checked is the
  address connected to; resolving here as well would only be a second, unrelated answer.

IPv6 forms that carry an IPv4 address (mapped, compatible, translated, NAT64, 6to4, Teredo) are judged by
the IPv4 address they lead to: ``::a9fe:a9fe`` is the metadata service, whatever its spelling.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from .errors import UnsafeUrl

Resolver = Callable[[str, int], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Refused always, even with OMBORIGRID_ALLOW_LOCAL_URLS=1: cloud metadata and link-local addresses.
_ALWAYS_BLOCKED = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),
)

#: Refused always: no download host lives here (unspecified, "this network", multicast, broadcast and
#: reserved, IPv6 site-local, the local-use NAT64 prefix whose embedded IPv4 position is not fixed).
_NEVER_A_HOST = (
    ipaddress.ip_network("0.0.0.0/8"),
    ipaddress.ip_network("224.0.0.0/4"),
    ipaddress.ip_network("240.0.0.0/4"),
    ipaddress.ip_network("::/128"),
    ipaddress.ip_network("ff00::/8"),
    ipaddress.ip_network("fec0::/10"),
    ipaddress.ip_network("64:ff9b:1::/48"),
)

_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOOPBACK_V6 = ipaddress.ip_address("::1")


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def connection_host(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of ``url`` as the HTTP client normalises it; :class:`UnsafeUrl` if it cannot."""
    try:
        parts = parse_url(url)
        port = parts.port
    except (LocationParseError, ValueError):
        raise UnsafeUrl("The download URL is malformed.") from None
    scheme = (parts.scheme or "").lower()
    host = parts.host or ""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return scheme, host, port or (443 if scheme == "https" else 80)


def check_download_url(url: str, *, allow_local: bool, resolver: Resolver | None = None) -> None:
    """Raise :class:`UnsafeUrl` unless ``url`` may be fetched. Messages name the host, never the query.

    Without ``resolver`` nothing is resolved: a host name is checked when the connection resolves it
    (``safehttp``). With one, every address it returns is checked too (a pre-check for callers that
    connect through a plain session).
    """
    scheme, host, port = connection_host(url)
    if not host:
        raise UnsafeUrl("The download URL has no host.")
    allowed_schemes = ("https", "http") if allow_local else ("https",)
    if scheme not in allowed_schemes:
        raise UnsafeUrl(
            f"The download URL for {host} uses {scheme or 'no'} scheme; only https is followed "
            "(set OMBORIGRID_ALLOW_LOCAL_URLS=1 for a local simulator)."
        )
    if parse_url(url).auth is not None:
        raise UnsafeUrl(f"The download URL for {host} carries credentials in its authority; refused.")
    literal = ip_literal(host)
    if literal is not None:
        check_address(host, literal, allow_local=allow_local)
        return
    if resolver is not None:
        check_addresses(host, resolve(host, port, resolver), allow_local=allow_local)


def ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def resolve(host: str, port: int, resolver: Resolver) -> list[IPAddress]:
    """The addresses ``resolver`` gives for ``host``; :class:`UnsafeUrl` if it fails or answers nonsense."""
    try:
        answers = resolver(host, port)
    except OSError as exc:
        raise UnsafeUrl(f"The download host {host} cannot be resolved ({exc.strerror or exc}).") from None
    return parse_answers(host, answers)


def parse_answers(host: str, answers: list[str]) -> list[IPAddress]:
    """A resolver's answers as addresses; :class:`UnsafeUrl` for none, or for one that is not an address."""
    addresses: list[IPAddress] = []
    for answer in answers:
        address = ip_literal(str(answer))
        if address is None:
            raise UnsafeUrl(f"The resolver answered {host} with something that is not an address; refused.")
        addresses.append(address)
    if not addresses:
        raise UnsafeUrl(f"The download host {host} resolves to no address.")
    return addresses


def check_addresses(host: str, addresses: list[IPAddress], *, allow_local: bool) -> None:
    """Every address must pass: the connection could land on any of them."""
    for address in addresses:
        check_address(host, address, allow_local=allow_local)


def check_address(host: str, address: IPAddress, *, allow_local: bool) -> None:
    """Raise :class:`UnsafeUrl` unless ``address`` (an answer for ``host``) may be connected to."""
    if _in_any(address, _ALWAYS_BLOCKED):
        raise UnsafeUrl(f"The download host {host} resolves to {address}, a link-local or metadata address; refused.")
    if _in_any(address, _NEVER_A_HOST):
        raise UnsafeUrl(
            f"The download host {host} resolves to {address}, an unspecified, multicast or reserved address; refused."
        )
    embedded = embedded_ipv4(address)
    if embedded:
        for inner in embedded:
            check_address(f"{host} (via {address})", inner, allow_local=allow_local)
        return
    if allow_local:
        return
    if not address.is_global:
        raise UnsafeUrl(
            f"The download host {host} resolves to {address}, which is not a public address; refused "
            "(set OMBORIGRID_ALLOW_LOCAL_URLS=1 for a local simulator)."
        )


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to (empty for a plain IPv6 or an IPv4 address)."""
    if not isinstance(address, ipaddress.IPv6Address) or address == _LOOPBACK_V6:
        return []
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address in _IPV4_COMPATIBLE or address in _IPV4_TRANSLATED or address in _NAT64:
        return [low32]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        server, client = address.teredo
        return [server, client]
    return []


def _in_any(address: IPAddress, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    return any(address.version == network.version and address in network for network in networks)
