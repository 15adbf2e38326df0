"""The Nightscout stand-in reproduces the behaviour of docs/nightscout-api.md.

Every test talks raw HTTP (http.client, one test urllib3) to a stand-in on 127.0.0.1. Appendix A
transcripts are reproduced literally where the stand-in can (ids and JWTs are its own).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import urllib3
from tools.simulators.clock import VirtualClock
from tools.simulators.nightscout import (
    UNAUTHORIZED_BODY,
    NightscoutStandIn,
    access_token_for,
    v3_identifier,
)

T0 = 1_795_730_978.0  # 2026-11-26T22:09:38Z, the clock of Appendix A
SECRET = "test-secret-123456"
SHA1 = "14c0629b7d30e4d12e3ab50120566664497754fa"  # §3.2 test vector
SHA512 = hashlib.sha512(SECRET.encode()).hexdigest()
AUTH = {"api-secret": SHA1}
_NO_BODY = object()


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def call(
    ns: NightscoutStandIn,
    method: str,
    path: str,
    body: Any = _NO_BODY,
    *,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
    timeout: float = 5.0,
) -> Resp:
    conn = http.client.HTTPConnection("127.0.0.1", ns.port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        data: bytes | None = None
        if body is not _NO_BODY:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs.setdefault("Content-Type", content_type)
        conn.request(method, path, body=data, headers=hdrs)
        r = conn.getresponse()
        text = r.read().decode("utf-8")
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, text)
    finally:
        conn.close()


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def sgv(ms: int, value: int = 100, **extra: Any) -> dict[str, Any]:
    return {"type": "sgv", "sgv": value, "date": ms, "dateString": iso(ms), "device": "test-bridge", **extra}


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0)


@pytest.fixture
def make_ns(clock: VirtualClock) -> Iterator[Callable[..., NightscoutStandIn]]:
    started: list[NightscoutStandIn] = []

    def factory(**kwargs: Any) -> NightscoutStandIn:
        ns = NightscoutStandIn(clock, **kwargs).start()
        started.append(ns)
        return ns

    yield factory
    for ns in started:
        ns.stop()


@pytest.fixture
def ns(make_ns: Callable[..., NightscoutStandIn]) -> NightscoutStandIn:
    return make_ns()


NOW_MS = int(T0 * 1000)


# --------------------------------------------------------------------------------------------------
# v1 upload (§2) — Appendix A
# --------------------------------------------------------------------------------------------------


def test_appendix_a_v1_upload_sequence(ns: NightscoutStandIn) -> None:
    # GET status without credentials under AUTH_DEFAULT_ROLES=denied
    r = call(ns, "GET", "/api/v1/status.json")
    assert (r.status, r.json()) == (401, UNAUTHORIZED_BODY)
    assert r.text == '{"status":401,"message":"Unauthorized","description":"Invalid/Missing"}'

    first = {
        "type": "sgv",
        "sgv": 120,
        "date": 1795730378000,
        "dateString": "2026-11-26T21:59:38.000Z",
        "direction": "Flat",
        "device": "test-bridge",
        "noise": 1,
    }
    r = call(ns, "POST", "/api/v1/entries", first, headers=AUTH)
    assert r.status == 200 and r.headers["content-type"] == "application/json; charset=utf-8"
    [doc] = r.json()
    assert list(doc) == [*first, "utcOffset", "sysTime", "_id"]
    assert doc == {**first, "utcOffset": 0, "sysTime": "2026-11-26T21:59:38.000Z", "_id": doc["_id"]}
    assert re.fullmatch(r"[0-9a-f]{24}", doc["_id"]) and doc["_id"].startswith("6b08ae22")

    # same instant again (sgv 121) plus a new reading without dateString
    batch = [
        {"type": "sgv", "sgv": 121, "date": 1795730378000, "dateString": "2026-11-26T21:59:38.000Z"},
        {"type": "sgv", "sgv": 130, "date": 1795730678000, "direction": "FortyFiveUp", "device": "test-bridge"},
    ]
    r = call(ns, "POST", "/api/v1/entries.json", batch, headers=AUTH)
    a, b = r.json()
    assert "_id" not in a and a["sgv"] == 121 and a["sysTime"] == "2026-11-26T21:59:38.000Z"  # matched
    assert b["_id"] and b["sysTime"] == "2026-11-26T22:04:38.000Z" and "dateString" not in b
    listed = call(ns, "GET", "/api/v1/entries.json?count=10", headers=AUTH).json()
    assert [d["sgv"] for d in listed] == [130, 121]
    assert listed[1]["noise"] == 1 and listed[1]["direction"] == "Flat"  # $set merge kept the old fields

    # offset dateString hitting an existing instant
    r = call(
        ns,
        "POST",
        "/api/v1/entries",
        [{"type": "sgv", "sgv": 131, "date": 1795730678000, "dateString": "2026-11-26T23:04:38.000+01:00"}],
        headers=AUTH,
    )
    [doc] = r.json()
    assert doc["dateString"] == doc["sysTime"] == "2026-11-26T22:04:38.000Z" and doc["utcOffset"] == 60
    assert "_id" not in doc and len(ns.entries) == 2 and ns.duplicates() == []

    # nothing stored: [], object without date, text/plain
    assert call(ns, "POST", "/api/v1/entries", [], headers=AUTH).text == "[]"
    assert (
        call(ns, "POST", "/api/v1/entries", {"type": "sgv", "sgv": 99, "dateString": iso(NOW_MS)}, headers=AUTH).text
        == "[]"
    )
    r = call(ns, "POST", "/api/v1/entries", [sgv(NOW_MS)], headers=AUTH, content_type="text/plain")
    assert (r.status, r.text) == (200, "[]")
    assert len(ns.entries) == 2

    # unparsable dateString: nulls and a whole-document key
    r = call(
        ns,
        "POST",
        "/api/v1/entries",
        [{"type": "sgv", "sgv": 77, "date": NOW_MS, "dateString": "garbage"}],
        headers=AUTH,
    )
    [doc] = r.json()
    assert doc["dateString"] is None and doc["utcOffset"] is None and doc["sysTime"] is None and doc["_id"]
    r = call(
        ns,
        "POST",
        "/api/v1/entries",
        [{"type": "sgv", "sgv": 78, "date": NOW_MS, "dateString": "garbage"}],
        headers=AUTH,
    )
    assert r.json()[0]["_id"]  # no de-duplication
    assert len(ns.duplicates()) == 1 and len(ns.duplicates()[0]) == 2


def test_upsert_key_is_systime_and_type_only(ns: NightscoutStandIn) -> None:
    base = NOW_MS - 600_000
    call(ns, "POST", "/api/v1/entries", [sgv(base, 100, device="a")], headers=AUTH)
    r = call(ns, "POST", "/api/v1/entries", [sgv(base, 101, device="b")], headers=AUTH)
    assert "_id" not in r.json()[0]  # device is not part of the key: overwritten
    call(ns, "POST", "/api/v1/entries", [sgv(base + 1000, 102)], headers=AUTH)  # 1 s off: new document
    call(
        ns, "POST", "/api/v1/entries", [{"type": "mbg", "mbg": 99, "date": base, "dateString": iso(base)}], headers=AUTH
    )
    stored = ns.entries
    assert len(stored) == 3
    assert [e["sgv"] for e in ns.sgv_entries()] == [101, 102]
    assert ns.sgv_entries()[0]["device"] == "b"
    # within one batch: the second element matches the first
    r = call(ns, "POST", "/api/v1/entries", [sgv(base + 5000, 1), sgv(base + 5000, 2)], headers=AUTH)
    first, second = r.json()
    assert "_id" in first and "_id" not in second
    assert ns.duplicates() == []


def test_normalisation_variants(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    docs = [
        {"type": "sgv", "sgv": 1, "date": 1795730000000},  # no dateString: from date
        {"type": "sgv", "sgv": 2, "date": 1, "dateString": "2026-11-26T22:09:38"},  # no zone: UTC, wins over date
        {"type": "sgv", "sgv": 3, "date": 2, "dateString": "2026-11-26T22:09:39.123456+05:30"},  # sub-ms truncated
        {"type": "sgv", "sgv": 4},  # nothing: now
    ]
    clock.advance(0.5)
    out = call(ns, "POST", "/api/v1/entries", docs, headers=AUTH).json()
    assert (out[0]["sysTime"], out[0]["utcOffset"], "dateString" in out[0]) == ("2026-11-26T21:53:20.000Z", 0, False)
    assert (out[1]["sysTime"], out[1]["utcOffset"], out[1]["dateString"]) == (
        "2026-11-26T22:09:38.000Z",
        0,
        "2026-11-26T22:09:38.000Z",
    )
    assert (out[2]["sysTime"], out[2]["utcOffset"]) == ("2026-11-26T16:39:39.123Z", 330)
    assert out[3]["sysTime"] == "2026-11-26T22:09:38.500Z" and out[3]["utcOffset"] == 0
    assert out[1]["date"] == 1  # date is stored unchanged, never computed


def test_body_credentials_are_read_and_removed(ns: NightscoutStandIn) -> None:
    token = ns.uploader_token()
    r = call(ns, "POST", "/api/v1/entries", [{**sgv(NOW_MS), "secret": SHA1}])
    assert r.status == 200 and "secret" not in r.json()[0] and "secret" not in ns.entries[0]
    r = call(ns, "POST", "/api/v1/entries", {**sgv(NOW_MS - 1000), "token": token})
    assert r.status == 200 and "token" not in ns.entries[1]
    # a header secret wins, so a body 'secret' is plain data then
    r = call(ns, "POST", "/api/v1/entries", [{**sgv(NOW_MS - 2000), "secret": "x"}], headers=AUTH)
    assert r.json()[0]["secret"] == "x"


def test_uuid_id_moves_to_identifier_on_15_0_7(ns: NightscoutStandIn) -> None:
    u = "0b0c7e68-4a0f-4f6e-9d1e-6b0f4c1b5b8e"
    out = call(
        ns, "POST", "/api/v1/entries", [{**sgv(NOW_MS), "_id": u}, {**sgv(NOW_MS - 1000), "_id": "foo"}], headers=AUTH
    ).json()
    assert out[0]["identifier"] == u and out[0]["_id"] != u and "identifier" not in out[1]
    assert re.fullmatch(r"[0-9a-f]{24}", out[1]["_id"])


def test_string_values_are_purified(ns: NightscoutStandIn) -> None:
    out = call(ns, "POST", "/api/v1/entries", [sgv(NOW_MS, device="ns <script>x</script>& co")], headers=AUTH).json()
    assert out[0]["device"] == "ns &amp; co" and ns.entries[0]["device"] == "ns &amp; co"


def test_preview_echoes_and_stores_nothing(ns: NightscoutStandIn) -> None:
    r = call(ns, "POST", "/api/v1/entries/preview.json", [sgv(NOW_MS)], headers=AUTH)
    assert r.status == 200 and r.json() == [sgv(NOW_MS)] and ns.entries == []
    assert call(ns, "POST", "/api/v1/entries/preview.json", [sgv(NOW_MS)]).status == 401
    token = ns.uploader_token()
    assert call(ns, "POST", f"/api/v1/entries/preview?token={token}", [sgv(NOW_MS)]).status == 200


def test_routing_variants_and_404(ns: NightscoutStandIn) -> None:
    for i, path in enumerate(["/api/v1/entries", "/api/v1/entries/", "/api/v1/entries.json", "/API/V1/Entries"]):
        assert call(ns, "POST", path, [sgv(NOW_MS - i * 1000)], headers=AUTH).status == 200
    assert len(ns.entries) == 4
    r = call(ns, "POST", "//api/v1/entries", [sgv(NOW_MS)], headers=AUTH)
    assert r.status == 404 and r.headers["content-type"].startswith("text/html")
    assert call(ns, "POST", "/api/v1/entries/sgv", [sgv(NOW_MS)], headers=AUTH).status == 404
    r = call(ns, "GET", "/api/versions")
    assert r.json() == [
        {"version": "1.0.0", "url": "/api/v1"},
        {"version": "2.0.0", "url": "/api/v2"},
        {"version": "3.0.3-alpha", "url": "/api/v3"},
    ]


def test_invalid_json_is_a_400(ns: NightscoutStandIn) -> None:
    r = call(ns, "POST", "/api/v1/entries", b"[{", headers=AUTH)
    assert r.status == 400 and r.headers["content-type"].startswith("text/html")
    assert ns.entries == []


def test_short_api_secret_disables_the_api(make_ns: Callable[..., NightscoutStandIn]) -> None:
    ns = make_ns(api_secret="short", default_roles=("admin",))
    assert call(ns, "POST", "/api/v1/entries", [sgv(NOW_MS)]).status == 404
    assert call(ns, "GET", "/api/v1/status.json").json()["apiEnabled"] is False


# --------------------------------------------------------------------------------------------------
# v1 auth (§3)
# --------------------------------------------------------------------------------------------------


def test_access_token_format_and_vectors(ns: NightscoutStandIn) -> None:
    assert hashlib.sha1(SECRET.encode()).hexdigest() == SHA1 == ns.api_secret_sha1  # noqa: S324
    token = ns.add_subject("bridge-admin", ["admin"])
    assert re.fullmatch(r"bridgeadmi-[0-9a-f]{16}", token)
    sid = "6b08ae22c51b992e71000abc"
    token2 = ns.add_subject("Bridge Min!", ["denied"], subject_id=sid)
    expected = hashlib.sha1((SHA1 + sid).encode()).hexdigest()[:16]  # noqa: S324
    assert token2 == f"bridgemin-{expected}" == access_token_for(SECRET, "Bridge Min!", sid)


@dataclass(frozen=True)
class Subjects:
    """The credentials a credential form is made of."""

    token: str  # an uploader's access token (create and read entries)
    jwt: str  # the JWT for that token
    readable: str  # a token that may only read
    create_only: str  # a token that may only create


# how -> (what to add to the path, the headers) of each credential form
CREDENTIAL_FORMS: dict[str, Callable[[Subjects], tuple[str, dict[str, str]]]] = {
    "sha1": lambda c: ("", {"api-secret": SHA1}),
    "sha1-upper": lambda c: ("", {"api-secret": SHA1.upper()}),
    "sha512": lambda c: ("", {"api-secret": SHA512}),
    "query-secret": lambda c: (f"?secret={SHA1}", {}),
    "plain-secret": lambda c: ("", {"api-secret": SECRET}),
    "query-token": lambda c: (f"?token={c.token}", {}),
    "header-token": lambda c: ("", {"api-secret": c.token}),
    "header-sha1-of-token": lambda c: ("", {"api-secret": hashlib.sha1(c.token.encode()).hexdigest()}),  # noqa: S324
    "bearer-jwt": lambda c: ("", {"Authorization": f"Bearer {c.jwt}"}),
    "lowercase-bearer-jwt": lambda c: ("", {"Authorization": f"bearer {c.jwt}"}),
    "bearer-raw-token": lambda c: ("", {"Authorization": f"Bearer {c.token}"}),
    "readable-token": lambda c: (f"?token={c.readable}", {}),
    "create-only-token": lambda c: (f"?token={c.create_only}", {}),
    "unknown-token": lambda c: ("?token=nobody-0123456789abcdef", {}),
    "none": lambda c: ("", {}),
}


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("sha1", 200),
        ("sha1-upper", 200),
        ("sha512", 200),
        ("query-secret", 200),
        ("plain-secret", 401),
        ("query-token", 200),
        ("header-token", 200),
        ("header-sha1-of-token", 200),
        ("bearer-jwt", 200),
        ("lowercase-bearer-jwt", 401),
        ("bearer-raw-token", 401),
        ("readable-token", 401),
        ("create-only-token", 401),
        ("unknown-token", 401),
        ("none", 401),
    ],
)
def test_v1_credential_forms(ns: NightscoutStandIn, how: str, expected: int) -> None:
    token = ns.uploader_token("bridge-min")
    ns.add_role("createonly", ["api:entries:create"])
    readable = ns.add_subject("reader", ["readable"])
    create_only = ns.add_subject("creator", ["createonly"])
    jwt = call(ns, "GET", f"/api/v2/authorization/request/{token}").json()["token"]
    query, headers = CREDENTIAL_FORMS[how](Subjects(token, jwt, readable, create_only))
    r = call(ns, "POST", "/api/v1/entries" + query, [sgv(NOW_MS)], headers=headers)
    assert r.status == expected
    if expected == 401:
        assert r.json() == UNAUTHORIZED_BODY and ns.entries == []
    else:
        assert len(ns.entries) == 1


def test_default_role_governs_anonymous_reads(make_ns: Callable[..., NightscoutStandIn]) -> None:
    ns = make_ns(default_roles=("readable",))
    assert call(ns, "GET", "/api/v1/entries.json").status == 200
    assert call(ns, "GET", "/api/v1/status.json").status == 200
    assert call(ns, "POST", "/api/v1/entries", [sgv(NOW_MS)]).status == 401  # create needs a credential
    # a wrong credential is a 401 even where anonymous access would work
    assert call(ns, "GET", "/api/v1/entries.json", headers={"api-secret": "0" * 40}).status == 401


def test_verifyauth_verdicts(ns: NightscoutStandIn) -> None:
    token = ns.uploader_token("bridge-min")
    r = call(ns, "GET", f"/api/v1/verifyauth?token={token}")
    assert r.status == 200
    assert r.json() == {
        "status": 200,
        "message": {
            "canRead": False,
            "canWrite": False,
            "isAdmin": False,
            "message": "UNAUTHORIZED",
            "rolefound": "FOUND",
            "permissions": "ROLE",
        },
    }
    ok = call(ns, "GET", "/api/v1/verifyauth", headers=AUTH).json()["message"]
    assert ok == {
        "canRead": True,
        "canWrite": True,
        "isAdmin": True,
        "message": "OK",
        "rolefound": "NOTFOUND",
        "permissions": "ROLE",
    }
    anon = call(ns, "GET", "/api/v1/verifyauth").json()["message"]
    assert (anon["message"], anon["permissions"]) == ("UNAUTHORIZED", "DEFAULT")
    bad = call(ns, "GET", "/api/v1/verifyauth", headers={"api-secret": SECRET})
    assert bad.status == 200 and bad.json()["message"]["message"] == "UNAUTHORIZED"
    assert ns.auth_failures == 1


def test_jwt_endpoint_and_expiry(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    token = ns.uploader_token("bridge-min")
    body = call(ns, "GET", f"/api/v2/authorization/request/{token}").json()
    assert list(body) == ["token", "sub", "permissionGroups", "iat", "exp"]
    assert body["sub"] == "bridge-min" and body["iat"] == int(T0) and body["exp"] - body["iat"] == 28800
    assert body["permissionGroups"] == [["api:entries:create", "api:entries:read"], []]
    header = json.loads(_b64d(body["token"].split(".")[0]))
    assert header == {"alg": "HS256", "typ": "JWT"}
    r = call(ns, "GET", "/api/v2/authorization/request/nobody-0123456789abcdef")
    assert (r.status, r.json()) == (401, UNAUTHORIZED_BODY)

    bearer = {"Authorization": f"Bearer {body['token']}"}
    assert call(ns, "POST", "/api/v1/entries", [sgv(NOW_MS)], headers=bearer).status == 200
    clock.advance(28799)
    assert call(ns, "GET", "/api/v1/entries.json", headers=bearer).status == 200
    clock.advance(1)  # exp reached
    assert call(ns, "GET", "/api/v1/entries.json", headers=bearer).status == 401
    fresh = {"Authorization": f"Bearer {ns.jwt_for(token)}"}
    assert call(ns, "GET", "/api/v1/entries.json", headers=fresh).status == 200
    ns.rotate_jwt_key()  # redeploy: every issued JWT is invalid
    assert call(ns, "GET", "/api/v1/entries.json", headers=fresh).status == 401


def _b64d(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_roles_and_subjects_through_the_api(ns: NightscoutStandIn) -> None:
    r = call(
        ns,
        "POST",
        "/api/v2/authorization/roles",
        {"name": "cgmuploader", "permissions": ["api:entries:create", "api:entries:read"]},
        headers=AUTH,
    )
    assert r.status == 200 and r.json()[0]["name"] == "cgmuploader"
    assert (
        call(
            ns, "POST", "/api/v2/authorization/subjects", {"name": "bridge-min", "roles": ["cgmuploader"]}, headers=AUTH
        ).status
        == 200
    )
    subjects = call(ns, "GET", "/api/v2/authorization/subjects", headers=AUTH).json()
    [subject] = [s for s in subjects if s["name"] == "bridge-min"]
    assert subject["accessToken"] == access_token_for(SECRET, "bridge-min", subject["_id"])
    assert re.fullmatch(r"bridgemin-[0-9a-f]{16}", subject["accessToken"])
    assert call(ns, "POST", f"/api/v1/entries?token={subject['accessToken']}", [sgv(NOW_MS)]).status == 200
    assert call(ns, "GET", "/api/v2/authorization/subjects").status == 401


def test_auth_fail_delay_is_cumulative_and_cleared_by_success(make_ns: Callable[..., NightscoutStandIn]) -> None:
    # a delay long enough that a loaded machine's own slowness cannot look like (or hide) it
    ns = make_ns(auth_fail_delay_ms=1500)
    t = time.monotonic()
    assert call(ns, "GET", "/api/v1/entries.json", headers={"api-secret": "wrong"}).status == 401
    assert time.monotonic() - t < 1.4  # the first failure itself is not delayed
    assert call(ns, "GET", "/api/v1/entries.json", headers={"api-secret": "wrong"}).status == 401
    assert call(ns, "GET", "/api/v1/entries.json", headers=AUTH).status == 200
    assert time.monotonic() - t >= 2.9  # 2 × 1.5 s of cumulative delay
    assert ns.auth_failures == 2
    t = time.monotonic()
    assert call(ns, "GET", "/api/v1/entries.json", headers=AUTH).status == 200
    assert time.monotonic() - t < 1.4  # success cleared the list
    # an unknown ?token= is not an authentication attempt (no credentials resolved, no delay)
    assert call(ns, "GET", "/api/v1/entries.json?token=nobody-0123456789abcdef").status == 401
    assert ns.auth_failures == 2


# --------------------------------------------------------------------------------------------------
# Reading back (§4)
# --------------------------------------------------------------------------------------------------


def test_implicit_four_day_window_and_date_filters(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    day = 86_400_000
    old = NOW_MS - 5 * day
    call(ns, "POST", "/api/v1/entries", [sgv(old, 50), sgv(NOW_MS - day, 60), sgv(NOW_MS, 70)], headers=AUTH)
    assert [d["sgv"] for d in call(ns, "GET", "/api/v1/entries/sgv.json?count=10", headers=AUTH).json()] == [70, 60]
    q = quote("find[date][$gte]")
    got = call(ns, "GET", f"/api/v1/entries/sgv.json?{q}={old}&count=10", headers=AUTH).json()
    assert [d["sgv"] for d in got] == [70, 60, 50]
    # parseInt semantics: an ISO string on date becomes 2024 and matches everything
    got = call(ns, "GET", f"/api/v1/entries.json?{q}=2024-01-01&count=10", headers=AUTH).json()
    assert len(got) == 3
    lt = quote("find[date][$lt]")
    got = call(ns, "GET", f"/api/v1/entries.json?{q}={old}&{lt}={NOW_MS}", headers=AUTH).json()
    assert [d["sgv"] for d in got] == [60, 50]
    ds = quote("find[dateString][$gte]")
    got = call(ns, "GET", f"/api/v1/entries.json?{ds}=2026-11-20T00:00:00Z", headers=AUTH).json()
    assert [d["sgv"] for d in got] == [70, 60, 50]  # string compare, no implicit window
    clock.advance(10 * 86400)
    assert call(ns, "GET", "/api/v1/entries.json?count=1", headers=AUTH).json() == []  # nothing in the window


def test_echo_endpoint_matches_appendix(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    clock.set(1795730984.683)
    r = call(ns, "GET", "/api/v1/echo/entries/sgv.json?count=1", headers=AUTH)
    assert r.text == (
        '{"query":{"type":"sgv","date":{"$gte":1795385384683}},"input":{"count":"1","find":{"type":"sgv"}},'
        '"params":{"echo":"entries","model":"sgv"},"storage":"entries"}'
    )


def test_type_device_count_and_order(ns: NightscoutStandIn) -> None:
    docs = [sgv(NOW_MS - i * 300_000, 100 + i, device="a" if i % 2 else "b") for i in range(12)]
    docs.append({"type": "mbg", "mbg": 99, "date": NOW_MS + 1000, "dateString": iso(NOW_MS + 1000)})
    call(ns, "POST", "/api/v1/entries", docs, headers=AUTH)
    mixed = call(ns, "GET", "/api/v1/entries.json", headers=AUTH).json()
    assert len(mixed) == 10 and mixed[0]["type"] == "mbg"  # default count 10, newest first, all types
    only = call(ns, "GET", "/api/v1/entries/sgv.json?count=20", headers=AUTH).json()
    assert [d["sgv"] for d in only] == list(range(100, 112))
    dev = call(ns, "GET", f"/api/v1/entries/sgv.json?{quote('find[device]')}=a&count=20", headers=AUTH).json()
    assert {d["device"] for d in dev} == {"a"} and len(dev) == 6
    typ = call(ns, "GET", f"/api/v1/entries.json?{quote('find[type]')}=sgv&count=1", headers=AUTH).json()
    assert typ[0]["sgv"] == 100
    cur = call(ns, "GET", "/api/v1/entries/current.json", headers=AUTH).json()
    assert len(cur) == 1 and cur[0]["type"] == "mbg"  # current has no type filter
    by_id = call(ns, "GET", f"/api/v1/entries/{only[3]['_id']}.json", headers=AUTH).json()
    assert by_id[0]["sgv"] == 103


def test_read_needs_entries_read_under_denied(ns: NightscoutStandIn) -> None:
    assert call(ns, "GET", "/api/v1/entries.json").status == 401
    token = ns.uploader_token()
    assert call(ns, "GET", f"/api/v1/entries.json?token={token}").status == 200


def test_tsv_content_negotiation(ns: NightscoutStandIn) -> None:
    call(ns, "POST", "/api/v1/entries", [sgv(NOW_MS - 300_000, 120, direction="Flat"), sgv(NOW_MS, 121)], headers=AUTH)
    expected_tsv = (
        f'"{iso(NOW_MS)}"\t{NOW_MS}\t121\t\t"test-bridge"\r\n'
        f'"{iso(NOW_MS - 300_000)}"\t{NOW_MS - 300_000}\t120\t"Flat"\t"test-bridge"'
    )
    for accept in (None, "*/*", "text/plain"):
        r = call(ns, "GET", "/api/v1/entries?count=2", headers={**AUTH, **({"Accept": accept} if accept else {})})
        assert r.headers["content-type"] == "text/plain; charset=utf-8" and r.text == expected_tsv
    for path, accept in (("/api/v1/entries?count=2", "application/json"), ("/api/v1/entries.json?count=2", "*/*")):
        r = call(ns, "GET", path, headers={**AUTH, "Accept": accept})
        assert r.headers["content-type"] == "application/json; charset=utf-8" and len(r.json()) == 2
    r = call(ns, "GET", "/api/v1/entries?count=2", headers={**AUTH, "Accept": "application/json, text/plain, */*"})
    assert r.headers["content-type"].startswith("application/json")
    r = call(ns, "GET", "/api/v1/entries.csv?count=1", headers=AUTH)
    assert (
        r.headers["content-type"] == "text/csv; charset=utf-8"
        and r.text == f'"{iso(NOW_MS)}",{NOW_MS},121,,"test-bridge"'
    )
    # the POST reply of 15.0.7 is JSON whatever the Accept header says
    r = call(ns, "POST", "/api/v1/entries", [sgv(NOW_MS)], headers={**AUTH, "Accept": "*/*"})
    assert r.headers["content-type"].startswith("application/json")


def test_status_json_and_negotiation(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    clock.advance(0.25)
    body = call(ns, "GET", "/api/v1/status.json", headers=AUTH).json()
    assert body["status"] == "ok" and body["version"] == "15.0.7" and body["apiEnabled"] is True
    assert body["serverTime"] == "2026-11-26T22:09:38.250Z" and body["serverTimeEpoch"] == NOW_MS + 250
    assert body["settings"]["units"] == "mg/dl" and body["authorized"] is None
    assert call(ns, "GET", "/api/v1/status", headers={**AUTH, "Accept": "*/*"}).text == "<h1>STATUS OK</h1>"
    token = ns.uploader_token()
    authorized = call(ns, "GET", f"/api/v1/status.json?secret={SHA1}&token={token}").json()
    assert authorized["status"] == "ok" and authorized["authorized"]["sub"] == "bridge"


def test_memory_cache_adds_mills(ns: NightscoutStandIn) -> None:
    call(ns, "POST", "/api/v1/entries", [sgv(NOW_MS - 60_000), sgv(NOW_MS)], headers=AUTH)
    cached = call(ns, "GET", "/api/v1/entries/sgv.json?count=2", headers=AUTH).json()
    assert all(d["mills"] == d["date"] for d in cached)
    direct = call(ns, "GET", f"/api/v1/entries/sgv.json?count=2&{quote('find[date][$gte]')}=0", headers=AUTH).json()
    assert all("mills" not in d for d in direct)


# --------------------------------------------------------------------------------------------------
# Legacy versions
# --------------------------------------------------------------------------------------------------


def test_15_0_6_reply_order_negotiation_replacement_and_hang(make_ns: Callable[..., NightscoutStandIn]) -> None:
    ns = make_ns(version="15.0.6")
    r = call(
        ns,
        "POST",
        "/api/v1/entries",
        [sgv(NOW_MS - 600_000, 1, noise=1), sgv(NOW_MS, 2)],
        headers={**AUTH, "Accept": "application/json"},
    )
    assert [d["sgv"] for d in r.json()] == [2, 1]  # newest first
    r = call(ns, "POST", "/api/v1/entries", [sgv(NOW_MS - 600_000, 3)], headers={**AUTH, "Accept": "*/*"})
    assert r.headers["content-type"] == "text/plain; charset=utf-8" and r.text.split("\t")[2] == "3"
    assert "noise" not in ns.sgv_entries()[0]  # full replacement
    t = time.monotonic()
    with pytest.raises((TimeoutError, socket.timeout)):
        call(ns, "POST", "/api/v1/entries.json", [], headers=AUTH, timeout=0.5)
    assert time.monotonic() - t < 20  # the client gave up long before the 30 s hold
    posts = [rq for rq in ns.requests if rq.method == "POST"]
    assert posts[-1].status is None and posts[-1].fault == "no-reply"
    assert call(ns, "GET", "/api/v1/status.json", headers=AUTH).json()["version"] == "15.0.6"


def test_pre_15_systime_bug_duplicates_without_datestring(
    make_ns: Callable[..., NightscoutStandIn], clock: VirtualClock
) -> None:
    ns = make_ns(version="14.2.6")
    reading = {"type": "sgv", "sgv": 100, "date": NOW_MS - 300_000}
    call(ns, "POST", "/api/v1/entries", [reading], headers=AUTH)
    clock.advance(60)
    call(ns, "POST", "/api/v1/entries", [reading], headers=AUTH)
    assert len(ns.duplicates()) == 1  # sysTime was the upload time


# --------------------------------------------------------------------------------------------------
# API v3 (§5) — Appendix A
# --------------------------------------------------------------------------------------------------

V3_DOC = {
    "type": "sgv",
    "sgv": 101,
    "date": 1795730941000,
    "app": "mybridge",
    "device": "mybridge-dev",
    "direction": "Flat",
}
V3_ID = "d3156e44-17c9-5ff4-bb6e-ba3ffd2dcaaa"


def _bearer(ns: NightscoutStandIn, token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {call(ns, 'GET', f'/api/v2/authorization/request/{token}').json()['token']}"}


def test_appendix_a_v3_sequence(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    assert v3_identifier("mybridge-dev", 1795730941000) == V3_ID
    assert str(uuid.uuid5(uuid.UUID(bytes=b"NightscoutRocks!"), "mybridge-dev_1795730941000")) == V3_ID
    minimal = _bearer(ns, ns.uploader_token("bridge-min"))
    admin = _bearer(ns, ns.admin_token())

    clock.set(1795731001.914)
    r = call(ns, "POST", "/api/v3/entries", V3_DOC, headers=minimal)
    assert r.status == 201 and r.headers["location"] == f"/api/v3/entries/{V3_ID}"
    assert r.text == f'{{"status":201,"identifier":"{V3_ID}","lastModified":1795731001914}}'
    assert r.headers["last-modified"] == "Thu, 26 Nov 2026 22:10:01 GMT"
    stored = ns.entries[0]
    assert "sysTime" not in stored and "dateString" not in stored
    assert stored["identifier"] == V3_ID and stored["subject"] == "bridge-min" and stored["utcOffset"] == 0
    assert (
        stored["srvCreated"] == stored["srvModified"] == 1795731001914
        and stored["created_at"] == "2026-11-26T22:09:01.000Z"
    )

    r = call(ns, "POST", "/api/v3/entries", V3_DOC, headers=minimal)
    assert r.text == '{"status":403,"message":"Missing permission api:entries:update"}'
    clock.set(1795731002.002)
    r = call(ns, "POST", "/api/v3/entries", V3_DOC, headers=admin)
    assert r.status == 200
    assert r.text == f'{{"status":200,"lastModified":1795731002002,"identifier":"{V3_ID}","isDeduplication":true}}'
    assert ns.entries[0]["srvCreated"] == 1795731001914 and len(ns.entries) == 1

    def msg(body: Any, headers: dict[str, str] = admin) -> tuple[int, Any]:
        resp = call(ns, "POST", "/api/v3/entries", body, headers=headers)
        return resp.status, resp.json()

    assert msg({**V3_DOC, "app": "other"}) == (
        400,
        {"status": 400, "message": "Field app cannot be modified by the client"},
    )
    assert msg({**V3_DOC, "utcOffset": 60}) == (
        400,
        {"status": 400, "message": "Field utcOffset cannot be modified by the client"},
    )
    assert msg([V3_DOC]) == (400, {"status": 400, "message": "Bad or missing date field"})
    assert msg({}) == (400, {"status": 400, "message": "Bad or missing request body"})
    no_app = {k: v for k, v in V3_DOC.items() if k != "app"} | {"date": 1795731041000}
    assert msg(no_app) == (400, {"status": 400, "message": "Bad or missing app field"})

    status, body = msg({**V3_DOC, "date": "2026-11-26T23:11:40.000+01:00"})
    assert status == 201
    doc = next(d for d in ns.entries if d["identifier"] == body["identifier"])
    assert (doc["date"], doc["utcOffset"]) == (1795731100000, 60)
    status, body = msg({**V3_DOC, "date": 1795731160})
    assert status == 201 and body["identifier"] == v3_identifier("mybridge-dev", 1795731160000)
    assert msg({**V3_DOC, "date": "1795731220000"})[0] == 201  # numeric string

    r = call(ns, "GET", "/api/v3/entries?sort$desc=date&limit=2&fields=identifier,date,sgv", headers=minimal)
    assert r.status == 200 and r.json()["status"] == 200
    assert [d["date"] for d in r.json()["result"]] == [1795731220000, 1795731160000]
    assert all(set(d) == {"identifier", "date", "sgv"} for d in r.json()["result"])
    r = call(ns, "GET", "/api/v3/entries?limit=5000", headers=minimal)
    assert r.json() == {"status": 400, "message": "Parameter limit out of tolerance"}
    r = call(ns, "GET", "/api/v3/entries?date$foo=1", headers=minimal)
    assert r.json() == {"status": 400, "message": "Unsupported filter operator foo"}
    r = call(ns, "GET", "/api/v3/entries?sort$desc=date&limit=1&type$eq=sgv&date$lt=1795731100000", headers=minimal)
    assert [d["date"] for d in r.json()["result"]] == [1795730941000]

    assert call(ns, "GET", "/api/v3/status", headers=minimal).json()["result"]["apiPermissions"] == {}
    perms = call(ns, "GET", "/api/v3/status", headers=admin).json()["result"]["apiPermissions"]
    assert perms["entries"] == perms["treatments"] == "crud"


def test_v3_against_v1_documents(ns: NightscoutStandIn) -> None:
    admin = _bearer(ns, ns.admin_token())
    ms = 1795730941000
    v1 = call(ns, "POST", "/api/v1/entries", [sgv(ms, 90, device="mybridge-dev")], headers=AUTH).json()[0]
    r = call(ns, "POST", "/api/v3/entries", {**V3_DOC, "device": "other-dev"}, headers=admin)
    assert r.json() == {"status": 400, "message": "Field device cannot be modified by the client"}
    r = call(ns, "POST", "/api/v3/entries", V3_DOC, headers=admin)
    assert r.json() == {"status": 400, "message": "Field app cannot be modified by the client"}
    # a v1 document that carries the same app is de-duplicated and replaced (identifier changes)
    ms2 = ms + 300_000
    v1b = call(
        ns, "POST", "/api/v1/entries", [sgv(ms2, 91, device="mybridge-dev", app="mybridge")], headers=AUTH
    ).json()[0]
    r = call(ns, "POST", "/api/v3/entries", {**V3_DOC, "date": ms2}, headers=admin)
    assert r.status == 200 and r.json()["deduplicatedIdentifier"] == v1b["_id"]
    replaced = next(d for d in ns.entries if d["_id"] == v1b["_id"])
    assert "sysTime" not in replaced and replaced["identifier"] == v3_identifier("mybridge-dev", ms2)
    # a v1 POST at the instant of a v3 document is inserted as another document
    call(ns, "POST", "/api/v3/entries", {**V3_DOC, "date": ms + 600_000}, headers=admin)
    r = call(ns, "POST", "/api/v1/entries", [sgv(ms + 600_000, 92, device="mybridge-dev")], headers=AUTH)
    assert r.json()[0]["_id"]
    assert [len(g) for g in ns.duplicates()] == [2]
    assert v1["_id"]


def test_v3_auth_rules(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    token = ns.uploader_token("bridge-min")
    r = call(ns, "GET", "/api/v3/entries", headers=AUTH)
    assert (r.status, r.json()) == (401, {"status": 401, "message": "Missing or bad access token or JWT"})
    r = call(ns, "GET", "/api/v3/entries", headers={"Authorization": f"Bearer {token}"})
    assert (r.status, r.json()) == (401, {"status": 401, "message": "Bad access token or JWT"})
    assert call(ns, "GET", f"/api/v3/entries?token={token}").status == 401
    jwt = call(ns, "GET", f"/api/v2/authorization/request/{token}").json()["token"]
    assert call(ns, "GET", "/api/v3/entries", headers={"Authorization": f"bearer {jwt}"}).status == 200
    clock.advance(28800)
    r = call(ns, "GET", "/api/v3/entries", headers={"Authorization": f"Bearer {jwt}"})
    assert r.json()["message"] == "Bad access token or JWT"
    assert ns.auth_failures == 2
    v = call(ns, "GET", "/api/v3/version").json()  # public
    assert v["result"]["version"] == "15.0.7" and v["result"]["apiVersion"] == "3.0.3-alpha"


def test_v3_read_and_last_modified(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    bearer = _bearer(ns, ns.admin_token())
    call(ns, "POST", "/api/v3/entries", V3_DOC, headers=bearer)
    r = call(ns, "GET", f"/api/v3/entries/{V3_ID}", headers=bearer)
    assert r.json()["result"]["sgv"] == 101 and "_id" not in r.json()["result"]
    assert call(ns, "GET", "/api/v3/entries/00000000-0000-0000-0000-000000000000", headers=bearer).status == 404
    lm = call(ns, "GET", "/api/v3/lastModified", headers=bearer).json()
    assert lm["status"] == 200 and lm["result"]["collections"]["entries"] == NOW_MS
    assert lm["result"]["srvDate"] == NOW_MS


# --------------------------------------------------------------------------------------------------
# Treatments
# --------------------------------------------------------------------------------------------------


def test_treatments_v1_and_v3(ns: NightscoutStandIn) -> None:
    t = {"eventType": "Meal Bolus", "created_at": "2026-11-26T23:00:00.000+01:00", "insulin": "2.5", "carbs": 30}
    r = call(ns, "POST", "/api/v1/treatments", [t], headers=AUTH)
    [doc] = r.json()
    assert (
        doc["created_at"] == "2026-11-26T22:00:00.000Z"
        and doc["utcOffset"] == 60
        and doc["insulin"] == 2.5
        and doc["_id"]
    )
    r = call(ns, "POST", "/api/v1/treatments.json", {**t, "carbs": 40}, headers=AUTH)
    assert "_id" not in r.json()[0] and len(ns.treatments) == 1 and ns.treatments[0]["carbs"] == 40
    token = ns.uploader_token()
    assert call(ns, "POST", f"/api/v1/treatments?token={token}", [t]).status == 401
    assert len(call(ns, "GET", "/api/v1/treatments.json", headers=AUTH).json()) == 1

    bearer = _bearer(ns, ns.admin_token())
    v3t = {"eventType": "Note", "created_at": "2026-11-26T22:05:00.000Z", "app": "x", "device": "d", "notes": "hi"}
    r = call(ns, "POST", "/api/v3/treatments", v3t, headers=bearer)
    assert r.status == 201 and r.json()["identifier"] == v3_identifier("d", 1795730700000, "Note")
    assert call(ns, "POST", "/api/v3/treatments", v3t, headers=bearer).json()["isDeduplication"] is True


# --------------------------------------------------------------------------------------------------
# Faults, records, concurrency
# --------------------------------------------------------------------------------------------------


def test_unreachable_closes_without_response(ns: NightscoutStandIn) -> None:
    ns.set_unreachable(True)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        call(ns, "POST", "/api/v1/entries", [sgv(NOW_MS)], headers=AUTH)
    assert ns.entries == [] and ns.requests[-1].fault == "unreachable" and ns.requests[-1].status is None
    ns.set_unreachable(False)
    assert call(ns, "POST", "/api/v1/entries", [sgv(NOW_MS)], headers=AUTH).status == 200


def test_fail_next_with_path_filter(ns: NightscoutStandIn) -> None:
    ns.fail_next(2, status=502, body="<html>Bad Gateway</html>", path="/api/v1/entries")
    assert call(ns, "GET", "/api/v1/status.json", headers=AUTH).status == 200  # other path untouched
    for _ in range(2):
        r = call(ns, "POST", "/api/v1/entries", [sgv(NOW_MS)], headers=AUTH)
        assert (r.status, r.text, r.headers["content-type"]) == (502, "<html>Bad Gateway</html>", "text/html")
    assert ns.entries == []
    assert call(ns, "POST", "/api/v1/entries", [sgv(NOW_MS)], headers=AUTH).status == 200
    assert ns.count("/api/v1/entries", "POST") == 3 and ns.count("/api/v1/status") == 1
    ns.fail_next(1, status=200, body="<html>proxy page</html>")
    r = call(ns, "GET", "/api/v1/entries.json", headers=AUTH)
    assert (r.status, r.headers["content-type"]) == (200, "text/html")


def test_hang_next_holds_then_answers(ns: NightscoutStandIn) -> None:
    ns.hang_next(1, 0.3)
    t = time.monotonic()
    assert call(ns, "POST", "/api/v1/entries", [sgv(NOW_MS)], headers=AUTH).status == 200
    assert time.monotonic() - t >= 0.3
    ns.hang_next(1, 3)
    with pytest.raises((TimeoutError, socket.timeout)):
        call(ns, "POST", "/api/v1/entries", [sgv(NOW_MS - 300_000)], headers=AUTH, timeout=0.5)
    deadline = time.monotonic() + 30
    while len(ns.entries) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(ns.entries) == 2  # the server still processed the abandoned request


def test_requests_are_recorded(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    clock.advance(5)
    call(
        ns,
        "POST",
        f"/api/v1/entries.json?{quote('find[x]')}=1",
        [sgv(NOW_MS)],
        headers={"API-SECRET": SHA1, "X-Custom": "1"},
    )
    [rec] = ns.requests
    assert (rec.method, rec.path, rec.status, rec.time) == ("POST", "/api/v1/entries.json", 200, T0 + 5)
    assert rec.headers["api-secret"] == SHA1 and rec.headers["x-custom"] == "1"
    assert rec.query == {"find[x]": "1"} and rec.body == [sgv(NOW_MS)]
    r = call(ns, "GET", "/api/v1/status.json", headers=AUTH)
    assert r.headers["date"] == "Thu, 26 Nov 2026 22:09:43 GMT"  # the Date header follows the virtual clock


def test_concurrent_uploads_never_duplicate(ns: NightscoutStandIn) -> None:
    batch = [sgv(NOW_MS - i * 300_000, 100 + i) for i in range(24)]
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            assert call(ns, "POST", "/api/v1/entries", batch, headers=AUTH).status == 200
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=upload) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == [] and len(ns.sgv_entries()) == 24 and ns.duplicates() == []


def test_urllib3_client_and_keep_alive(ns: NightscoutStandIn) -> None:
    pool = urllib3.PoolManager(retries=False, timeout=5.0)
    for i in range(3):
        r = pool.request(
            "POST",
            ns.base_url + "/api/v1/entries",
            body=json.dumps([sgv(NOW_MS - i * 300_000)]).encode(),
            headers={**AUTH, "Content-Type": "application/json", "Accept": "application/json"},
        )
        assert r.status == 200
    r = pool.request("GET", ns.base_url + "/api/v1/entries/sgv.json?count=5", headers=AUTH)
    assert len(json.loads(r.data)) == 3
    pool.clear()


# --- issue #15: announcements and the 10-minute alarm snooze (spec §11) -----------------------------------


def _post_v1_treatment(ns: Any, doc: dict[str, Any]) -> None:
    import json as _json

    import urllib3

    reply = urllib3.PoolManager().request(
        "POST",
        ns.base_url + "/api/v1/treatments.json",
        body=_json.dumps([doc]).encode(),
        headers={"api-secret": ns.api_secret_sha1, "Content-Type": "application/json", "Accept": "application/json"},
    )
    assert reply.status == 200


def test_standin_snoozes_urgent_alarms_after_a_recent_non_announcement_treatment() -> None:
    from tools.simulators.clock import VirtualClock
    from tools.simulators.nightscout import NightscoutStandIn

    clock = VirtualClock(1_796_000_000)
    ns = NightscoutStandIn(clock).start()
    try:
        assert not ns.urgent_alarms_snoozed()
        now = "2026-11-30T00:53:20.000Z"  # = clock()
        _post_v1_treatment(ns, {"eventType": "Sensor Start", "created_at": now, "enteredBy": "x"})
        assert ns.urgent_alarms_snoozed()  # a fresh treatment snoozes
        clock.advance(599)
        assert ns.urgent_alarms_snoozed()
        clock.advance(1)
        assert not ns.urgent_alarms_snoozed()  # 10 minutes old: no more
        # an announcement, now the newest treatment, snoozes nothing, and is what Nightscout pushes
        _post_v1_treatment(ns, {"eventType": "Announcement", "created_at": "2026-11-30T01:03:20.000Z", "notes": "hi"})
        assert ns.announcements()[0]["isAnnouncement"] is True  # v1 adds the mark itself
        assert not ns.urgent_alarms_snoozed()
        pushed = ns.pushed_announcement()
        assert pushed is not None and pushed["notes"] == "hi"
        # automated loop treatments do not count; a treatment in the future does not either
        _post_v1_treatment(ns, {"eventType": "Temp Basal", "created_at": "2026-11-30T01:03:21.000Z",
                                "enteredBy": "loop://iPhone"})  # fmt: skip
        _post_v1_treatment(ns, {"eventType": "Note", "created_at": "2026-11-30T02:00:00.000Z"})
        assert not ns.urgent_alarms_snoozed()
    finally:
        ns.stop()


def test_standin_v3_stores_an_announcement_without_the_mark_as_a_plain_treatment() -> None:
    """v3 stores fields as given: without isAnnouncement an Announcement snoozes alarms like any treatment."""
    import json as _json

    import urllib3
    from tools.simulators.clock import VirtualClock
    from tools.simulators.nightscout import NightscoutStandIn

    clock = VirtualClock(1_796_000_000)
    ns = NightscoutStandIn(clock).start()
    try:
        ns.add_role("t", ["api:treatments:create", "api:treatments:read"])
        jwt = ns.jwt_for(ns.add_subject("t", ["t"]))
        doc = {"date": 1_796_000_000_000, "app": "a", "device": "d", "eventType": "Announcement", "notes": "x"}
        reply = urllib3.PoolManager().request(
            "POST",
            ns.base_url + "/api/v3/treatments",
            body=_json.dumps(doc).encode(),
            headers={"Authorization": "Bearer " + jwt, "Content-Type": "application/json"},
        )
        assert reply.status == 201
        assert ns.announcements() == [] and ns.urgent_alarms_snoozed()
    finally:
        ns.stop()
