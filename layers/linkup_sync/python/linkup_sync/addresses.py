"""Which Nightscout addresses a hosted account may use: sites on the public internet, over https, only.

The hosted stack takes its Nightscout addresses from strangers and runs inside AWS: an address such as
127.0.0.1:9001 (the Lambda runtime API), 169.254.169.254 (instance metadata) or 10.0.0.5 (the VPC) would
let a stranger make the worker talk to what only the stack itself may reach. So a hosted account's site
must be, and resolve to, a public address. The rule is checked three times, each time on what is known:
the spelling of the address when an account is added (`check_url`), the names it resolves to then
(`check_resolved`), and the addresses the worker actually connects to, after its own resolution
(`connectable`, used by linkup_sync.public_pool), because DNS may answer differently by then.

The personal stack and the command line's sync and doctor do not use this: their site is the person's own
and may be on a home network. `LINKUP_SYNC_ALLOW_LOOPBACK_NIGHTSCOUT=true` lets local tests use sites on
127.0.0.1 (plain http or https); hosted.yaml never sets it.

What is refused and why, for operators: docs/hosted-addresses.md.

The messages never repeat the address given (it comes from the account's JSON, where a pasted secret may
sit); an address that DNS answered is named, it is not the operator's input.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

ALLOW_LOOPBACK_ENV = "LINKUP_SYNC_ALLOW_LOOPBACK_NIGHTSCOUT"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses it resolves to, as text; raises OSError (socket.gaierror) when it does not.
Resolve = Callable[[str, int], Sequence[str]]

LOOPBACK = "a loopback address (this machine itself)"
PRIVATE = "a private network address (RFC 1918)"
LINK_LOCAL = "a link-local address (such as the cloud's instance metadata service)"
CGNAT = "a carrier-grade NAT address (100.64.0.0/10)"
UNIQUE_LOCAL = "a unique-local IPv6 address (fc00::/7, a private network)"
MULTICAST = "a multicast address"
RESERVED = "a reserved address (not on the public internet)"
UNSPECIFIED = "the unspecified address (0.0.0.0 or ::, which means this machine)"

_V4_RANGES: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), what)
    for net, what in (
        ("0.0.0.0/8", UNSPECIFIED),
        ("10.0.0.0/8", PRIVATE),
        ("100.64.0.0/10", CGNAT),
        ("127.0.0.0/8", LOOPBACK),
        ("169.254.0.0/16", LINK_LOCAL),
        ("172.16.0.0/12", PRIVATE),
        ("192.0.0.0/24", RESERVED),  # IETF protocol assignments
        ("192.0.2.0/24", RESERVED),  # documentation
        ("192.88.99.0/24", RESERVED),  # the former 6to4 relays
        ("192.168.0.0/16", PRIVATE),
        ("198.18.0.0/15", RESERVED),  # benchmarking
        ("198.51.100.0/24", RESERVED),  # documentation
        ("203.0.113.0/24", RESERVED),  # documentation
        ("224.0.0.0/4", MULTICAST),
        ("240.0.0.0/4", RESERVED),  # future use, and the broadcast address
    )
)
_V6_RANGES: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), what)
    for net, what in (
        ("::/128", UNSPECIFIED),
        ("::1/128", LOOPBACK),
        ("64:ff9b:1::/48", RESERVED),  # local-use NAT64
        ("100::/64", RESERVED),  # discard-only
        ("2001:db8::/32", RESERVED),  # documentation
        ("2001::/23", RESERVED),  # IETF protocol assignments, Teredo among them
        ("3fff::/20", RESERVED),  # documentation
        ("fc00::/7", UNIQUE_LOCAL),
        ("fe80::/10", LINK_LOCAL),
        ("fec0::/10", RESERVED),  # the former site-local addresses
        ("ff00::/8", MULTICAST),
    )
)
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
# IPv6 addresses that carry an IPv4 address the packets end up at: judged by that IPv4 address.
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
# The numbers inet_aton(3) reads in each dotted part: 0x hex, 0 octal, decimal.
_AT0N_PART = re.compile(r"^(0x[0-9a-f]*|0[0-7]*|[1-9][0-9]*)$")


class AddressRefused(ValueError):
    """A site address the hosted stack may not use; the message names the cause and the fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def loopback_allowed(env: Mapping[str, str]) -> bool:
    """LINKUP_SYNC_ALLOW_LOOPBACK_NIGHTSCOUT=true: local tests' sites on 127.0.0.1 are allowed."""
    return env.get(ALLOW_LOOPBACK_ENV, "").strip().lower() == "true"


def system_resolve(host: str, port: int) -> list[str]:
    """The addresses the system's resolver gives for a name, in its order, each once."""
    found: list[str] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        text = str(sockaddr[0])
        if text not in found:
            found.append(text)
    return found


# --- what an address is -----------------------------------------------------------------------------


def _inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address of the forms resolvers accept besides a.b.c.d: 2130706433, 0x7f000001, 0177.0.0.1,
    127.1 (the last part fills the remaining bytes). None when `text` is not one of them."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(_AT0N_PART.match(p) for p in parts):
        return None
    numbers = [int(p, 16) if p.startswith("0x") else int(p, 8) if p.startswith("0") else int(p) for p in parts]
    head, last = numbers[:-1], numbers[-1]
    if any(n > 0xFF for n in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    value = last
    for i, n in enumerate(head):
        value |= n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def literal_address(host: str) -> IPAddress | None:
    """The IP address a URL's host spells, in any spelling (brackets, zone, IPv4-mapped IPv6, decimal, hex,
    octal, short forms, a trailing dot), or None when the host is a name."""
    text = host.strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]  # an IPv6 zone (fe80::1%eth0) names an interface, not another address
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    return _inet_aton(text[:-1] if text.endswith(".") else text)


