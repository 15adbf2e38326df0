"""NightscoutSites: many stand-ins behind one loopback server, site n under /s/<n>.

The hosted tests give each account its own site there, so a site must answer exactly as a stand-in of
its own would, an unknown site must be a 404, and nothing may pass between sites (entries, tokens,
faults, request logs).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from tools.simulators.clock import VirtualClock
from tools.simulators.nightscout import NightscoutStandIn
from tools.simulators.nightscout.sites import NightscoutSites

T0 = 1_795_730_978.0
NOW_MS = int(T0 * 1000)
_NO_BODY = object()


@dataclass
class Reply:
    status: int
    content_type: str
    body: Any


def call(port: int, method: str, path: str, body: Any = _NO_BODY, headers: dict[str, str] | None = None) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        hdrs = dict(headers or {})
        data = None
        if body is not _NO_BODY:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=hdrs)
        r = conn.getresponse()
        text = r.read().decode("utf-8")
        kind = r.getheader("Content-Type") or ""
        return Reply(r.status, kind, json.loads(text) if kind.startswith("application/json") else text)
    finally:
        conn.close()


def sgv(ms: int, value: int) -> dict[str, Any]:
    return {"type": "sgv", "sgv": value, "date": ms, "device": "sites-test"}


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0)


@pytest.fixture
def sites(clock: VirtualClock) -> Iterator[NightscoutSites]:
    server = NightscoutSites(clock).start()
    yield server
    server.stop()


@pytest.fixture
def alone(clock: VirtualClock) -> Iterator[NightscoutStandIn]:
    standin = NightscoutStandIn(clock, name="site1").start()  # the name the server gives its site 1
    yield standin
    standin.stop()


def conversation(admin: str) -> list[tuple[str, str, Any, dict[str, str]]]:
    """v1 and v3 requests a bridge makes, with and without credentials, and some that must fail."""
    bearer = {"Authorization": f"Bearer {admin}"}
    secret = {"api-secret": "ignored-not-the-secret"}
    return [
        ("GET", "/api/v1/status.json", _NO_BODY, {}),
        ("GET", f"/api/v1/status.json?token={admin}", _NO_BODY, {}),
        ("POST", f"/api/v1/entries.json?token={admin}", [sgv(NOW_MS - 300_000, 120), sgv(NOW_MS, 125)], {}),
        ("POST", f"/api/v1/entries.json?token={admin}", [sgv(NOW_MS, 126)], {}),  # same instant: an upsert
        ("POST", "/api/v1/entries.json", [sgv(NOW_MS + 60_000, 99)], secret),  # wrong secret: refused
        ("GET", f"/api/v1/entries/sgv.json?count=10&token={admin}", _NO_BODY, {}),
        ("POST", f"/api/v1/treatments.json?token={admin}", [{"eventType": "Note", "notes": "hi"}], {}),
        ("GET", f"/api/v1/treatments.json?token={admin}", _NO_BODY, {}),
        ("GET", "/api/v3/status", _NO_BODY, bearer),
        ("GET", "/api/v3/entries?sort$desc=date&limit=5&fields=date,sgv", _NO_BODY, bearer),
        ("GET", "/api/v1/nothing-here", _NO_BODY, {}),
        ("GET", "/", _NO_BODY, {}),
    ]


def test_a_site_answers_every_request_as_a_stand_in_of_its_own(
    sites: NightscoutSites, alone: NightscoutStandIn
) -> None:
    sites.add_site()  # a neighbour before it: the site under test is /s/1
    number, site = sites.add_site()
    assert number == 1 and sites.url(1) == f"{sites.base_url}/s/1"
    admin = site.admin_token()
    assert admin == alone.admin_token()  # the same secret and subject give the same token
    for method, path, body, headers in conversation(admin):
        via_sites = call(sites.port, method, "/s/1" + path, body, headers)
        direct = call(alone.port, method, path, body, headers)
        assert via_sites == direct, f"{method} {path}"
    assert site.sgv_entries() == alone.sgv_entries() and len(site.sgv_entries()) == 2
    assert [r.path for r in site.requests] == [r.path for r in alone.requests]  # logged without the prefix
    assert sites.sites[0].requests == [] and sites.sites[0].entries == []


@pytest.mark.parametrize("path", ["/s/2/api/v1/status.json", "/s/", "/s/x/api/v1/entries", "/api/v1/status.json"])
def test_a_path_outside_every_site_is_a_404(sites: NightscoutSites, path: str) -> None:
    sites.add_site()
    sites.add_site()
    reply = call(sites.port, "GET", path)
    assert reply.status == 404 and f"Cannot GET {path}" in reply.body
    assert all(site.requests == [] for site in sites.sites)


def test_the_root_of_a_site_is_its_own_root(sites: NightscoutSites, alone: NightscoutStandIn) -> None:
    sites.add_site()
    assert call(sites.port, "GET", "/s/0") == call(alone.port, "GET", "/")
    assert [r.path for r in sites.sites[0].requests] == ["/"]


def test_entries_tokens_and_faults_stay_on_their_own_site(sites: NightscoutSites) -> None:
    (_, first), (_, second) = sites.add_site(), sites.add_site()
    token_1, token_2 = first.admin_token(), second.admin_token("other-bridge")
    assert call(sites.port, "POST", f"/s/0/api/v1/entries.json?token={token_1}", [sgv(NOW_MS, 101)]).status == 200
    assert call(sites.port, "POST", f"/s/1/api/v1/entries.json?token={token_2}", [sgv(NOW_MS, 202)]).status == 200
    assert [e["sgv"] for e in first.sgv_entries()] == [101] and [e["sgv"] for e in second.sgv_entries()] == [202]
    read = call(sites.port, "GET", f"/s/1/api/v1/entries/sgv.json?token={token_2}")
    assert [e["sgv"] for e in read.body] == [202]

    # a token is its own site's: the other site does not know the subject
    refused = call(sites.port, "POST", f"/s/1/api/v1/entries.json?token={token_1}", [sgv(NOW_MS + 60_000, 1)])
    assert refused.status == 401 and len(second.sgv_entries()) == 1

    # one site down: the other answers as before
    first.set_unreachable(True)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        call(sites.port, "GET", f"/s/0/api/v1/entries/sgv.json?token={token_1}")
    assert call(sites.port, "GET", f"/s/1/api/v1/entries/sgv.json?token={token_2}").status == 200
    first.set_unreachable(False)
    assert [e["sgv"] for e in call(sites.port, "GET", f"/s/0/api/v1/entries/sgv.json?token={token_1}").body] == [101]

    first.fail_next(1, status=503, path="/api/v1/entries")
    assert call(sites.port, "GET", f"/s/1/api/v1/entries/sgv.json?token={token_2}").status == 200
    assert call(sites.port, "GET", f"/s/0/api/v1/entries/sgv.json?token={token_1}").status == 503
    assert {r.path for r in second.requests} <= {"/api/v1/entries.json", "/api/v1/entries/sgv.json"}
