"""Many Nightscout sites behind one loopback server: site n is http://127.0.0.1:<port>/s/<n>.

The hosted stack serves one Nightscout per account; a thousand stand-ins with a server (and a thread)
each would cost more than the runs under test. Here every site is a full NightscoutStandIn (its own
entries, tokens, faults and request log) that is never started itself: this server hands it the
requests under its prefix, with the prefix removed, exactly as a site under a sub-path would see them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from tools.simulators.nightscout.app import NightscoutStandIn, _make_handler
from tools.simulators.server import LoopbackServer

_PREFIX = re.compile(r"^/s/([0-9]+)(/.*)?$")


class NightscoutSites(LoopbackServer):
    _thread_name = "ns-sites"

    def __init__(self, clock: Callable[[], float], **site_options: Any) -> None:
        super().__init__()
        self.clock = clock
        self.site_options = site_options
        self.sites: list[NightscoutStandIn] = []

    def add_site(self) -> tuple[int, NightscoutStandIn]:
        site = NightscoutStandIn(self.clock, name=f"site{len(self.sites)}", **self.site_options)
        with self._lock:
            self.sites.append(site)
            number = len(self.sites) - 1
        # Faults that hold a request (hang_next) wait on the site's own stop event: tie it to ours.
        site._stop_event = self._stop_event
        return number, site

    def url(self, number: int) -> str:
        return f"{self.base_url}/s/{number}"

    def _pick(self, path: str) -> tuple[NightscoutStandIn, str] | None:
        match = _PREFIX.match(path)
        if match is None or int(match.group(1)) >= len(self.sites):
            return None
        return self.sites[int(match.group(1))], match.group(2) or "/"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self, self._pick)
