"""Issue 21: NaN, Infinity and other non-numbers in a Nightscout answer are a Nightscout error.

Python's json module reads NaN and Infinity (and 1e999 as infinity); `int()` of them raised ValueError or
OverflowError, so a read-back holding one crashed the run as "internal". Now the answer is a typed
NightscoutRejected, which the sync service treats as a failed read-back (the existing fallback).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from tools.simulators.clock import VirtualClock
from tools.simulators.nightscout import NightscoutStandIn

from linkup_sync.errors import NightscoutRejected
from linkup_sync.http import make_pool
from linkup_sync.nightscout import NightscoutV1, NightscoutV3
from linkup_sync.nightscout.transport import json_or_none
from linkup_sync.runtime import StateJwtCache
from tests.support import nightscout
from tests.support.nightscout import SECRET, T0_S

from ._stub_server import StubServer

clock = nightscout.clock
ns = nightscout.ns
POOL = make_pool()
NOW_MS = int(T0_S * 1000)


def client(api: str, ns: NightscoutStandIn, clock: VirtualClock) -> NightscoutV1 | NightscoutV3:
    if api == "v1":
        return NightscoutV1(base_url=ns.base_url, token=SECRET, pool=POOL)
    ns.add_role("cgm-v3", ["api:entries:create", "api:entries:read", "api:entries:update"])
    return NightscoutV3(base_url=ns.base_url, token=ns.add_subject("bridge-v3", ["cgm-v3"]), clock=clock, pool=POOL)


@pytest.mark.parametrize("api", ["v1", "v3"])
@pytest.mark.parametrize("date", [float("nan"), float("inf"), float("-inf"), "soon", None, True, [1]])
def test_a_read_back_with_a_date_that_is_no_number_is_a_nightscout_error(
    ns: NightscoutStandIn, clock: VirtualClock, api: str, date: Any
) -> None:
    ns.add_entry({"type": "sgv", "sgv": 120, "date": NOW_MS - 60_000, "device": "other"})
    ns.hostile_read_back([date])
    with pytest.raises(NightscoutRejected) as caught:
        client(api, ns, clock).existing_sgv(NOW_MS - 3600_000)
    assert caught.value.message.startswith("Nightscout did not accept the request for the readings already there")
    assert caught.value.reason == "nightscout_rejected"


@pytest.mark.parametrize("api", ["v1", "v3"])
def test_the_same_site_answering_plainly_is_read(ns: NightscoutStandIn, clock: VirtualClock, api: str) -> None:
    ns.add_entry({"type": "sgv", "sgv": 120, "date": NOW_MS - 60_000, "device": "other"})
    found = client(api, ns, clock).existing_sgv(NOW_MS - 3600_000)
    assert found.instants == ((NOW_MS - 60_000) // 1000,)


@pytest.mark.parametrize("number", ["1e999", "-1e999", "NaN", "Infinity", "-Infinity"])
def test_json_or_none_refuses_what_is_not_a_finite_number(number: str) -> None:
    assert json_or_none(f'[{{"date":{number}}}]'.encode()) is None
    assert json_or_none(b'[{"date":1795730978000.0,"sgv":120}]') == [{"date": 1795730978000.0, "sgv": 120}]


def test_a_deeply_nested_answer_is_not_json() -> None:
    assert json_or_none(b"[" * 100_000 + b"]" * 100_000) is None


def test_a_1e999_date_from_a_v1_site_is_a_nightscout_error() -> None:
    with StubServer() as stub:
        stub.add(200, '[{"type":"sgv","date":1e999}]', {"Content-Type": "application/json"})
        with pytest.raises(NightscoutRejected):
            NightscoutV1(base_url=stub.url, token=SECRET, pool=POOL).existing_sgv(NOW_MS)


@pytest.mark.parametrize(
    ("exp", "expected"),
    [
        ("Infinity", None),  # not JSON: the exchange answer is not Nightscout's
        ("NaN", None),
        ("1e300", int(T0_S) + 3600),  # finite but absurd: the fallback lifetime
        (str(int(T0_S) + 400 * 24 * 3600), int(T0_S) + 3600),  # a year ahead: not believed either
        (str(int(T0_S) + 8 * 3600), int(T0_S) + 8 * 3600),  # Nightscout's own 8 hours
    ],
)
def test_a_jwt_expiry_that_is_no_plausible_time(exp: str, expected: int | None) -> None:
    with StubServer() as stub:
        stub.add(200, '{"token":"eyJ.a.b","exp":' + exp + "}", {"Content-Type": "application/json"})
        stub.add(200, json.dumps({"status": 200, "result": []}), {"Content-Type": "application/json"})
        cache = StateJwtCache(None, None)  # what the run stores for the next runs to trust
        v3 = NightscoutV3(
            base_url=stub.url, token="bridge-0123456789abcdef", clock=lambda: T0_S, pool=POOL, jwt_cache=cache
        )
        if expected is None:
            with pytest.raises(NightscoutRejected):
                v3.existing_sgv(NOW_MS)
            assert cache.get() is None
            return
        assert v3.existing_sgv(NOW_MS).instants == ()
        assert cache.get() == ("eyJ.a.b", expected)
