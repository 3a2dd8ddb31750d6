"""urlsafety.py: which download URLs may be followed. Every host is resolved through a fake resolver."""

from __future__ import annotations

import errno
import ipaddress

import pytest
import requests
import urllib3

from omborigrid_export.errors import UnsafeUrl
from omborigrid_export.urlsafety import check_address, check_download_url, connection_host, embedded_ipv4

QUERY = "X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=deadbeef0123456789"
PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"


class FakeResolver:
    """Answers from a table and records what was asked; unknown names fail like getaddrinfo does."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.table:
            raise OSError(errno.ENOENT, "Name or service not known")
        return self.table[host]


def resolver_for(*addresses: str) -> FakeResolver:
    return FakeResolver({"exports.example.com": list(addresses)})


def test_given_https_public_host_when_checked_then_allowed_and_resolved_on_443() -> None:
    resolver = resolver_for(PUBLIC_V4, PUBLIC_V6)

    check_download_url(f"https://exports.example.com/a/b.parquet?{QUERY}", allow_local=False, resolver=resolver)

    assert resolver.calls == [("exports.example.com", 443)]


def test_given_explicit_port_when_checked_then_resolved_on_that_port() -> None:
    resolver = resolver_for(PUBLIC_V4)
    check_download_url("https://exports.example.com:8443/f", allow_local=False, resolver=resolver)
    assert resolver.calls == [("exports.example.com", 8443)]


def test_given_public_ip_literal_when_checked_then_allowed_without_resolving() -> None:
    resolver = FakeResolver({})
    check_download_url(f"https://{PUBLIC_V4}/f", allow_local=False, resolver=resolver)
    check_download_url(f"https://[{PUBLIC_V6}]/f", allow_local=False, resolver=resolver)
    assert resolver.calls == []


def test_given_http_url_when_not_allow_local_then_refused() -> None:
    with pytest.raises(UnsafeUrl, match="only https"):
        check_download_url("http://exports.example.com/f", allow_local=False, resolver=resolver_for(PUBLIC_V4))


def test_given_http_url_when_allow_local_then_allowed() -> None:
    check_download_url("http://exports.example.com/f", allow_local=True, resolver=resolver_for(PUBLIC_V4))


@pytest.mark.parametrize("url", ["ftp://exports.example.com/f", "file://exports.example.com/etc/passwd"])
@pytest.mark.parametrize("allow_local", [False, True])
def test_given_other_scheme_when_checked_then_refused(url: str, allow_local: bool) -> None:
    with pytest.raises(UnsafeUrl, match="scheme"):
        check_download_url(url, allow_local=allow_local, resolver=resolver_for(PUBLIC_V4))


@pytest.mark.parametrize("url", ["https:///path", "https://", "/relative/path", "", "https://:443/x"])
def test_given_url_without_host_when_checked_then_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl, match="no host"):
        check_download_url(url, allow_local=True, resolver=FakeResolver({}))


@pytest.mark.parametrize("url", ["https://exports.example.com:99999/f", "https://[::1/f", "https://h:port/f"])
def test_given_malformed_url_when_checked_then_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl, match="malformed"):
        check_download_url(url, allow_local=True, resolver=resolver_for(PUBLIC_V4))


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.8.9.10", "10.0.0.5", "172.16.0.1", "192.168.1.1", "100.64.0.1", "::1", "fc00::1"],
)
def test_given_private_or_loopback_address_when_not_allow_local_then_refused(address: str) -> None:
    with pytest.raises(UnsafeUrl, match="not a public address"):
        check_download_url("https://exports.example.com/f", allow_local=False, resolver=resolver_for(address))


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "10.1.2.3"])
def test_given_private_literal_when_not_allow_local_then_refused(host: str) -> None:
    with pytest.raises(UnsafeUrl, match="not a public address"):
        check_download_url(f"https://{host}/f", allow_local=False, resolver=FakeResolver({}))


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.0.0.5", "192.168.1.1"])
def test_given_private_or_loopback_address_when_allow_local_then_allowed(address: str) -> None:
    check_download_url("http://exports.example.com/f", allow_local=True, resolver=resolver_for(address))


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "169.254.170.2",
        "169.254.0.1",
        "[fe80::1]",
        "[fe80::1%25eth0]",
        "[febf::1]",
        "[fd00:ec2::254]",
        "[::ffff:169.254.169.254]",
        "[::ffff:a9fe:a9fe]",
    ],
)
@pytest.mark.parametrize("allow_local", [False, True])
def test_given_metadata_or_link_local_literal_when_checked_then_refused_even_with_allow_local(
    host: str, allow_local: bool
) -> None:
    with pytest.raises(UnsafeUrl, match="link-local or metadata"):
        check_download_url(f"https://{host}/latest/meta-data/", allow_local=allow_local, resolver=FakeResolver({}))


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "fe80::1", "fe80::1%eth0", "fd00:ec2::254", "::ffff:169.254.169.254"]
)
@pytest.mark.parametrize("allow_local", [False, True])
def test_given_hostname_resolving_to_metadata_when_checked_then_refused(address: str, allow_local: bool) -> None:
    with pytest.raises(UnsafeUrl, match="link-local or metadata"):
        check_download_url(
            "https://exports.example.com/f", allow_local=allow_local, resolver=resolver_for(PUBLIC_V4, address)
        )


def test_given_hostname_resolving_to_public_and_private_when_checked_then_refused() -> None:
    # One bad address among good ones is enough: the connection could land on any of them.
    with pytest.raises(UnsafeUrl, match=r"10\.0\.0\.7"):
        check_download_url(
            "https://exports.example.com/f", allow_local=False, resolver=resolver_for(PUBLIC_V4, PUBLIC_V6, "10.0.0.7")
        )


def test_given_ipv4_mapped_private_address_when_not_allow_local_then_refused() -> None:
    with pytest.raises(UnsafeUrl, match="not a public address"):
        check_download_url("https://exports.example.com/f", allow_local=False, resolver=resolver_for("::ffff:10.0.0.1"))


def test_given_hostname_resolving_to_nothing_when_checked_then_refused() -> None:
    with pytest.raises(UnsafeUrl, match="resolves to no address"):
        check_download_url("https://exports.example.com/f", allow_local=False, resolver=resolver_for())


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pass@exports.example.com/f",
        "https://user@exports.example.com/f",
        "https://:secret@exports.example.com/f",
    ],
)
@pytest.mark.parametrize("allow_local", [False, True])
def test_given_credentials_in_url_when_checked_then_refused(url: str, allow_local: bool) -> None:
    resolver = resolver_for(PUBLIC_V4)
    with pytest.raises(UnsafeUrl, match="credentials") as caught:
        check_download_url(url, allow_local=allow_local, resolver=resolver)
    assert "pass" not in str(caught.value)
    assert "secret" not in str(caught.value)
    assert resolver.calls == []


def test_given_resolver_oserror_when_checked_then_unsafe_url_naming_host() -> None:
    with pytest.raises(UnsafeUrl, match="cannot be resolved") as caught:
        check_download_url("https://unknown.example.net/f", allow_local=False, resolver=FakeResolver({}))
    assert "unknown.example.net" in str(caught.value)
    assert "Name or service not known" in str(caught.value)


def test_given_resolver_oserror_without_strerror_when_checked_then_unsafe_url() -> None:
    def broken(host: str, port: int) -> list[str]:
        raise OSError("resolver down")

    with pytest.raises(UnsafeUrl, match="resolver down"):
        check_download_url("https://exports.example.com/f", allow_local=False, resolver=broken)


@pytest.mark.parametrize(
    ("url", "allow_local", "resolver"),
    [
        (f"http://exports.example.com/f?{QUERY}", False, resolver_for(PUBLIC_V4)),
        (f"ftp://exports.example.com/f?{QUERY}", True, resolver_for(PUBLIC_V4)),
        (f"https://u:p@exports.example.com/f?{QUERY}", False, resolver_for(PUBLIC_V4)),
        (f"https://exports.example.com/f?{QUERY}", False, resolver_for("10.0.0.1")),
        (f"https://exports.example.com/f?{QUERY}", True, resolver_for("169.254.169.254")),
        (f"https://exports.example.com/f?{QUERY}", False, resolver_for()),
        (f"https://unknown.example.net/f?{QUERY}", False, FakeResolver({})),
        (f"https://169.254.169.254/f?{QUERY}", True, FakeResolver({})),
        (f"https://exports.example.com:99999/f?{QUERY}", False, resolver_for(PUBLIC_V4)),
        (f"https:///f?{QUERY}", False, resolver_for(PUBLIC_V4)),
    ],
)
def test_given_refused_url_when_message_built_then_query_string_is_never_in_it(
    url: str, allow_local: bool, resolver: FakeResolver
) -> None:
    with pytest.raises(UnsafeUrl) as caught:
        check_download_url(url, allow_local=allow_local, resolver=resolver)
    message = str(caught.value)
    assert "X-Amz-Signature" not in message
    assert "deadbeef" not in message
    assert "AKIAEXAMPLE" not in message


def test_given_no_resolver_when_a_host_name_is_checked_then_nothing_is_resolved() -> None:
    # Names are resolved by the connection (safehttp) only; the unit-test guard (conftest.py) would fail any lookup.
    check_download_url("https://exports.example.com/f", allow_local=False)


def test_given_no_resolver_when_an_ip_literal_is_checked_then_it_is_still_judged() -> None:
    with pytest.raises(UnsafeUrl, match="link-local or metadata"):
        check_download_url("https://[::ffff:169.254.169.254]/f", allow_local=True)


# --- addresses that embed an IPv4 address, and addresses that are never a host -------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "::a9fe:a9fe",  # IPv4-compatible
        "::169.254.169.254",
        "::ffff:a9fe:a9fe",  # IPv4-mapped
        "::ffff:0:a9fe:a9fe",  # IPv4-translated
        "::ffff:0:169.254.170.2",
        "64:ff9b::a9fe:a9fe",  # NAT64 well-known prefix
        "64:ff9b::169.254.169.254",
        "2002:a9fe:a9fe::1",  # 6to4
        "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo, client 169.254.169.254 (obfuscated)
    ],
)
@pytest.mark.parametrize("allow_local", [False, True])
def test_given_ipv6_form_of_the_metadata_address_then_refused_by_its_ipv4(address: str, allow_local: bool) -> None:
    with pytest.raises(UnsafeUrl, match="link-local or metadata"):
        check_address("h", ipaddress.ip_address(address), allow_local=allow_local)


@pytest.mark.parametrize(
    "address", ["::7f00:1", "::ffff:0:7f00:1", "64:ff9b::7f00:1", "64:ff9b::a00:1", "2002:7f00:1::", "2002:c0a8:101::1"]
)
def test_given_ipv6_form_of_a_private_address_when_not_allow_local_then_refused(address: str) -> None:
    with pytest.raises(UnsafeUrl, match="not a public address"):
        check_address("h", ipaddress.ip_address(address), allow_local=False)


@pytest.mark.parametrize("address", ["64:ff9b::5db8:d822", "2002:5db8:d822::1", "::ffff:93.184.216.34"])
def test_given_ipv6_form_of_a_public_address_then_allowed(address: str) -> None:
    check_address("h", ipaddress.ip_address(address), allow_local=False)


@pytest.mark.parametrize(
    "address",
    [
        *("0.0.0.0", "0.1.2.3", "::", "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1"),
        *("ff02::1", "ff0e::1", "fec0::1", "feff::1", "64:ff9b:1::a9fe:a9fe", "64:ff9b:1:ffff::1"),
        *("::ffff:0.0.0.0", "::ffff:224.0.0.1"),
    ],
)
@pytest.mark.parametrize("allow_local", [False, True])
def test_given_unspecified_multicast_or_site_local_address_then_refused_even_with_allow_local(
    address: str, allow_local: bool
) -> None:
    with pytest.raises(UnsafeUrl, match="unspecified, multicast or reserved"):
        check_address("h", ipaddress.ip_address(address), allow_local=allow_local)


def test_given_loopback_v6_when_allow_local_then_allowed_and_not_read_as_an_ipv4() -> None:
    check_address("h", ipaddress.ip_address("::1"), allow_local=True)
    with pytest.raises(UnsafeUrl, match="not a public address"):
        check_address("h", ipaddress.ip_address("::1"), allow_local=False)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("::a9fe:a9fe", ["169.254.169.254"]),
        ("::ffff:a9fe:a9fe", ["169.254.169.254"]),
        ("::ffff:0:a9fe:a9fe", ["169.254.169.254"]),
        ("64:ff9b::a9fe:a9fe", ["169.254.169.254"]),
        ("2002:a9fe:a9fe::1", ["169.254.169.254"]),
        ("2001:0:4136:e378:8000:63bf:5601:5601", ["65.54.227.120", "169.254.169.254"]),
        ("::1", []),
        ("2606:2800:220:1:248:1893:25c8:1946", []),
        ("93.184.216.34", []),
    ],
)
def test_embedded_ipv4_names_the_address_each_form_leads_to(address: str, expected: list[str]) -> None:
    assert [str(a) for a in embedded_ipv4(ipaddress.ip_address(address))] == expected


def test_given_resolver_answer_that_is_not_an_address_then_refused() -> None:
    with pytest.raises(UnsafeUrl, match="not an address"):
        check_download_url("https://exports.example.com/f", allow_local=True, resolver=resolver_for("localhost"))


# --- the host is read as the HTTP client reads it ------------------------------------------------------------


def prepared_host(url: str) -> str:
    """The host requests puts into the request it sends (what the connection pool is keyed on)."""
    return urllib3.util.parse_url(requests.Request("GET", url).prepare().url or "").host or ""


@pytest.mark.parametrize("label", ["faß", "σοφός", "ΣΟΦΌΣ", "straße"])
def test_given_a_label_that_idna_2003_maps_differently_then_the_check_reads_it_as_the_http_client(label: str) -> None:
    url = f"https://{label}.example/f?{QUERY}"

    host = connection_host(url)[1]

    assert host == prepared_host(url)
    assert host.startswith("xn--")
    assert host != f"{label}.example".encode("idna").decode()  # Python's codec: another name, another answer


@pytest.mark.parametrize(
    ("url", "host"), [("https://EXPORTS.Example.COM:8443/f?q", "exports.example.com"), ("https://[::1]:8443/f", "::1")]
)
def test_given_mixed_case_or_bracketed_host_then_it_is_read_plain(url: str, host: str) -> None:
    assert connection_host(url) == ("https", host, 8443)


@pytest.mark.parametrize("url", ["https://ex\u200dample.com/f", "https://ex\u200cample.com/f"])
def test_given_joiner_in_host_that_the_http_client_refuses_then_the_check_refuses_it_too(url: str) -> None:
    with pytest.raises(requests.exceptions.InvalidURL):
        requests.Request("GET", url).prepare()
    with pytest.raises(UnsafeUrl, match="malformed"):
        check_download_url(url, allow_local=True)
