"""Nightscout API v3 uploader (against the Nightscout stand-in on loopback), and partial uploads."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import urllib3
from tools.simulators.clock import VirtualClock
from tools.simulators.nightscout import NightscoutStandIn, v3_identifier

from linkup_sync.errors import (
    NightscoutError,
    NightscoutPartialUpload,
    NightscoutRejected,
    NightscoutUnauthorized,
    NightscoutUnreachable,
)
from linkup_sync.http import Deadline
from linkup_sync.nightscout import NightscoutV1, NightscoutV3, is_access_token
from linkup_sync.nightscout.v3_access import JWT_RENEW_MARGIN_S
from linkup_sync.readings import Reading
from tests.support import nightscout
from tests.support.nightscout import SECRET, T0_S

from ._stub_server import StubServer

T0 = 1_795_730_378_000  # first reading, 2026-11-26T21:59:38.000Z
JWT_PATH = "/api/v2/authorization/request/"
V3_ROLE = ["api:entries:create", "api:entries:read", "api:entries:update"]


class DictCache:
    """A JwtCache kept in a dict (the lead's keeps it in DynamoDB)."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[str, int]] = {}
        self.puts = 0

    def get(self) -> tuple[str, int] | None:
        return self.data.get("jwt")

    def put(self, jwt: str, exp: int) -> None:
        self.puts += 1
        self.data["jwt"] = (jwt, exp)


class Pool(urllib3.PoolManager):
    """A PoolManager that can run a hook before the n-th request and measures requests in flight."""

    def __init__(self, before: Callable[[int, str, str], None] | None = None, delay: float = 0.0) -> None:
        super().__init__(num_pools=2, maxsize=8, retries=False)
        self.before = before
        self.delay = delay
        self.sent = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any) -> Any:  # type: ignore[override]
        with self._lock:
            self.sent += 1
            n = self.sent
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.before is not None:
                self.before(n, method, url)
            if self.delay:
                time.sleep(self.delay)
            return super().urlopen(method, url, redirect=redirect, **kw)
        finally:
            with self._lock:
                self.in_flight -= 1


clock = nightscout.clock
ns = nightscout.ns


def v3_token(ns: NightscoutStandIn, name: str = "bridge-v3") -> str:
    ns.add_role("cgm-v3", V3_ROLE)
    return ns.add_subject(name, ["cgm-v3"])


def client(ns: NightscoutStandIn, token: str, clock: VirtualClock, **kw: Any) -> NightscoutV3:
    kw.setdefault("pool", Pool())
    return NightscoutV3(base_url=ns.base_url, token=token, clock=clock, **kw)


def reading(i: int, sgv: int = 120, offset: int | None = 60) -> Reading:
    return Reading(epoch_ms=T0 + i * 300_000, sgv=sgv, direction="Flat", source="graph", utc_offset_min=offset)


def posts(ns: NightscoutStandIn) -> list[Any]:
    return [r for r in ns.requests if r.method == "POST" and r.path == "/api/v3/entries"]


def exchanges(ns: NightscoutStandIn) -> int:
    return ns.count(JWT_PATH, "GET")


# --- documents and tokens ----------------------------------------------------------------------------


def test_identifier_vector_of_the_spec() -> None:
    c = NightscoutV3(base_url="https://ns.example.org", token="bridgemin-596b724a6eb1d663", device="mybridge-dev")
    assert c.identifier_for(1795730941000) == "d3156e44-17c9-5ff4-bb6e-ba3ffd2dcaaa"
    assert c.identifier_for(1795730941000) == v3_identifier("mybridge-dev", 1795730941000)


def test_entry_for() -> None:
    c = NightscoutV3(base_url="https://ns.example.org", token="bridge-0123456789abcdef", device="dev", app="app")
    r = Reading(epoch_ms=T0, sgv=120, direction="FortyFiveUp", source="current", utc_offset_min=60)
    assert c.entry_for(r) == {
        "identifier": v3_identifier("dev", T0),
        "app": "app",
        "device": "dev",
        "date": T0,
        "utcOffset": 60,
        "type": "sgv",
        "sgv": 120,
        "direction": "FortyFiveUp",
        "dateString": "2026-11-26T21:59:38.000Z",
    }
    assert c.entry_for(reading(0, offset=None))["utcOffset"] == 0