def not_public(address: IPAddress) -> str | None:
    """What keeps `address` off the public internet (LOOPBACK, PRIVATE, ...), or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return not_public(embedded)
        for network, what in _V6_RANGES:
            if address in network:
                return what
        return None if address in _GLOBAL_UNICAST else RESERVED
    for network4, what in _V4_RANGES:
        if address in network4:
            return what
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address in _MAPPED or address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return ipaddress.IPv4Address((int(address) >> 80) & 0xFFFFFFFF)
    return None


def is_loopback_name(host: str) -> bool:
    """localhost and the names under it (RFC 6761: they always mean this machine)."""
    name = host.strip().lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


# --- the rule ---------------------------------------------------------------------------------------

_FIX = (
    "a hosted account may only use a Nightscout site on the public internet. Fix: give the site's public "
    "https:// address (the one that opens on a phone away from home)"
)


@dataclass(frozen=True)
class SiteAddresses:
    """The hosted stack's rule for the addresses of Nightscout sites.

    `allow_loopback` (LINKUP_SYNC_ALLOW_LOOPBACK_NIGHTSCOUT, local tests only) admits sites on this machine,
    over http or https. `resolve` looks names up (None: `check_resolved` only checks the spelling;
    `connectable` always resolves, with the system's resolver when none is given). `exempt`: the
    (host, port) pairs `connectable` connects to unchecked.
    """

    allow_loopback: bool = False
    resolve: Resolve | None = None
    # (host, port) the rule is not for: the stack's own LibreLink Up address (LINK_UP_API_URL, the
    # operator's setting, a simulator on 127.0.0.1 in tests), which shares the worker's pool.
    exempt: frozenset[tuple[str, int]] = frozenset()

    def allows(self, address: IPAddress) -> str | None:
        """None when the stack may connect to `address`, else what it is (LOOPBACK, PRIVATE, ...)."""
        what = not_public(address)
        if what == LOOPBACK and self.allow_loopback:
            return None
        return what

    def check_url(self, url: str, *, name: str = "NIGHTSCOUT_URL") -> None:
        """Refuse, by its spelling alone, an address that is not https to a public host (AddressRefused)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        address = literal_address(host)
        loopback = is_loopback_name(host) or (address is not None and not_public(address) == LOOPBACK)
        if loopback:
            if self.allow_loopback:
                return  # the tests' simulators, over http or https
            raise AddressRefused(f"{name} is {LOOPBACK}: {_FIX}.")
        if parts.scheme.lower() != "https":
            raise AddressRefused(
                f"{name} does not start with https://: a hosted account reaches its Nightscout site only over "
                "https. Fix: give the site's https:// address."
            )
        what = None if address is None else self.allows(address)
        if what is not None:
            raise AddressRefused(f"{name} is {what}: {_FIX}.")

    def check_resolved(self, url: str, *, name: str = "NIGHTSCOUT_URL") -> None:
        """`check_url`, then every address the host name resolves to (when a resolver is given)."""
        self.check_url(url, name=name)
        parts = urlsplit(url)
        host = parts.hostname or ""
        if self.resolve is None or literal_address(host) is not None or is_loopback_name(host):
            return
        try:
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
            found = list(self.resolve(host, port))
        except (OSError, ValueError, UnicodeError):
            found = []
        if not found:
            raise AddressRefused(
                f"{name}'s host name could not be resolved (DNS gave no address for it). Fix: check the address "
                "for typos; a site that was just set up may need a few minutes until its name resolves."
            )
        try:
            self._check_all(host, found, name=f"{name}'s host name")
        except AddressRefused as exc:
            raise AddressRefused(exc.message + ".") from None

    def connectable(self, host: str, port: int, *, tls: bool) -> list[str]:
        """The addresses to connect to for `host`: resolved once, every one checked (AddressRefused if any
        is refused: a name that points inside is not a public site). Raises OSError when it does not
        resolve. Plain http (`tls` False) is only for loopback sites that allow_loopback admits."""
        address = literal_address(host)
        if (host.strip("[]").lower().rstrip("."), port) in self.exempt:
            return self._lookup(host, port) if address is None else [str(address)]
        if address is not None:
            found = [str(address)]
        elif is_loopback_name(host) and not self.allow_loopback:
            raise AddressRefused(f"the site's address names {LOOPBACK}: {_FIX}")
        else:
            found = self._lookup(host, port)
            if not found:
                raise socket.gaierror(socket.EAI_NONAME, "the name resolved to no address")
        checked = self._check_all(host, found, name="the site's address")
        if not tls and not all(not_public(a) == LOOPBACK for a in checked):
            raise AddressRefused(
                "plain http is refused: a hosted account reaches its sites only over https. Fix: give the site's "
                "https:// address"
            )
        return [str(a) for a in checked]

    def _lookup(self, host: str, port: int) -> list[str]:
        """What `resolve` (the system's resolver when none is given) answers for `host`."""
        return list((self.resolve or system_resolve)(host.strip("[]"), port))

    def _check_all(self, host: str, found: Sequence[str], *, name: str) -> list[IPAddress]:
        checked: list[IPAddress] = []
        for text in found:
            address = literal_address(text)
            if address is None:  # a resolver answered something that is no address at all
                raise AddressRefused(f"{name} resolves to something that is not an IP address: {_FIX}")
            what = self.allows(address)
            if what is not None:
                how = "is" if literal_address(host) is not None else f"resolves to {address},"
                raise AddressRefused(f"{name} {how} {what}: {_FIX}")
            checked.append(address)
        return checked
