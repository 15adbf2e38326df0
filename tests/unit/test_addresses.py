"""Issue 21: which Nightscout addresses a hosted account may use (linkup_sync.addresses), without any network.

The address table: every range the hosted stack refuses, in every spelling a resolver accepts (decimal,
hex, octal, short forms, a trailing dot, IPv4-mapped and other IPv6 forms that end at an IPv4 address),
the eleven addresses finding 5 found accepted, public addresses that stay allowed, and host names checked
by what a (fake) resolver answers for them.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

import pytest

from linkup_sync.addresses import (
    ALLOW_LOOPBACK_ENV,
    CGNAT,
    LINK_LOCAL,
    LOOPBACK,
    MULTICAST,
    PRIVATE,
    RESERVED,
    UNIQUE_LOCAL,
    UNSPECIFIED,
    AddressRefused,
    SiteAddresses,
    literal_address,
    loopback_allowed,
    not_public,
)

# (host as written in a URL, what it is)
TABLE: list[tuple[str, str]] = [
    # loopback, in every spelling inet_aton and getaddrinfo accept
    ("127.0.0.1", LOOPBACK),
    ("127.255.255.254", LOOPBACK),
    ("127.1", LOOPBACK),
    ("127.0.1", LOOPBACK),
    ("2130706433", LOOPBACK),
    ("0x7f000001", LOOPBACK),
    ("0X7F000001", LOOPBACK),
    ("0x7f.1", LOOPBACK),
    ("0177.0.0.1", LOOPBACK),
    ("0177.0.0.01", LOOPBACK),
    ("017700000001", LOOPBACK),
    ("127.0.0.1.", LOOPBACK),
    ("[::1]", LOOPBACK),
    ("[0:0:0:0:0:0:0:1]", LOOPBACK),
    ("[::ffff:127.0.0.1]", LOOPBACK),
    ("[::ffff:7f00:1]", LOOPBACK),
    ("[64:ff9b::127.0.0.1]", LOOPBACK),  # NAT64 ends at the IPv4 address it carries
    ("[2002:7f00:1::]", LOOPBACK),  # 6to4 likewise
    # private networks (RFC 1918)
    ("10.0.0.5", PRIVATE),
    ("10.255.255.255", PRIVATE),
    ("167772165", PRIVATE),  # 10.0.0.5
    ("0xa000005", PRIVATE),
    ("012.0.0.5", PRIVATE),
    ("172.16.0.1", PRIVATE),
    ("172.31.255.254", PRIVATE),
    ("192.168.1.20", PRIVATE),
    ("192.168.1.20.", PRIVATE),
    ("[::ffff:192.168.1.20]", PRIVATE),
    ("[::ffff:a00:5]", PRIVATE),
    # link-local, the instance metadata service among them
    ("169.254.169.254", LINK_LOCAL),
    ("169.254.170.2", LINK_LOCAL),  # the container credentials endpoint
    ("2852039166", LINK_LOCAL),  # 169.254.169.254
    ("0xa9fea9fe", LINK_LOCAL),
    ("[::ffff:169.254.169.254]", LINK_LOCAL),
    ("[fe80::1]", LINK_LOCAL),
    ("[fe80::1%25eth0]", LINK_LOCAL),
    # carrier-grade NAT
    ("100.64.0.1", CGNAT),
    ("100.127.255.254", CGNAT),
    ("[::ffff:100.64.0.1]", CGNAT),
    # unique-local IPv6 (the instance metadata service's IPv6 address among them)
    ("[fd00:ec2::254]", UNIQUE_LOCAL),
    ("[fc00::1]", UNIQUE_LOCAL),
    # multicast
    ("224.0.0.1", MULTICAST),
    ("239.255.255.250", MULTICAST),
    ("[ff02::1]", MULTICAST),
    # reserved: documentation, benchmarking, future use, broadcast, IETF assignments, odd IPv6 ranges
    ("192.0.2.10", RESERVED),
    ("198.51.100.7", RESERVED),
    ("203.0.113.9", RESERVED),
    ("198.18.0.1", RESERVED),
    ("192.0.0.170", RESERVED),
    ("240.0.0.1", RESERVED),
    ("255.255.255.255", RESERVED),
    ("4294967295", RESERVED),
    ("[2001:db8::1]", RESERVED),
    ("[2001::1]", RESERVED),  # Teredo
    ("[100::1]", RESERVED),
    ("[fec0::1]", RESERVED),
    ("[::127.0.0.1]", RESERVED),  # the deprecated IPv4-compatible form
    ("[4000::1]", RESERVED),  # outside the global unicast range
    # unspecified ("this host")
    ("0.0.0.0", UNSPECIFIED),  # noqa: S104 - an address refused, not one bound to
    ("0", UNSPECIFIED),
    ("0x0", UNSPECIFIED),
    ("0.0.0.1", UNSPECIFIED),
    ("[::]", UNSPECIFIED),
    ("[::ffff:0.0.0.0]", UNSPECIFIED),
]

PUBLIC = ["8.8.8.8", "134744072", "1.1.1.1", "52.94.236.248", "[2606:4700:4700::1111]", "[::ffff:8.8.8.8]"]

# Finding 5: every one of these was accepted by `accounts add`.
FINDING_5 = [
    ("http://127.0.0.1:9001", LOOPBACK),  # the Lambda runtime API
    ("http://localhost:9001", LOOPBACK),
    ("https://127.0.0.1", LOOPBACK),
    ("https://169.254.169.254", LINK_LOCAL),
    ("https://10.0.0.5", PRIVATE),
    ("https://192.168.1.20", PRIVATE),
    ("https://172.16.0.1", PRIVATE),
    ("https://100.64.0.1", CGNAT),
    ("https://[::1]", LOOPBACK),
    ("https://0.0.0.0", UNSPECIFIED),
    ("https://2130706433", LOOPBACK),
]


class FakeResolver:
    """A DNS that answers from a table; names it does not know do not resolve."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append((host, port))
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[host]