@pytest.mark.parametrize(
    "token",
    [
        SECRET,
        "14c0629b7d30e4d12e3ab50120566664497754fa",  # sha1 of the secret (or of a token)
        "a" * 128,
        "bridge-0123456789abcde",  # 15 hex
        "bridge-0123456789abcdefg",
        "bridgebridgebridge-0123456789abcdef",  # abbreviation longer than 10
        "bridge 0123456789abcdef",
    ],
)
def test_api_secret_and_hashes_are_refused(token: str) -> None:
    assert not is_access_token(token)
    with pytest.raises(ValueError) as exc:
        NightscoutV3(base_url="https://ns.example.org", token=token)
    msg = str(exc.value)
    if len(token) == 40:  # issue 13: a SHA-1 gets its own fix, the token itself instead of its hash
        assert "looks like a SHA-1" in msg and "access token itself" in msg
    else:
        assert "access token from Nightscout's Admin Tools, not the API_SECRET" in msg
        assert "api:entries:update" in msg
    assert "NIGHTSCOUT_API_V3=false" in msg
    assert token not in msg


@pytest.mark.parametrize("token", ["bridge-0123456789abcdef", " Bridge-0123456789ABCDEF\n", "b_r-0123456789abcdef"])
def test_access_tokens_are_accepted(token: str) -> None:
    assert is_access_token(token)
    NightscoutV3(base_url="https://ns.example.org", token=token)


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="NIGHTSCOUT_API_TOKEN is empty"):
        NightscoutV3(base_url="https://ns.example.org", token=" ")
    with pytest.raises(ValueError, match="http://"):
        NightscoutV3(base_url="http://ns.example.org", token="bridge-0123456789abcdef")
    with pytest.raises(ValueError, match="app"):
        NightscoutV3(base_url="https://ns.example.org", token="bridge-0123456789abcdef", app="")
    with pytest.raises(ValueError, match="parallel"):
        NightscoutV3(base_url="https://ns.example.org", token="bridge-0123456789abcdef", parallel=0)


# --- upload ----------------------------------------------------------------------------------------------


