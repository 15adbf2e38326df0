"""Reading back which sgv entries Nightscout already holds (issue #10), v1 and v3, against the stand-in.

One request each; entries of every device count (v1 documents through v3 and back); failures are typed
NightscoutErrors so the sync service can defer the gap filling.
"""

from __future__ import annotations

from typing import Any

import pytest
from tools.simulators.clock import VirtualClock
from tools.simulators.nightscout import NightscoutStandIn

from linkup_sync.errors import NightscoutRejected, NightscoutUnauthorized, NightscoutUnreachable
from linkup_sync.http import make_pool
from linkup_sync.nightscout import NightscoutV1, NightscoutV3
from linkup_sync.nightscout.v1 import READ_COUNT
from linkup_sync.nightscout.v3 import READ_LIMIT
from linkup_sync.readings import Reading
from tests.support import nightscout
from tests.support.nightscout import SECRET, T0_S

from ._stub_server import StubServer

clock = nightscout.clock
ns = nightscout.ns
POOL = make_pool()
NOW_MS = int(T0_S * 1000)
V3_ROLE = ["api:entries:create", "api:entries:read", "api:entries:update"]


def other_bridge(ns: NightscoutStandIn, dates_ms: list[int], device: str = "nightscout-librelink-up") -> None:
    for ms in dates_ms:
        ns.add_entry({"type": "sgv", "sgv": 120, "date": ms, "device": device, "direction": "Flat"})


def v1(ns: NightscoutStandIn) -> NightscoutV1:
    return NightscoutV1(base_url=ns.base_url, token=SECRET, pool=POOL)


def v3(ns: NightscoutStandIn, clock: VirtualClock) -> NightscoutV3:
    ns.add_role("cgm-v3", V3_ROLE)
    return NightscoutV3(base_url=ns.base_url, token=ns.add_subject("bridge-v3", ["cgm-v3"]), clock=clock, pool=POOL)


def reads(ns: NightscoutStandIn) -> list[Any]:
    return [r for r in ns.requests if r.method == "GET" and "/entries" in r.path]


@pytest.mark.parametrize("api", ["v1", "v3"])
def test_read_back_returns_every_devices_sgv_entries_in_the_window(
    ns: NightscoutStandIn, clock: VirtualClock, api: str
) -> None:
    since = NOW_MS - 12 * 3600_000
    other_bridge(ns, [since - 300_000, since, since + 300_000, NOW_MS - 60_000])  # one before the window
    other_bridge(ns, [NOW_MS - 120_000], device="xDrip-LibreReceiver")
    ns.add_entry({"type": "mbg", "mbg": 100, "date": NOW_MS - 90_000, "device": "meter"})  # not an sgv
    client = v1(ns) if api == "v1" else v3(ns, clock)
    if api == "v3":
        client.upload([Reading(NOW_MS - 30_000, 130, "Flat", "current", 0)])
    ns.clear_requests()
    found = client.existing_sgv(since)
    expected = {since, since + 300_000, NOW_MS - 120_000, NOW_MS - 60_000} | (
        {NOW_MS - 30_000} if api == "v3" else set()
    )
    assert found.instants == tuple(sorted(ms // 1000 for ms in expected))
    assert found.complete_since_ms == since
    assert len(reads(ns)) == 1 and client.requests_made >= 1


def test_v1_query_is_the_spec_read_back(ns: NightscoutStandIn) -> None:
    client = v1(ns)
    client.existing_sgv(NOW_MS - 3600_000)
    (request,) = reads(ns)
    assert request.path == "/api/v1/entries/sgv.json"
    assert request.query == {"find[date][$gte]": str(NOW_MS - 3600_000), "count": str(READ_COUNT)}
    assert request.headers["accept"] == "application/json"


def test_v3_query_is_a_search_within_the_limit(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    client = v3(ns, clock)
    client.existing_sgv(NOW_MS - 3600_000)
    request = reads(ns)[-1]
    assert request.path == "/api/v3/entries"
    assert request.query["date$gte"] == str(NOW_MS - 3600_000) and request.query["type$eq"] == "sgv"
    assert request.query["limit"] == str(READ_LIMIT) and request.query["sort$desc"] == "date"


@pytest.mark.parametrize("api", ["v1", "v3"])
def test_a_full_page_is_complete_only_from_its_oldest_entry(
    ns: NightscoutStandIn, clock: VirtualClock, api: str
) -> None:
    limit = READ_COUNT if api == "v1" else READ_LIMIT
    dates = [NOW_MS - i * 30_000 for i in range(limit + 20)]  # more entries than one page holds
    other_bridge(ns, dates)
    client = v1(ns) if api == "v1" else v3(ns, clock)
    found = client.existing_sgv(NOW_MS - 13 * 3600_000)
    assert len(found.instants) == limit
    assert found.complete_since_ms == dates[limit - 1]  # the oldest returned: older ones may be missing


def test_v3_read_without_read_permission_names_the_role(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    ns.add_role("writer", ["api:entries:create"])
    client = NightscoutV3(base_url=ns.base_url, token=ns.add_subject("writer", ["writer"]), clock=clock, pool=POOL)
    with pytest.raises(NightscoutRejected) as err:
        client.existing_sgv(NOW_MS - 3600_000)
    assert "api:entries:read" in err.value.message


def test_v1_read_with_a_wrong_secret_is_unauthorized(ns: NightscoutStandIn) -> None:
    client = NightscoutV1(base_url=ns.base_url, token="wrong-secret-0000", pool=POOL)
    with pytest.raises(NightscoutUnauthorized):
        client.existing_sgv(NOW_MS - 3600_000)


@pytest.mark.parametrize(
    ("status", "body", "ctype", "error"),
    [
        (200, "2026-11-26T21:59:38.000Z\t1795730378000\t120", "text/plain", NightscoutRejected),  # TSV
        (200, "<html>login</html>", "text/html", NightscoutRejected),
        (500, "oops", "text/plain", NightscoutUnreachable),
        (404, "Cannot GET", "text/html", NightscoutRejected),
    ],
)
def test_v1_read_failures_are_typed(status: int, body: str, ctype: str, error: type[Exception]) -> None:
    with StubServer() as stub:
        stub.add(status, body, {"Content-Type": ctype})
        with pytest.raises(error):
            NightscoutV1(base_url=stub.url, token=SECRET, pool=POOL).existing_sgv(NOW_MS)


def test_v1_read_of_an_unreachable_site_is_unreachable(ns: NightscoutStandIn) -> None:
    ns.set_unreachable(True)
    with pytest.raises(NightscoutUnreachable):
        v1(ns).existing_sgv(NOW_MS)