@pytest.mark.parametrize(("host", "what"), TABLE)
def test_the_address_table(host: str, what: str) -> None:
    address = literal_address(host)
    assert address is not None, host
    assert not_public(address) == what
    with pytest.raises(AddressRefused) as refused:
        SiteAddresses().check_url(f"https://{host}:443/")
    assert what in refused.value.message and "Fix: give the site's public https:// address" in refused.value.message
    with pytest.raises(AddressRefused):  # and where the worker connects
        SiteAddresses(resolve=FakeResolver({})).connectable(host, 443, tls=True)


@pytest.mark.parametrize("host", PUBLIC)
def test_public_addresses_are_allowed(host: str) -> None:
    address = literal_address(host)
    assert address is not None and not_public(address) is None
    SiteAddresses().check_url(f"https://{host}")
    assert SiteAddresses().connectable(host, 443, tls=True) == [str(address)]


@pytest.mark.parametrize(("url", "what"), FINDING_5)
def test_the_eleven_addresses_of_finding_5_are_refused(url: str, what: str) -> None:
    with pytest.raises(AddressRefused) as refused:
        SiteAddresses().check_url(url)
    assert refused.value.message.startswith(f"NIGHTSCOUT_URL is {what}: a hosted account may only use")


@pytest.mark.parametrize("host", ["example.org", "1.2.3.4.5", "256.1.1.1", "0x100000000", "08.0.0.1", "my-site"])
def test_names_are_not_read_as_addresses(host: str) -> None:
    """What no resolver reads as a number is a name: judged by what DNS answers for it."""
    assert literal_address(host) is None


@pytest.mark.parametrize("host", ["localhost", "localhost.", "LOCALHOST", "ns.localhost", "a.b.localhost."])
def test_localhost_names_are_loopback_without_asking_dns(host: str) -> None:
    resolver = FakeResolver({})
    with pytest.raises(AddressRefused) as refused:
        SiteAddresses(resolve=resolver).check_resolved(f"https://{host}")
    assert LOOPBACK in refused.value.message
    with pytest.raises(AddressRefused):
        SiteAddresses(resolve=resolver).connectable(host, 443, tls=True)
    assert resolver.asked == []