def test_upload_batch_creates_one_document_per_reading(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    token = v3_token(ns)
    c = client(ns, token, clock)
    readings = [reading(i, 100 + i) for i in reversed(range(6))]
    assert c.upload(readings) == 6
    assert c.upload([]) == 0
    assert exchanges(ns) == 1
    assert c.requests_made == 7
    sent = posts(ns)
    assert [r.status for r in sent] == [201] * 6
    for r in sent:
        assert r.headers["content-type"] == "application/json"
        assert r.headers["accept"] == "application/json"
        assert r.headers["authorization"].startswith("Bearer eyJ")
        assert isinstance(r.body, dict)  # one object per POST, never an array
    jwt_req = next(r for r in ns.requests if r.path.startswith(JWT_PATH))
    assert jwt_req.headers["accept"] == "application/json"
    stored = ns.sgv_entries()
    assert [d["date"] for d in stored] == [T0 + i * 300_000 for i in range(6)]
    for d in stored:
        # the identifier we send is the one the server itself would compute
        assert d["identifier"] == v3_identifier("linkup-sync", d["date"])
        assert (d["app"], d["device"], d["utcOffset"], d["type"]) == ("linkup-sync", "linkup-sync", 60, "sgv")
        assert d["dateString"].endswith("Z") and d["subject"] == "bridge-v3"


def test_reupload_is_deduplicated_with_update_permission(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    for token in (v3_token(ns), ns.admin_token()):
        ns.clear_requests()
        c = client(ns, token, clock)
        assert c.upload([reading(i) for i in range(4)]) == 4
    assert [r.status for r in posts(ns)] == [200] * 4
    assert all(json.loads(r.raw_body)["identifier"] for r in posts(ns))
    assert len(ns.sgv_entries()) == 4 and ns.duplicates() == []


def test_reupload_without_update_permission_explains_the_role(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    c = client(ns, ns.uploader_token(), clock)  # api:entries:create + api:entries:read only
    assert c.upload([reading(i) for i in range(3)]) == 3
    with pytest.raises(NightscoutRejected) as exc:
        c.upload([reading(i) for i in range(3)])
    assert not isinstance(exc.value, NightscoutPartialUpload)
    msg = str(exc.value)
    assert "HTTP 403" in msg and "api:entries:update" in msg
    assert "api:entries:create, api:entries:read AND api:entries:update" in msg
    assert exc.value.needs_person


def test_create_without_permission_explains_the_role(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    ns.add_role("reader", ["api:entries:read"])
    c = client(ns, ns.add_subject("reader", ["reader"]), clock)
    with pytest.raises(NightscoutRejected, match=r"lacks the permission api:entries:create; .*AND api:entries:update"):
        c.upload([reading(0)])
    assert ns.entries == []


def test_immutable_field_conflict_counts_as_present_with_one_warning(
    ns: NightscoutStandIn, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    token = ns.admin_token()
    # reading 0: a v1 document by another uploader (no identifier, other device) -> "Field device ..."
    v1_doc = {"type": "sgv", "sgv": 99, "date": T0, "dateString": "2026-11-26T21:59:38.000Z", "device": "x"}
    ns.add_entry({**v1_doc, "utcOffset": 60, "sysTime": v1_doc["dateString"]})
    # reading 1: posted earlier through v3 with another app -> "Field app ..."
    assert client(ns, token, clock, app="other-app").upload([reading(1)]) == 1
    # reading 2: posted earlier with another utcOffset -> "Field utcOffset ..."
    assert client(ns, token, clock).upload([reading(2, offset=120)]) == 1
    ns.clear_requests()
    c = client(ns, token, clock)
    with caplog.at_level(logging.DEBUG, logger="linkup_sync"):
        assert c.upload([reading(i) for i in range(5)]) == 5
    assert sorted(r.status for r in posts(ns)) == [201, 201, 400, 400, 400]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert "3 of these readings" in text and "app/device/utcOffset" in text
    assert token not in text and "eyJ" not in text
    assert ns.duplicates() == []  # nothing was doubled
    assert len(ns.sgv_entries()) == 5


def test_duplicate_instants_in_one_call_are_sent_once(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    c = client(ns, v3_token(ns), clock)
    assert c.upload([reading(0), reading(0), reading(1)]) == 2
    assert len(posts(ns)) == 2


# --- JWT ------------------------------------------------------------------------------------------------


def test_jwt_is_exchanged_once_and_shared_through_the_cache(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    token = v3_token(ns)
    cache = DictCache()
    a = client(ns, token, clock, jwt_cache=cache)
    assert a.upload([reading(0)]) == 1
    assert cache.puts == 1 and cache.data["jwt"][1] == int(T0_S) + 28_800
    b = client(ns, token, clock, jwt_cache=cache)  # e.g. after a cold start
    assert b.upload([reading(1), reading(2)]) == 2
    assert exchanges(ns) == 1 and cache.puts == 1
    assert b.requests_made == 2
    auth = {r.headers["authorization"] for r in posts(ns)}
    assert auth == {f"Bearer {cache.data['jwt'][0]}"}


def test_jwt_is_renewed_ten_minutes_before_it_expires(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    token = v3_token(ns)
    cache = DictCache()
    c = client(ns, token, clock, jwt_cache=cache)
    c.upload([reading(0)])
    first = cache.data["jwt"]
    clock.advance(28_800 - JWT_RENEW_MARGIN_S - 60)  # 11 minutes left: still used
    c.upload([reading(1)])
    client(ns, token, clock, jwt_cache=cache).upload([reading(2)])
    assert exchanges(ns) == 1
    clock.advance(120)  # 9 minutes left: renewed before use
    c.upload([reading(3)])
    assert exchanges(ns) == 2
    assert cache.data["jwt"][1] > first[1] and cache.data["jwt"][0] != first[0]
    client(ns, token, clock, jwt_cache=cache).upload([reading(4)])
    assert exchanges(ns) == 2
    assert len(ns.sgv_entries()) == 5


def test_expired_jwt_from_the_cache_is_not_used(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    token = v3_token(ns)
    cache = DictCache()
    cache.put("eyJold.old.old", int(T0_S) + 300)
    c = client(ns, token, clock, jwt_cache=cache)
    assert c.upload([reading(0)]) == 1
    assert exchanges(ns) == 1 and cache.data["jwt"][0] != "eyJold.old.old"
    assert all(r.status == 201 for r in posts(ns))


def test_401_mid_batch_fetches_one_new_jwt(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    token = v3_token(ns)
    cache = DictCache()

    def redeploy(n: int, method: str, url: str) -> None:
        if n == 5:  # the exchange and 3 POSTs went through with the old JWT
            ns.rotate_jwt_key()

    c = client(ns, token, clock, jwt_cache=cache, pool=Pool(redeploy, delay=0.01), parallel=4)
    assert c.upload([reading(i) for i in range(12)]) == 12
    assert exchanges(ns) == 2  # once at the start, once after the redeploy: no loop
    statuses = [r.status for r in posts(ns)]
    assert statuses.count(201) == 12 and 1 <= statuses.count(401) <= 4
    assert c.requests_made == len(ns.requests)
    assert len(ns.sgv_entries()) == 12
    fresh = cache.data["jwt"][0]
    assert all(r.headers["authorization"] == f"Bearer {fresh}" for r in posts(ns)[-8:])


def test_401_after_a_new_jwt_is_unauthorized_without_a_loop(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    c = client(ns, v3_token(ns), clock, parallel=1)
    body = '{"status":401,"message":"Bad access token or JWT"}'
    ns.fail_next(2, status=401, body=body, content_type="application/json", path="/api/v3/entries")
    with pytest.raises(NightscoutUnauthorized) as exc:
        c.upload([reading(0), reading(1)])
    assert "API_SECRET was changed" in str(exc.value)
    assert exchanges(ns) == 2 and len(posts(ns)) == 2  # one retry, then the 2nd reading is not tried


def test_unknown_token_is_unauthorized(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    token = "ghost-0123456789abcdef"
    c = client(ns, token, clock)
    with pytest.raises(NightscoutUnauthorized) as exc:
        c.upload([reading(0)])
    msg = str(exc.value)
    assert "unknown to Nightscout" in msg and "API_SECRET was changed" in msg
    assert token not in msg and repr(exc.value).find(token) == -1
    assert c.requests_made == 1 and posts(ns) == []


def test_broken_jwt_cache_does_not_stop_the_upload(
    ns: NightscoutStandIn, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def get(self) -> tuple[str, int] | None:
            raise RuntimeError("dynamodb down")

        def put(self, jwt: str, exp: int) -> None:
            raise RuntimeError(f"dynamodb down {jwt}")

    c = client(ns, v3_token(ns), clock, jwt_cache=Broken())
    with caplog.at_level(logging.WARNING, logger="linkup_sync"):
        assert c.upload([reading(0)]) == 1
    assert len(caplog.records) == 2 and all("eyJ" not in r.getMessage() for r in caplog.records)


# --- failures and partial uploads -------------------------------------------------------------------


def test_partial_failure_reports_exactly_the_acknowledged_readings(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    def fail_from_fourth_post(n: int, method: str, url: str) -> None:
        if n == 4:  # exchange + 2 POSTs done; the 3rd POST gets a 500
            ns.fail_next(1, status=500, body='{"status":500,"message":"Database error"}', path="/api/v3/entries")

    c = client(ns, v3_token(ns), clock, pool=Pool(fail_from_fourth_post), parallel=1)
    with pytest.raises(NightscoutPartialUpload) as exc:
        c.upload([reading(i) for i in range(5)])
    err = exc.value
    assert err.accepted == (T0, T0 + 300_000)
    assert isinstance(err.cause, NightscoutUnreachable) and isinstance(err, NightscoutUnreachable)
    assert str(err) == str(err.cause) and "HTTP 500" in str(err)
    assert err.reason == "nightscout_unreachable"
    assert len(posts(ns)) == 3  # after a site-wide failure the rest is not sent
    assert [d["date"] for d in ns.sgv_entries()] == list(err.accepted)


def test_partial_failure_in_parallel_matches_what_the_server_stored(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    def fail_later(n: int, method: str, url: str) -> None:
        if n == 5:
            ns.fail_next(2, status=503, body="<html>Service Unavailable</html>", path="/api/v3/entries")

    c = client(ns, v3_token(ns), clock, pool=Pool(fail_later, delay=0.005), parallel=4)
    with pytest.raises(NightscoutPartialUpload) as exc:
        c.upload([reading(i) for i in range(16)])
    stored = [d["date"] for d in ns.sgv_entries()]
    assert list(exc.value.accepted) == stored and 1 <= len(stored) < 16
    assert isinstance(exc.value.cause, NightscoutUnreachable)


def test_per_document_400_does_not_stop_the_others(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    def one_bad(n: int, method: str, url: str) -> None:
        if n == 3:
            body = '{"status":400,"message":"Bad or missing utcOffset field"}'
            ns.fail_next(1, status=400, body=body, content_type="application/json", path="/api/v3/entries")

    c = client(ns, v3_token(ns), clock, pool=Pool(one_bad), parallel=1)
    with pytest.raises(NightscoutPartialUpload) as exc:
        c.upload([reading(i) for i in range(5)])
    assert exc.value.accepted == tuple(T0 + i * 300_000 for i in (0, 2, 3, 4))
    assert isinstance(exc.value.cause, NightscoutRejected) and "utcOffset" in str(exc.value)


def test_nothing_acknowledged_raises_the_cause_itself(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    c = client(ns, v3_token(ns), clock)
    ns.set_unreachable(True)
    with pytest.raises(NightscoutUnreachable) as exc:
        c.upload([reading(0), reading(1)])
    assert type(exc.value) is NightscoutUnreachable
    ns.set_unreachable(False)
    c.upload([reading(0)])  # JWT now cached
    ns.fail_next(9, status=502, body="<html>Bad Gateway</html>", path="/api/v3/entries")
    with pytest.raises(NightscoutUnreachable) as exc2:
        c.upload([reading(1), reading(2)])
    assert type(exc2.value) is NightscoutUnreachable and "HTTP 502" in str(exc2.value)


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (404, '{"status":404,"message":"Bad operation or collection"}', NightscoutRejected, "NIGHTSCOUT_API_V3=false"),
        (200, "<html>login</html>", NightscoutRejected, "does not point to a Nightscout site"),
        (307, "", NightscoutRejected, "NIGHTSCOUT_URL"),
        (413, "too large", NightscoutRejected, "413"),
        (410, '{"status":410}', NightscoutRejected, "HTTP 410"),
        (500, "oops", NightscoutUnreachable, "HTTP 500"),
    ],
)
def test_error_mapping(
    ns: NightscoutStandIn, clock: VirtualClock, status: int, body: str, error: type[NightscoutError], text: str
) -> None:
    c = client(ns, v3_token(ns), clock)
    ns.fail_next(1, status=status, body=body, path="/api/v3/entries")
    with pytest.raises(error, match=text):
        c.upload([reading(0)])


def test_jwt_exchange_errors(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    c = client(ns, v3_token(ns), clock)
    ns.fail_next(1, status=200, body="<html>login</html>", path=JWT_PATH)
    with pytest.raises(NightscoutRejected, match="does not point to a Nightscout site"):
        c.upload([reading(0)])
    ns.fail_next(1, status=502, body="bad gateway", path=JWT_PATH)
    with pytest.raises(NightscoutUnreachable, match="HTTP 502"):
        c.upload([reading(0)])
    assert posts(ns) == []


def test_concurrency_is_bounded(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    token = v3_token(ns)
    for parallel, n in ((3, 15), (1, 4)):
        pool = Pool(delay=0.1)  # long enough that the workers overlap even on a loaded machine
        c = client(ns, token, clock, pool=pool, parallel=parallel)
        assert c.upload([reading(i + 100 * parallel) for i in range(n)]) == n
        assert pool.max_in_flight <= parallel
        if parallel > 1:
            assert pool.max_in_flight >= 2


def test_expired_deadline_sends_nothing(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    c = client(ns, v3_token(ns), clock, deadline=Deadline(time.monotonic, 0))
    with pytest.raises(NightscoutUnreachable, match="time budget"):
        c.upload([reading(0)])
    assert ns.requests == []


def test_no_token_or_jwt_in_errors_repr_or_logs(
    ns: NightscoutStandIn, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    token = v3_token(ns)
    cache = DictCache()
    c = client(ns, token, clock, jwt_cache=cache, parallel=1)
    c.upload([reading(0)])
    jwt = cache.data["jwt"][0]
    errors: list[BaseException] = []
    with caplog.at_level(logging.DEBUG):
        for status, body in [(400, f"bad {jwt} {token}"), (500, jwt), (403, token), (404, jwt)]:
            ns.fail_next(1, status=status, body=body, path="/api/v3/entries")
            with pytest.raises(NightscoutError) as exc:
                c.upload([reading(1)])
            errors.append(exc.value)
    texts = [str(e) + repr(e) + repr(e.args) for e in errors] + [repr(c)]
    texts += [r.getMessage() for r in caplog.records]
    for text in texts:
        assert token not in text and jwt not in text and token.split("-")[1] not in text, text


# --- NightscoutPartialUpload itself, and v1's chunks -------------------------------------------------------


def test_partial_upload_error_keeps_the_cause_class() -> None:
    cause = NightscoutUnauthorized()
    err = NightscoutPartialUpload(cause, [3, 1, 3])
    assert isinstance(err, NightscoutPartialUpload) and isinstance(err, NightscoutUnauthorized)
    assert err.accepted == (1, 3) and err.cause is cause and err.message == cause.message
    assert err.reason == cause.reason and err.needs_person
    nested = NightscoutPartialUpload(err, [7])
    assert nested.cause is cause and nested.accepted == (1, 3, 7)
    one = NightscoutPartialUpload(NightscoutRejected("x"), [1])
    two = NightscoutPartialUpload(NightscoutRejected("y"), [2])
    assert type(one) is type(two)  # one combined class per cause class


def test_v1_later_chunk_failure_is_partial() -> None:
    with StubServer() as stub:
        stub.add_json(200, [])
        stub.add_json(200, [])
        stub.add(503, "down")
        readings = [reading(i) for i in range(288 * 2 + 3)]
        c1 = NightscoutV1(base_url=stub.url, token=SECRET, pool=Pool())
        with pytest.raises(NightscoutPartialUpload) as exc:
            c1.upload(list(reversed(readings)))
    assert exc.value.accepted == tuple(r.epoch_ms for r in readings[: 288 * 2])
    assert isinstance(exc.value, NightscoutUnreachable) and "HTTP 503" in str(exc.value)


def test_v1_single_chunk_failure_is_not_partial() -> None:
    with StubServer() as stub:
        stub.add(503, "down")
        c1 = NightscoutV1(base_url=stub.url, token=SECRET, pool=Pool())
        with pytest.raises(NightscoutUnreachable) as exc:
            c1.upload([reading(0)])
    assert type(exc.value) is NightscoutUnreachable
