"""The hosted worker's side of the address rule (linkup_sync.addresses): which stored Nightscout addresses
it refuses before a run, and which address is the stack's own LibreLink Up API, which the rule is not for."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..addresses import AddressRefused, SiteAddresses
from ..librelinkup.regions import DEFAULT_URL_TEMPLATE, REGIONS, base_url
from ..model import Credentials
from ..nightscout.url import normalize_nightscout_url
from .accounts import HOSTED_HINT

ADDRESS_HEADING = "The account's Nightscout address is not allowed in the hosted stack"


def refused_sites(creds: Credentials, addresses: SiteAddresses) -> list[str]:
    """What is wrong with each Nightscout address of `creds` by the hosted rule (its spelling): an account
    stored before the rule, or while the tests' variable was set, is refused before any request."""
    problems: list[str] = []
    for target in creds.targets:
        try:
            addresses.check_url(normalize_nightscout_url(target.nightscout_url))
        except AddressRefused as exc:
            problems.append(f"{exc.message} (then: {HOSTED_HINT})")
        except ValueError:  # not an address at all: the run's own check says so, as in the personal stack
            continue
    return problems


def linkup_endpoints(template: str) -> frozenset[tuple[str, int]]:
    """(host, port) of the stack's LibreLink Up API in every region: the operator's setting (LINK_UP_API_URL),
    the same for every account, so the rule for the accounts' sites is not applied to it."""
    found: set[tuple[str, int]] = set()
    for region in REGIONS:
        parts = urlsplit(base_url(template.strip() or DEFAULT_URL_TEMPLATE, region))
        if parts.hostname:
            found.add((parts.hostname.rstrip("."), parts.port or (443 if parts.scheme == "https" else 80)))
    return frozenset(found)