def test_plain_http_is_refused_even_to_a_public_address() -> None:
    with pytest.raises(AddressRefused) as refused:
        SiteAddresses().check_url("http://8.8.8.8")
    assert "does not start with https://" in refused.value.message
    with pytest.raises(AddressRefused) as refused:
        SiteAddresses().connectable("8.8.8.8", 80, tls=False)
    assert "plain http is refused" in refused.value.message


def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    resolver = FakeResolver(
        {
            "ns.example.org": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
            "inside.example.org": ["93.184.215.14", "10.0.0.5"],  # one inside is enough to refuse
            "mapped.example.org": ["::ffff:169.254.169.254"],
            "junk.example.org": ["not an address"],
        }
    )
    sites = SiteAddresses(resolve=resolver)
    sites.check_resolved("https://ns.example.org")
    assert sites.connectable("ns.example.org", 443, tls=True) == [
        "93.184.215.14",
        "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
    ]
    for host, what in [("inside", PRIVATE), ("mapped", LINK_LOCAL)]:
        with pytest.raises(AddressRefused) as refused:
            sites.check_resolved(f"https://{host}.example.org/ns")
        assert "NIGHTSCOUT_URL's host name resolves to " in refused.value.message and what in refused.value.message
        assert f"{host}.example.org" not in refused.value.message  # the operator's value is never echoed
        with pytest.raises(AddressRefused):
            sites.connectable(f"{host}.example.org", 443, tls=True)
    with pytest.raises(AddressRefused, match="not an IP address"):
        sites.connectable("junk.example.org", 443, tls=True)


def test_a_name_that_does_not_resolve() -> None:
    sites = SiteAddresses(resolve=FakeResolver({}))
    with pytest.raises(AddressRefused, match="could not be resolved"):
        sites.check_resolved("https://typo.example.org")
    with pytest.raises(OSError):  # at connect time: a DNS failure like any other (the run fails, retried later)
        sites.connectable("typo.example.org", 443, tls=True)


def test_without_a_resolver_only_the_spelling_is_checked() -> None:
    SiteAddresses().check_resolved("https://inside.example.org")  # no lookup: the worker checks when it connects


def test_the_resolver_is_asked_with_the_port_of_the_url() -> None:
    resolver = FakeResolver({"ns.example.org": ["93.184.215.14"]})
    SiteAddresses(resolve=resolver).check_resolved("https://ns.example.org:8443/x")
    SiteAddresses(resolve=resolver).check_resolved("https://ns.example.org")
    assert resolver.asked == [("ns.example.org", 8443), ("ns.example.org", 443)]


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9001", "https://127.0.0.1", "http://localhost:1337", "https://[::1]"]
)
def test_the_tests_variable_allows_loopback_sites_only(url: str) -> None:
    tests = SiteAddresses(allow_loopback=True, resolve=FakeResolver({"ns.example.org": ["127.0.0.1"]}))
    tests.check_resolved(url)
    tests.check_resolved("https://ns.example.org")
    assert tests.connectable("ns.example.org", 80, tls=False) == ["127.0.0.1"]  # http to this machine only
    for other in ["https://10.0.0.5", "https://169.254.169.254", "http://8.8.8.8", "https://0.0.0.0"]:
        with pytest.raises(AddressRefused):
            tests.check_url(other)


@pytest.mark.parametrize(
    ("value", "allowed"),
    [("true", True), ("TRUE", True), (" true ", True), ("", False), ("false", False), ("1", False), ("yes", False)],
)
def test_the_variable_is_read_exactly(value: str, allowed: bool) -> None:
    assert ALLOW_LOOPBACK_ENV == "LINKUP_SYNC_ALLOW_LOOPBACK_NIGHTSCOUT"
    assert loopback_allowed({ALLOW_LOOPBACK_ENV: value}) is allowed
    assert loopback_allowed({}) is False


def test_exempt_endpoints_are_connected_to_unchecked() -> None:
    """The stack's own LibreLink Up address (a simulator on 127.0.0.1 in tests) shares the worker's pool."""
    sites = SiteAddresses(exempt=frozenset({("127.0.0.1", 8080)}))
    assert sites.connectable("127.0.0.1", 8080, tls=False) == ["127.0.0.1"]
    with pytest.raises(AddressRefused):
        sites.connectable("127.0.0.1", 8081, tls=True)  # another port of this machine is not
