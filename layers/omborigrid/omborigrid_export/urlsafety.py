"""Which download URLs may be followed.

A download URL comes from an API response, so it is untrusted input: without a check, a compromised or
buggy API could point the Download Lambda at the instance metadata service or a private network. Every
URL (and every redirect target) is resolved and checked before a connection is made.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from .errors import UnsafeUrl

Resolver = Callable[[str, int], list[str]]

#: Refused always, even with OMBORIGRID_ALLOW_LOCAL_URLS=1: cloud metadata and link-local addresses.
_ALWAYS_BLOCKED = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),
)


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def check_download_url(url: str, *, allow_local: bool, resolver: Resolver = system_resolver) -> None:
    """Raise :class:`UnsafeUrl` unless ``url`` may be fetched. Messages name the host, never the query."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUrl("The download URL is malformed.") from None
    host = parts.hostname
    if not host:
        raise UnsafeUrl("The download URL has no host.")
    allowed_schemes = ("https", "http") if allow_local else ("https",)
    if parts.scheme not in allowed_schemes:
        raise UnsafeUrl(
            f"The download URL for {host} uses {parts.scheme or 'no'} scheme; only https is followed "
            "(set OMBORIGRID_ALLOW_LOCAL_URLS=1 for a local simulator)."
        )
    if parts.username or parts.password:
        raise UnsafeUrl(f"The download URL for {host} carries credentials in its authority; refused.")
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolver(host, port or 443)]
        except OSError as exc:
            raise UnsafeUrl(f"The download host {host} cannot be resolved ({exc.strerror or exc}).") from None
    if not addresses:
        raise UnsafeUrl(f"The download host {host} resolves to no address.")
    for address in addresses:
        _check_address(host, address, allow_local=allow_local)


def _check_address(host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_local: bool) -> None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for network in _ALWAYS_BLOCKED:
        if address.version == network.version and address in network:
            raise UnsafeUrl(
                f"The download host {host} resolves to {address}, a link-local or metadata address; refused."
            )
    if allow_local:
        return
    if not address.is_global:
        raise UnsafeUrl(
            f"The download host {host} resolves to {address}, which is not a public address; refused "
            "(set OMBORIGRID_ALLOW_LOCAL_URLS=1 for a local simulator)."
        )
