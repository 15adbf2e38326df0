"""Tests of the LibreLink Up simulator itself (a measuring instrument: it must follow the spec).

Everything goes over real HTTP on 127.0.0.1 with http.client / urllib3, never through the bridge's
client. Spec references are to docs/librelinkup-api.md.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import http.client
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import urllib3
from tools.simulators.clock import VirtualClock
from tools.simulators.librelinkup import (
    CLOUDFLARE_1015_HTML,
    HISTORY_LAG_S,
    HISTORY_WINDOW_S,
    REGIONS,
    LinkUpSimulator,
    SimPatient,
    account_id_hash,
    compare_versions,
    format_llu_timestamp,
    measurement_color,
    parse_llu_timestamp,
    trend_arrow_for_rate,
)

from tests.support.librelinkup import ACCOUNT_ID, EMAIL, PATIENT, USER_ID, fixture_bytes, fixture_json

NOW = 1764190882.0  # 2025-11-26T21:01:22Z, the fixtures' scenario
PASSWORD = "correct horse"
HEADERS = {"product": "llu.ios", "version": "4.16.0", "Content-Type": "application/json"}
TS_RE = re.compile(r"^([1-9]|1[0-2])/([1-9]|[12]\d|3[01])/\d{4} ([1-9]|1[0-2]):[0-5]\d:[0-5]\d (AM|PM)$")


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


class Resp:
    def __init__(self, status: int, headers: dict[str, str], raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw

    @property
    def body(self) -> Any:
        return json.loads(self.raw)


def call(
    sim: LinkUpSimulator,
    method: str,
    path: str,
    *,
    region: str = "eu",
    headers: dict[str, str] | None = None,
    body: Any = None,
    token: str | None = None,
    account_id: str | None = ACCOUNT_ID,
    base_headers: bool = True,
    timeout: float = 5.0,
) -> Resp:
    hdrs: dict[str, str] = dict(HEADERS) if base_headers else {}
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    if account_id is not None and token is not None:
        hdrs["Account-Id"] = account_id
    hdrs.update(headers or {})
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=timeout)
    try:
        conn.request(method, f"/{region}{path}", body=data, headers=hdrs)
        r = conn.getresponse()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def login(sim: LinkUpSimulator, email: str = EMAIL, password: str = PASSWORD, region: str = "eu", **kw: Any) -> Resp:
    return call(sim, "POST", "/llu/auth/login", region=region, body={"email": email, "password": password}, **kw)


def token_of(sim: LinkUpSimulator, **kw: Any) -> str:
    r = login(sim, **kw)
    assert r.status == 200 and r.body["status"] == 0, r.raw
    return str(r.body["data"]["authTicket"]["token"])


def graph(sim: LinkUpSimulator, token: str, pid: str, **kw: Any) -> Resp:
    return call(sim, "GET", f"/llu/connections/{pid}/graph", token=token, **kw)


def shape(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: shape(v) for k, v in x.items()}
    if isinstance(x, list):
        return [shape(x[0])] if x else []
    if isinstance(x, bool) or x is None:
        return type(x).__name__
    if isinstance(x, int | float):
        return "number"
    return type(x).__name__


def ts(text: str) -> int:
    return parse_llu_timestamp(text)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(NOW)


@pytest.fixture
def sim(clock: VirtualClock) -> Iterator[LinkUpSimulator]:
    with LinkUpSimulator(clock, seed=7) as s:
        yield s


@pytest.fixture
def acc(sim: LinkUpSimulator) -> Any:
    return sim.add_account(EMAIL, PASSWORD, user_id=USER_ID)


@pytest.fixture
def pat(sim: LinkUpSimulator, acc: Any) -> SimPatient:
    return sim.add_patient(EMAIL, patient_id=PATIENT)


# --------------------------------------------------------------------------------------------------
# clock
# --------------------------------------------------------------------------------------------------


def test_virtual_clock_basics_and_thread_safety() -> None:
    c = VirtualClock(100.0)
    assert c() == c.now() == 100.0
    assert c.advance(5) == 105.0
    c.set(50)
    assert c() == 50.0
    with pytest.raises(ValueError):
        c.advance(-1)

    def work() -> None:
        for _ in range(1000):
            c.advance(1)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c() == 50.0 + 8000


# --------------------------------------------------------------------------------------------------
# pure helpers and spec test vectors
# --------------------------------------------------------------------------------------------------


def test_account_id_vector() -> None:
    assert account_id_hash(USER_ID) == ACCOUNT_ID  # §3.3


def test_timestamp_vectors() -> None:
    assert format_llu_timestamp(1672418860) == "12/30/2022 4:47:40 PM"  # §11
    assert parse_llu_timestamp("12/30/2022 4:47:40 PM") == 1672418860
    midnight = int(datetime(2023, 6, 20, 0, 49, 13, tzinfo=UTC).timestamp())
    noon = int(datetime(2023, 6, 20, 12, 5, 0, tzinfo=UTC).timestamp())
    assert format_llu_timestamp(midnight) == "6/20/2023 12:49:13 AM"  # 12 AM = 00 h
    assert format_llu_timestamp(noon) == "6/20/2023 12:05:00 PM"  # 12 PM = noon
    assert format_llu_timestamp(int(datetime(2024, 11, 9, 15, 19, tzinfo=UTC).timestamp())) == "11/9/2024 3:19:00 PM"
    for text in ("6/20/2023 12:49:13 AM", "6/20/2023 12:05:00 PM", "5/21/2022 1:38:50 PM"):
        assert format_llu_timestamp(parse_llu_timestamp(text)) == text
    with pytest.raises(ValueError):
        parse_llu_timestamp("06/20/2023 13:49:13")


def test_version_compare_is_numeric() -> None:
    assert compare_versions("4.9.0", "4.16.0") == -1
    assert compare_versions("4.16", "4.16.0") == 0
    assert compare_versions("4.17.0", "4.16.0") == 1
    assert compare_versions("5.0.0", "4.16.0") == 1
    assert compare_versions("4.16.0.1", "4.16.0") == 1


def test_trend_and_colour_tables() -> None:
    assert [trend_arrow_for_rate(r) for r in (-3, -2, -1.5, -1, -0.5, 0, 0.9, 1, 1.9, 2, 4)] == [
        1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5,
    ]  # fmt: skip
    assert [measurement_color(v, 70, 180) for v in (40, 69, 70, 180, 181, 249, 250, 400)] == [4, 4, 1, 1, 2, 2, 3, 3]


# --------------------------------------------------------------------------------------------------
# routing, headers, gzip, request log
# --------------------------------------------------------------------------------------------------


def test_unknown_region_and_path_404(sim: LinkUpSimulator, acc: Any) -> None:
    assert login(sim, region="xx").status == 404
    assert call(sim, "GET", "/llu/nothing").status == 404
    assert sim.requests[0].region == "xx" and sim.requests[0].status == 404
    assert {"eu", "eu2", "de", "us", "fr", "ru", "cn", "global"} <= REGIONS
    assert sim.url_template == f"http://127.0.0.1:{sim.port}/{{region}}"
    assert sim.url("eu2") == f"http://127.0.0.1:{sim.port}/eu2"


def test_request_log(sim: LinkUpSimulator, clock: VirtualClock, acc: Any, pat: SimPatient) -> None:
    tok = token_of(sim)
    clock.advance(42)
    graph(sim, tok, pat.id, headers={"X-Mixed-Case": "v"})
    assert sim.logins == 1
    assert sim.count("/llu/auth/login") == 1
    assert sim.count("/llu/connections") == 1
    assert sim.count("/llu/connections", "get") == 1
    assert sim.count(method="POST") == 1
    assert sim.count() == 2
    r = sim.requests[-1]
    assert (r.method, r.region, r.path, r.status, r.time) == (
        "GET",
        "eu",
        f"/llu/connections/{pat.id}/graph",
        200,
        NOW + 42,
    )
    assert r.headers["x-mixed-case"] == "v" and r.headers["account-id"] == ACCOUNT_ID
    assert all(k == k.lower() for k in r.headers)
    assert json.loads(sim.requests[0].body) == {"email": EMAIL, "password": PASSWORD}


def test_gzip_when_accepted(sim: LinkUpSimulator, acc: Any, pat: SimPatient) -> None:
    tok = token_of(sim)
    plain = graph(sim, tok, pat.id)
    assert "content-encoding" not in plain.headers
    zipped = graph(sim, tok, pat.id, headers={"Accept-Encoding": "gzip, deflate"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) == len(zipped.raw)
    assert json.loads(gzip.decompress(zipped.raw)) == plain.body
    # urllib3 decodes transparently and reuses the keep-alive connection
    pool = urllib3.PoolManager()
    hdrs = {**HEADERS, "Authorization": f"Bearer {tok}", "Account-Id": ACCOUNT_ID, "Accept-Encoding": "gzip"}
    for _ in range(3):
        r = pool.request("GET", f"{sim.url('eu')}/llu/connections/{pat.id}/graph", headers=hdrs)
        assert r.status == 200 and r.headers["Content-Encoding"] == "gzip"
        assert r.json()["data"]["graphData"] == plain.body["data"]["graphData"]
    pool.clear()


# --------------------------------------------------------------------------------------------------
# login (§5, §15.1)
# --------------------------------------------------------------------------------------------------


def test_login_ok_shape_and_token(sim: LinkUpSimulator, acc: Any) -> None:
    r = login(sim)
    assert r.status == 200 and r.headers["content-type"].startswith("application/json")
    body = r.body
    assert shape(body) == shape(fixture_json("login-ok.json"))
    assert body["data"]["user"]["id"] == USER_ID
    ticket = body["data"]["authTicket"]
    assert ticket["expires"] == int(NOW) + 15552000 and ticket["duration"] == 15552000000
    header, payload, sig = ticket["token"].split(".")
    assert json.loads(_b64(header)) == {"alg": "HS256", "typ": "JWT"}
    claims = json.loads(_b64(payload))
    assert claims["id"] == USER_ID and claims["region"] == "eu" and claims["s"] == "llu.ios"
    assert claims["exp"] == ticket["expires"] and "step" not in claims
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", sig)
    assert body["data"]["user"]["lastLogin"] == int(NOW)


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_login_requires_product_and_version_but_is_not_version_gated(sim: LinkUpSimulator, acc: Any) -> None:
    for drop in ("product", "version"):
        hdrs = {k: v for k, v in HEADERS.items() if k != drop}
        r = login(sim, base_headers=False, headers=hdrs)
        assert (r.status, r.body) == (400, fixture_json("error-400-required-header-missing.json"))
    r = login(sim, headers={"version": "4.2.1", "product": "llu.android"})
    assert r.status == 200 and r.body["status"] == 0
    assert sim.decode_token(r.body["data"]["authTicket"]["token"])["s"] == "llu.android"
    # ... while the data endpoints reject that version
    r = call(sim, "GET", "/llu/connections", token=r.body["data"]["authTicket"]["token"], headers={"version": "4.2.1"})
    assert r.status == 403


def test_bad_credentials_and_unknown_email(sim: LinkUpSimulator, acc: Any) -> None:
    bad = fixture_json("login-bad-credentials.json")
    assert (login(sim, password="nope").status, login(sim, password="nope").body) == (200, bad)
    assert login(sim, email="nobody@example.invalid").body == bad
    sim.bad_credentials_message = "incorrect username/password"
    assert login(sim, password="x").body["error"]["message"] == "incorrect username/password"


def test_lockout_after_three_failures_within_60s(sim: LinkUpSimulator, clock: VirtualClock, acc: Any) -> None:
    locked = fixture_json("login-locked.json")
    assert login(sim, password="x").body["status"] == 2
    clock.advance(10)
    assert login(sim, password="x").body["status"] == 2
    clock.advance(10)
    assert login(sim, password="x").body["status"] == 2  # third failure: reply is still "bad credentials"
    t_lock = clock()
    assert acc.locked_until == t_lock + 300
    clock.advance(1)
    r = login(sim)  # even the right password
    assert (r.status, r.body) == (200, locked)
    clock.set(t_lock + 299)
    assert login(sim).body == locked
    clock.set(t_lock + 300)
    assert login(sim).body["status"] == 0


def test_failures_spread_over_more_than_60s_do_not_lock(sim: LinkUpSimulator, clock: VirtualClock, acc: Any) -> None:
    for _ in range(5):
        assert login(sim, password="x").body["status"] == 2
        clock.advance(31)  # at most 2 failures inside any 60 s window
    assert acc.locked_until == 0
    assert login(sim).body["status"] == 0
    # unknown e-mails never lock anything
    for _ in range(4):
        assert login(sim, email="ghost@example.invalid").body["status"] == 2


def test_redirect_to_home_region(sim: LinkUpSimulator, acc: Any) -> None:
    sim.add_account("gb@example.invalid", "pw", home_region="eu2")
    for region in ("eu", "global", "de"):
        r = login(sim, "gb@example.invalid", "pw", region=region)
        assert (r.status, r.body) == (200, {"status": 0, "data": {"redirect": True, "region": "eu2"}})
        assert shape(r.body) == shape(fixture_json("login-redirect.json"))
    r = login(sim, "gb@example.invalid", "pw", region="eu2")
    assert r.body["status"] == 0
    assert sim.decode_token(r.body["data"]["authTicket"]["token"])["region"] == "eu2"
    # wrong password is judged before the redirect
    assert login(sim, "gb@example.invalid", "bad", region="eu").body["status"] == 2


def test_steps_tou_then_pp_then_ok(sim: LinkUpSimulator, clock: VirtualClock) -> None:
    sim.add_account(EMAIL, PASSWORD, user_id=USER_ID, pending_steps=["tou", "pp"])
    r = login(sim)
    assert r.body["status"] == 4 and shape(r.body) == shape(fixture_json("login-tou.json"))
    assert r.body["data"]["step"] == fixture_json("login-tou.json")["data"]["step"]
    assert "id" not in r.body["data"]["user"]
    t = r.body["data"]["authTicket"]
    assert t["duration"] == 3600000 and t["expires"] == int(NOW) + 3600
    assert sim.decode_token(t["token"])["step"] is True
    step_tok = t["token"]
    # a step token is useless on data endpoints
    assert call(sim, "GET", "/llu/connections", token=step_tok).status == 401
    # wrong type, missing or login token → 401
    invalid = fixture_json("error-401-invalid-jwt.json")
    r = call(sim, "POST", "/auth/continue/pp", token=step_tok, account_id=None)
    assert (r.status, r.body) == (401, invalid)
    assert call(sim, "POST", "/auth/continue/tou", account_id=None).status == 401
    r = call(sim, "POST", "/auth/continue/tou", token=step_tok, account_id=None)
    assert r.status == 200 and r.body["status"] == 4
    assert r.body["data"]["step"] == fixture_json("login-pp.json")["data"]["step"]
    assert call(sim, "POST", "/auth/continue/tou", token=step_tok, account_id=None).status == 401  # already taken
    clock.advance(30)
    r = call(sim, "POST", "/auth/continue/pp", token=r.body["data"]["authTicket"]["token"], account_id=None)
    assert r.status == 200 and r.body["status"] == 0
    assert shape(r.body) == shape(fixture_json("auth-continue-ok.json"))
    assert r.body["data"]["user"]["consents"]["llu"]["policyAccept"] == int(NOW) + 30
    ok_token = r.body["data"]["authTicket"]["token"]
    assert call(sim, "GET", "/llu/connections", token=ok_token).status == 200
    assert login(sim).body["status"] == 0  # nothing pending any more


def test_step_token_expires_after_one_hour(sim: LinkUpSimulator, clock: VirtualClock) -> None:
    sim.add_account(EMAIL, PASSWORD, user_id=USER_ID, pending_steps=["tou"])
    tok = login(sim).body["data"]["authTicket"]["token"]
    clock.advance(3600)
    assert call(sim, "POST", "/auth/continue/tou", token=tok, account_id=None).status == 401
    assert sim.account(EMAIL).pending_steps == ["tou"]


def test_verify_email_cannot_be_continued(sim: LinkUpSimulator, acc: Any) -> None:
    sim.force_steps(EMAIL, ["verifyEmail"])
    r = login(sim)
    assert r.body["status"] == 4 and shape(r.body) == shape(fixture_json("login-verify-email.json"))
    assert r.body["data"]["step"] == {"type": "verifyEmail", "componentName": "VerifyEmail", "props": {"email": EMAIL}}
    tok = r.body["data"]["authTicket"]["token"]
    assert call(sim, "POST", "/auth/continue/verifyEmail", token=tok, account_id=None).status == 401
    sim.force_steps(EMAIL, [])
    assert login(sim).body["status"] == 0


# --------------------------------------------------------------------------------------------------
# authenticated endpoints: check order and token rules (§15.3, §12)
# --------------------------------------------------------------------------------------------------


def test_check_order(sim: LinkUpSimulator, acc: Any, pat: SimPatient) -> None:
    tok = token_of(sim)
    path = f"/llu/connections/{pat.id}/graph"
    sim.set_maintenance(True)
    sim.set_min_version("4.17.0")
    r = call(sim, "GET", path, base_headers=True, account_id=None)
    assert (r.status, r.body) == (911, fixture_json("error-maintenance-911.json"))
    sim.set_maintenance(False)
    r = call(sim, "GET", path)
    assert (r.status, r.body) == (403, {"data": {"minimumVersion": "4.17.0"}, "status": 920})
    sim.set_min_version("4.16.0")
    r = call(sim, "GET", path)
    assert (r.status, r.body) == (401, fixture_json("error-401-invalid-jwt.json"))
    for aid in (None, ""):
        r = call(sim, "GET", path, token=tok, account_id=aid)
        assert (r.status, r.body) == (400, fixture_json("error-400-required-header-missing.json"))
    r = call(sim, "GET", path, token=tok, account_id=account_id_hash(pat.id))  # the classic mistake
    assert (r.status, r.body) == (401, fixture_json("error-401-invalid-jwt.json"))
    sim.set_wrong_account_id_status(400)
    assert call(sim, "GET", path, token=tok, account_id=ACCOUNT_ID.upper()).status == 400
    r = call(sim, "GET", path, token=tok, region="de")  # foreign host
    assert (r.status, r.body) == (200, fixture_json("error-couldnotloadpatient.json"))
    r = call(sim, "GET", "/llu/connections/00000000-0000-4000-8000-000000000000/graph", token=tok)
    assert (r.status, r.body) == (200, fixture_json("error-couldnotloadpatient.json"))
    assert call(sim, "GET", f"/llu/connections/{pat.id}/logbook", token=tok, region="us").body["status"] == 4
    r = call(sim, "GET", path, token=tok)
    assert r.status == 200 and r.body["status"] == 0 and "ticket" in r.body


def test_version_gate_is_numeric_over_http(sim: LinkUpSimulator, acc: Any) -> None:
    tok = token_of(sim)
    for version, status in (("4.9.0", 403), ("4.15.9", 403), ("4.16.0", 200), ("4.16", 200), ("4.17.0", 200)):
        assert call(sim, "GET", "/llu/connections", token=tok, headers={"version": version}).status == status
    sim.set_min_version("5.0.0")
    r = call(sim, "GET", "/llu/connections", token=tok, headers={"version": "4.17.0"})
    assert r.body == {"data": {"minimumVersion": "5.0.0"}, "status": 920}
    r = call(sim, "GET", "/llu/connections", token=tok, base_headers=False, headers={"product": "llu.ios"})
    assert r.status == 400  # no version header at all


def test_foreign_host_connections_configurable(sim: LinkUpSimulator, acc: Any, pat: SimPatient) -> None:
    tok = token_of(sim)
    assert call(sim, "GET", "/llu/connections", token=tok, region="de").body["status"] == 0
    sim.foreign_host_blocks_all = True
    assert call(sim, "GET", "/llu/connections", token=tok, region="de").body == fixture_json(
        "error-couldnotloadpatient.json"
    )


def test_tickets_are_fresh_and_usable(sim: LinkUpSimulator, clock: VirtualClock, acc: Any, pat: SimPatient) -> None:
    tok = token_of(sim)
    clock.advance(61)
    r = graph(sim, tok, pat.id)
    ticket = r.body["ticket"]
    assert ticket["expires"] == int(NOW) + 61 + 15552000 and ticket["duration"] == 15552000000
    assert ticket["token"] != tok
    claims = sim.decode_token(ticket["token"])
    assert claims["exp"] == ticket["expires"] and claims["id"] == USER_ID and claims["region"] == "eu"
    assert graph(sim, ticket["token"], pat.id).status == 200  # a reply ticket is a working token
    assert graph(sim, tok, pat.id).status == 200  # and the old one is not revoked by it


def test_token_expiry_forgery_and_revocation(sim: LinkUpSimulator, clock: VirtualClock, acc: Any) -> None:
    tok = token_of(sim)
    h, p, s = tok.split(".")
    claims = json.loads(_b64(p))
    claims["exp"] += 10**6
    p2 = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert call(sim, "GET", "/llu/connections", token=f"{h}.{p2}.{s}").status == 401  # payload altered
    other_sig = base64.urlsafe_b64encode(hmac.new(b"k", f"{h}.{p}".encode(), hashlib.sha256).digest()).rstrip(b"=")
    assert call(sim, "GET", "/llu/connections", token=f"{h}.{p}.{other_sig.decode()}").status == 401
    assert call(sim, "GET", "/llu/connections", token="not-a-jwt").status == 401
    assert call(sim, "GET", "/llu/connections", token=tok).status == 200
    sim.revoke_tokens()
    assert call(sim, "GET", "/llu/connections", token=tok).status == 401
    tok2 = token_of(sim)
    assert tok2 != tok and call(sim, "GET", "/llu/connections", token=tok2).status == 200
    clock.advance(15552000 - 1)
    assert call(sim, "GET", "/llu/connections", token=tok2).status == 200
    clock.advance(1)
    assert call(sim, "GET", "/llu/connections", token=tok2).status == 401


def test_account_id_vector_over_http(sim: LinkUpSimulator, acc: Any) -> None:
    tok = token_of(sim)
    assert call(sim, "GET", "/llu/connections", token=tok, account_id=ACCOUNT_ID).status == 200
    assert acc.account_id == ACCOUNT_ID


# --------------------------------------------------------------------------------------------------
# connections (§6)
# --------------------------------------------------------------------------------------------------


def test_connections_shape(sim: LinkUpSimulator, acc: Any, pat: SimPatient) -> None:
    r = call(sim, "GET", "/llu/connections", token=token_of(sim))
    assert shape(r.body) == shape(fixture_json("connections.json"))
    conn = r.body["data"][0]
    assert conn["patientId"] == pat.id and conn["firstName"] == "Pat" and conn["uom"] == 1
    assert conn["glucoseItem"] == conn["glucoseMeasurement"]
    gm = conn["glucoseMeasurement"]
    assert gm["type"] == 1 and 1 <= gm["TrendArrow"] <= 5 and gm["TrendMessage"] is None
    cur = pat.current_sample(NOW)
    assert cur is not None and (ts(gm["FactoryTimestamp"]), gm["ValueInMgPerDl"], gm["TrendArrow"]) == cur
    assert sim.served_connections[-1].current_epoch_s == cur[0]
    assert sim.served == []  # connections replies are not graph polls


def test_connections_empty_and_two_patients(sim: LinkUpSimulator, acc: Any) -> None:
    tok = token_of(sim)
    r = call(sim, "GET", "/llu/connections", token=tok)
    assert r.body["data"] == [] and shape(r.body) == shape(fixture_json("connections-empty.json"))
    a = sim.add_patient(EMAIL, first_name="Pat")
    b = sim.add_patient(EMAIL, first_name="Sam", last_name="Sample")
    sim.sensor_null(b.id)
    data = call(sim, "GET", "/llu/connections", token=tok).body["data"]
    assert [c["patientId"] for c in data] == [a.id, b.id]
    assert data[0]["sensor"] is not None and data[1]["sensor"] is None
    assert data[1]["lastName"] == "Sample" and a.seed != b.seed  # independent curves
    fx = fixture_json("connections-two-patients.json")["data"][1]
    assert set(data[1]) == set(fx) and fx["sensor"] is None
    assert set(fx["patientDevice"]) <= set(data[1]["patientDevice"])  # the fixture's 2nd device omits l/h


def test_shuffle_connections(sim: LinkUpSimulator, acc: Any) -> None:
    ids = [sim.add_patient(EMAIL).id for _ in range(4)]
    tok = token_of(sim)
    orders = set()
    sim.shuffle_connections(True)
    for _ in range(6):
        order = [c["patientId"] for c in call(sim, "GET", "/llu/connections", token=tok).body["data"]]
        assert sorted(order) == sorted(ids)
        orders.add(tuple(order))
    assert len(orders) > 1
    sim.shuffle_connections(False)
    assert [c["patientId"] for c in call(sim, "GET", "/llu/connections", token=tok).body["data"]] == ids


# --------------------------------------------------------------------------------------------------
# graph (§7, §10, §11)
# --------------------------------------------------------------------------------------------------


def test_graph_shape_window_lag_spacing(sim: LinkUpSimulator, acc: Any, pat: SimPatient) -> None:
    r = graph(sim, token_of(sim), pat.id)
    body = r.body
    assert shape(body) == shape(fixture_json("graph.json"))
    data = body["data"]
    assert list(data) == ["connection", "activeSensors", "graphData"]
    assert data["activeSensors"][0]["sensor"]["deviceId"] == data["activeSensors"][0]["device"]["did"]
    assert data["activeSensors"][0]["sensor"]["sn"] == pat.sensor_serial
    hist = data["graphData"]
    assert len(hist) in (140, 141)
    times = [ts(p["FactoryTimestamp"]) for p in hist]
    assert times == sorted(times)
    assert all(298 <= b - a <= 302 for a, b in itertools.pairwise(times))
    assert all(NOW - HISTORY_WINDOW_S <= t <= NOW - HISTORY_LAG_S for t in times)
    assert times[0] < NOW - HISTORY_WINDOW_S + 302 and times[-1] > NOW - HISTORY_LAG_S - 302
    for p in hist:
        assert p["type"] == 0 and "TrendArrow" not in p and "TrendMessage" not in p
        assert p["isHigh"] is False and p["isLow"] is False
    # history points are a subset of the per-minute series (same instants and values)
    series = {t: (mg, tr) for t, mg, tr in pat.samples_between(NOW - 86400, NOW)}
    assert all(series[ts(p["FactoryTimestamp"])][0] == p["ValueInMgPerDl"] for p in hist)
    # current reading = newest per-minute sample <= now
    gm = data["connection"]["glucoseMeasurement"]
    t_cur = max(t for t in series if t <= NOW)
    assert ts(gm["FactoryTimestamp"]) == t_cur and (gm["ValueInMgPerDl"], gm["TrendArrow"]) == series[t_cur]
    assert NOW - 61 <= t_cur <= NOW
    assert 15 * 60 <= t_cur - times[-1] <= 23 * 60  # the ~17 min lag
    served = sim.served[-1]
    assert (served.time, served.patient_id, served.current_epoch_s) == (NOW, pat.id, t_cur)
    assert served.history_epoch_s == tuple(times)


def test_series_spacing_jitter_and_trend(sim: LinkUpSimulator, acc: Any, pat: SimPatient) -> None:
    samples = pat.samples_between(NOW - 86400, NOW)
    assert len(samples) in (1440, 1441)
    assert {(t - pat.start) % 60 for t, _, _ in samples} == {59, 0, 1}  # jitter ∈ {-1, 0, +1} s
    assert all(40 <= mg <= 400 for _, mg, _ in samples)
    assert {tr for _, _, tr in samples} == {1, 2, 3, 4, 5}
    # the arrow agrees with the slope of the integer series over the last 15 min (away from thresholds)
    checked = 0
    for k in range(15, len(samples)):
        (t0, m0, _), (t1, m1, tr) = samples[k - 15], samples[k]
        rate = (m1 - m0) / ((t1 - t0) / 60)
        if min(abs(rate - th) for th in (-2, -1, 1, 2)) > 0.15:
            assert tr == trend_arrow_for_rate(rate), (t1, rate, tr)
            checked += 1
    assert checked > 1000
    # the per-minute series is sampled exactly as sample(i) says
    assert pat.sample(0)[0] == pat.sample_time(0) and abs(pat.sample_time(0) - pat.start) <= 1


def test_current_reading_moves_every_minute(
    sim: LinkUpSimulator, clock: VirtualClock, acc: Any, pat: SimPatient
) -> None:
    tok = token_of(sim)
    seen = []
    for _ in range(10):
        gm = graph(sim, tok, pat.id).body["data"]["connection"]["glucoseMeasurement"]
        seen.append(ts(gm["FactoryTimestamp"]))
        clock.advance(60)
    assert all(58 <= b - a <= 62 for a, b in itertools.pairwise(seen))  # one sample per minute
    assert all(57 <= NOW + 60 * k - t <= 59 for k, t in enumerate(seen))  # default phase: ~58 s old
    assert [s.current_epoch_s for s in sim.served] == seen


def test_timestamps_format_and_colours(sim: LinkUpSimulator, acc: Any, pat: SimPatient) -> None:
    data = graph(sim, token_of(sim), pat.id).body["data"]
    items = [data["connection"]["glucoseMeasurement"], *data["graphData"]]
    for it in items:
        assert TS_RE.match(it["FactoryTimestamp"]) and TS_RE.match(it["Timestamp"])
        assert ts(it["Timestamp"]) - ts(it["FactoryTimestamp"]) == 3600  # Berlin in November: UTC+1
        assert it["MeasurementColor"] == measurement_color(it["ValueInMgPerDl"], 70, 180)
        assert it["GlucoseUnits"] == 1 and it["Value"] == it["ValueInMgPerDl"] and isinstance(it["Value"], int)


@pytest.mark.parametrize(
    ("instant", "before", "after"),
    [("2026-03-29T01:00:00+00:00", 3600, 7200), ("2026-10-25T01:00:00+00:00", 7200, 3600)],
)
def test_dst_changes_berlin(clock: VirtualClock, instant: str, before: int, after: int) -> None:
    change = int(datetime.fromisoformat(instant).timestamp())
    clock.set(change + 5 * 3600)
    with LinkUpSimulator(clock) as sim:
        sim.add_account(EMAIL, PASSWORD, user_id=USER_ID)
        p = sim.add_patient(EMAIL, tz="Europe/Berlin")
        data = graph(sim, token_of(sim), p.id).body["data"]
        items = [*data["graphData"], data["connection"]["glucoseMeasurement"]]
        offsets = [(ts(i["FactoryTimestamp"]), ts(i["Timestamp"]) - ts(i["FactoryTimestamp"])) for i in items]
        assert {o for t, o in offsets if t < change} == {before}
        assert {o for t, o in offsets if t >= change} == {after}
        assert offsets[-1][1] == after  # the current reading too


def test_dst_full_year_60_120_60() -> None:
    spring = int(datetime(2026, 3, 29, 1, tzinfo=UTC).timestamp())
    autumn = int(datetime(2026, 10, 25, 1, tzinfo=UTC).timestamp())

    def off(t: int) -> int:
        return ts(format_llu_timestamp(t, "Europe/Berlin")) - ts(format_llu_timestamp(t))

    assert [off(spring - 1), off(spring), off(autumn - 1), off(autumn)] == [3600, 7200, 7200, 3600]
    # autumn: the local hour 2:00-3:00 is shown twice
    assert format_llu_timestamp(autumn - 1800, "Europe/Berlin") == format_llu_timestamp(autumn + 1800, "Europe/Berlin")


def test_mmol_patient(sim: LinkUpSimulator, acc: Any) -> None:
    p = sim.add_patient(EMAIL, units="mmol")
    tok = token_of(sim)
    conn = call(sim, "GET", "/llu/connections", token=tok).body["data"][0]
    assert shape(conn) == shape(fixture_json("connections-mmol.json")["data"][0])
    assert conn["uom"] == 0 and conn["targetLow"] == 70 and conn["targetHigh"] == 180
    data = graph(sim, tok, p.id).body["data"]
    for it in [data["connection"]["glucoseMeasurement"], *data["graphData"]]:
        assert it["GlucoseUnits"] == 0
        assert it["Value"] == round(it["ValueInMgPerDl"] / 18, 1) and isinstance(it["ValueInMgPerDl"], int)
    # fixture check value: 152 mg/dL → 8.4 mmol/L
    assert p.glucose_item(0, 152, item_type=1, trend=3)["Value"] == 8.4


# --------------------------------------------------------------------------------------------------
# offline gaps and late history (§15.4)
# --------------------------------------------------------------------------------------------------


def test_offline_gap(sim: LinkUpSimulator, clock: VirtualClock, acc: Any, pat: SimPatient) -> None:
    t0, t1 = NOW + 600, NOW + 2400
    pat.offline(t0, t1)
    tok = token_of(sim)
    before_gap = max(t for t, _, _ in pat.samples_between(NOW, t0 - 0.001))
    clock.set(NOW + 1200)  # phone offline: the current reading freezes at the last one before t0
    gm = graph(sim, tok, pat.id).body["data"]["connection"]["glucoseMeasurement"]
    assert ts(gm["FactoryTimestamp"]) == before_gap
    clock.set(t1 + 30)  # back online
    gm = graph(sim, tok, pat.id).body["data"]["connection"]["glucoseMeasurement"]
    assert ts(gm["FactoryTimestamp"]) >= t1
    clock.set(t1 + 3600)  # the gap is now inside the history window: a hole
    hist = [ts(p["FactoryTimestamp"]) for p in graph(sim, tok, pat.id).body["data"]["graphData"]]
    assert not any(t0 <= t < t1 for t in hist)
    assert any(t < t0 for t in hist) and any(t >= t1 for t in hist)
    gaps = [b - a for a, b in itertools.pairwise(hist)]
    assert max(gaps) >= t1 - t0
    assert not any(t0 <= t < t1 for t, _, _ in pat.samples_between(NOW, t1 + 3600, uploaded_only=True))
    assert any(t0 <= t < t1 for t, _, _ in pat.samples_between(NOW, t1 + 3600))


def test_late_history(sim: LinkUpSimulator, clock: VirtualClock, acc: Any, pat: SimPatient) -> None:
    tok = token_of(sim)
    normal = tuple(ts(p["FactoryTimestamp"]) for p in graph(sim, tok, pat.id).body["data"]["graphData"])
    pat.late_history(600)
    late = tuple(ts(p["FactoryTimestamp"]) for p in graph(sim, tok, pat.id).body["data"]["graphData"])
    assert late == tuple(t for t in normal if t <= NOW - HISTORY_LAG_S - 600)
    assert len(normal) - len(late) == 2
    clock.advance(600)  # the late points appear one "delay" later
    later = tuple(ts(p["FactoryTimestamp"]) for p in graph(sim, tok, pat.id).body["data"]["graphData"])
    assert set(normal[-2:]) <= set(later)
    # a late rule limited to a time range only delays those points
    pat.clear_faults()
    base = tuple(ts(p["FactoryTimestamp"]) for p in graph(sim, tok, pat.id).body["data"]["graphData"])
    pat.late_history(900, base[-3], base[-2])
    again = tuple(ts(p["FactoryTimestamp"]) for p in graph(sim, tok, pat.id).body["data"]["graphData"])
    assert again == base[:-3] + base[-2:]


# --------------------------------------------------------------------------------------------------
# sensor / graph switches
# --------------------------------------------------------------------------------------------------


def test_sensor_and_graph_switches(sim: LinkUpSimulator, acc: Any, pat: SimPatient) -> None:
    other = sim.add_patient(EMAIL)
    tok = token_of(sim)
    sim.sensor_null(pat.id)
    sim.no_active_sensors(pat.id)
    sim.empty_graph(pat.id)
    body = graph(sim, tok, pat.id).body
    assert shape(body) == shape(fixture_json("graph-no-data.json"))
    d = body["data"]
    assert d["connection"]["sensor"] is None and d["activeSensors"] == [] and d["graphData"] == []
    assert "glucoseMeasurement" in d["connection"]  # the current reading is still there
    assert sim.served[-1].history_epoch_s == () and sim.served[-1].current_epoch_s is not None
    d2 = graph(sim, tok, other.id).body["data"]
    assert d2["connection"]["sensor"] is not None and d2["activeSensors"] and d2["graphData"]
    sim.no_active_sensors(pat.id, omit=True)
    assert "activeSensors" not in graph(sim, tok, pat.id).body["data"]
    # switches without a patient id apply to everyone; a bool first argument also works
    sim.empty_graph()
    assert graph(sim, tok, other.id).body["data"]["graphData"] == []
    sim.empty_graph(False)
    sim.sensor_null(pat.id, on=False)
    sim.no_active_sensors(pat.id, on=False)
    d = graph(sim, tok, pat.id).body["data"]
    assert d["graphData"] and d["activeSensors"] and d["connection"]["sensor"] is not None


def test_no_data_before_start(sim: LinkUpSimulator, acc: Any) -> None:
    p = sim.add_patient(EMAIL, start=NOW + 3600)
    d = graph(sim, token_of(sim), p.id).body["data"]
    assert "glucoseMeasurement" not in d["connection"] and d["graphData"] == []
    assert sim.served[-1].current_epoch_s is None


# --------------------------------------------------------------------------------------------------
# fault switches
# --------------------------------------------------------------------------------------------------


def test_fail_next_generic_with_path_filter(sim: LinkUpSimulator, acc: Any, pat: SimPatient) -> None:
    sim.fail_next(
        2, status=503, body="down", content_type="text/plain", path="/llu/connections", headers={"X-Why": "t"}
    )
    tok = token_of(sim)  # the login is not affected
    for _ in range(2):
        r = call(sim, "GET", "/llu/connections", token=tok)
        assert (r.status, r.raw, r.headers["content-type"], r.headers["x-why"]) == (503, b"down", "text/plain", "t")
    assert call(sim, "GET", "/llu/connections", token=tok).status == 200
    assert [r.fault for r in sim.requests] == [None, "fail_next", "fail_next", None]


def test_rate_limit_html(sim: LinkUpSimulator, acc: Any) -> None:
    sim.rate_limit_html(2, retry_after=120)
    for _ in range(2):
        r = login(sim)
        assert r.status == 429 and r.headers["content-type"].startswith("text/html")
        assert r.raw == fixture_bytes("cloudflare-1015.html") == CLOUDFLARE_1015_HTML.encode()
        assert r.headers["retry-after"] == "120"
    assert login(sim).status == 200
    assert sim.logins == 3  # faulted logins count as received


def test_cloudflare_block_430_5xx_truncated_nonjson(sim: LinkUpSimulator, acc: Any, pat: SimPatient) -> None:
    sim.cloudflare_block(1)
    r = login(sim)
    assert r.status == 403 and "Attention Required! | Cloudflare" in r.raw.decode()
    assert r.headers["content-type"].startswith("text/html")
    sim.http_430_on_login(1)
    tok_resp = login(sim)
    assert (tok_resp.status, tok_resp.raw) == (430, b"")
    tok = token_of(sim)
    sim.http_430_on_login(1)
    assert graph(sim, tok, pat.id).status == 200  # only the login is hit
    assert login(sim).status == 430
    sim.server_error(1)
    r = graph(sim, tok, pat.id)
    assert r.status == 502 and b"502 Bad Gateway" in r.raw
    sim.server_error(1, status=500)
    assert graph(sim, tok, pat.id).status == 500
    sim.truncated_json(1)
    r = graph(sim, tok, pat.id)
    assert r.status == 200 and r.headers["content-type"].startswith("application/json")
    with pytest.raises(ValueError):
        json.loads(r.raw)
    sim.non_json(1)
    r = graph(sim, tok, pat.id)
    assert r.status == 200 and r.headers["content-type"].startswith("text/html")
    with pytest.raises(ValueError):
        json.loads(r.raw)
    assert graph(sim, tok, pat.id).status == 200
    assert len(sim.served) == 2  # faulted graph replies are not "served"


def test_hang_then_recover(sim: LinkUpSimulator, acc: Any) -> None:
    sim.hang(1, 20, path="/llu/auth/login")
    t = time.monotonic()
    with pytest.raises((TimeoutError, socket.timeout)):
        login(sim, timeout=0.5)
    assert time.monotonic() - t < 15  # the client gave up long before the 20 s hold ended
    assert login(sim).status == 200
    assert sim.requests[0].status is None and sim.requests[0].fault == "hang"
    # a hang longer than the client's patience ends in a closed connection without a reply
    sim.hang(1, 0.2)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        login(sim, timeout=30)


def test_stop_releases_hanging_and_idle_connections(clock: VirtualClock) -> None:
    sim = LinkUpSimulator(clock).start()
    sim.add_account(EMAIL, PASSWORD)
    sim.hang(1, 25)
    errors: list[BaseException] = []

    def client() -> None:
        try:
            login(sim, timeout=10)
        except BaseException as e:
            errors.append(e)

    th = threading.Thread(target=client)
    th.start()
    deadline = time.monotonic() + 20
    while sim.count() < 1 and time.monotonic() < deadline:  # the hanging request has arrived
        time.sleep(0.01)
    idle = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)  # an idle keep-alive connection
    idle.request("POST", "/eu/llu/auth/login", body=b"{}", headers=HEADERS)
    assert idle.getresponse().read()
    t = time.monotonic()
    sim.stop()
    th.join(15)
    assert time.monotonic() - t < 15 and not th.is_alive() and errors  # released long before the 25 s hold
    with pytest.raises(OSError):
        login(sim, timeout=1)
    idle.close()


def test_maintenance_and_login(sim: LinkUpSimulator, acc: Any, pat: SimPatient) -> None:
    sim.set_maintenance(True)
    tok = token_of(sim)  # login still works
    assert graph(sim, tok, pat.id).status == 911
    sim.set_maintenance(True, include_login=True)
    assert (login(sim).status, login(sim).body) == (911, {"status": 911})
    sim.set_maintenance(False)
    assert graph(sim, tok, pat.id).status == 200


def test_set_password_force_steps_clear_faults(sim: LinkUpSimulator, acc: Any, pat: SimPatient) -> None:
    sim.set_password(EMAIL, "new")
    assert login(sim).body["status"] == 2
    assert login(sim, password="new").body["status"] == 0
    sim.force_steps(EMAIL, ["tou"])
    assert login(sim, password="new").body["data"]["step"]["type"] == "tou"
    sim.server_error(5)
    sim.set_maintenance(True)
    sim.empty_graph()
    sim.clear_faults()
    assert login(sim, password="new").status == 200
    sim.unlock(EMAIL)


# --------------------------------------------------------------------------------------------------
# other endpoints
# --------------------------------------------------------------------------------------------------


def test_logbook(sim: LinkUpSimulator, acc: Any, pat: SimPatient) -> None:
    body = call(sim, "GET", f"/llu/connections/{pat.id}/logbook", token=token_of(sim)).body
    items = body["data"]
    assert body["status"] == 0 and "ticket" in body and items
    fx = fixture_json("logbook.json")["data"]
    alarm_shape = shape(next(i for i in fx if i["type"] == 3))
    entry_shape = shape(next(i for i in fx if i["type"] == 1))
    times = [ts(i["FactoryTimestamp"]) for i in items]
    assert times == sorted(times, reverse=True) and times[-1] >= NOW - 14 * 86400 and times[0] <= NOW
    for it in items:
        assert shape(it) == (alarm_shape if it["type"] == 3 else entry_shape)
        if it["type"] == 3:
            assert (it["alarmType"] == 1 and it["ValueInMgPerDl"] < 70) or (
                it["alarmType"] == 2 and it["ValueInMgPerDl"] >= 250
            )


def test_account_user_notifications_country(sim: LinkUpSimulator, acc: Any, pat: SimPatient) -> None:
    tok = token_of(sim)
    r = call(sim, "GET", "/account", token=tok)
    assert shape(r.body) == shape(fixture_json("account.json"))
    r = call(sim, "GET", "/user", token=tok)
    assert r.body["data"]["user"]["id"] == USER_ID and "ticket" in r.body
    r = call(sim, "GET", f"/llu/notifications/settings/{pat.connection_id}", token=tok)
    assert shape(r.body) == shape(fixture_json("notifications-settings.json"))
    assert r.body["data"]["connectionId"] == pat.connection_id
    assert call(sim, "GET", f"/llu/notifications/settings/{pat.id}", token=tok).body["status"] == 4
    sim.set_min_version("4.17.0")
    r = call(sim, "GET", "/llu/config/country?country=GB", base_headers=False)  # no auth needed
    d = r.body["data"]
    fx = fixture_json("config-country.json")["data"]
    assert set(d) == set(fx) and d["MinVersion"] == "4.17.0"
    assert d["lslApi"] == f"{sim.url('eu2')}/"
    assert set(fx["regionalMap"]) <= set(d["regionalMap"])
    assert all(v["lslApi"].endswith("/") for v in d["regionalMap"].values())


# --------------------------------------------------------------------------------------------------
# determinism and concurrency
# --------------------------------------------------------------------------------------------------


def _scenario(seed: int) -> list[bytes]:
    clock = VirtualClock(NOW)
    with LinkUpSimulator(clock, seed=seed) as sim:
        sim.add_account(EMAIL, PASSWORD)
        p = sim.add_patient(EMAIL)
        out = [login(sim).raw]
        tok = json.loads(out[0])["data"]["authTicket"]["token"]
        aid = sim.account(EMAIL).account_id
        for _ in range(3):
            out.append(graph(sim, tok, p.id, account_id=aid).raw)
            clock.advance(300)
        return out


def test_deterministic_for_seed_and_clock() -> None:
    a, b, c = _scenario(1), _scenario(1), _scenario(2)
    assert a == b
    assert a != c


def test_concurrent_requests(sim: LinkUpSimulator, acc: Any) -> None:
    pats = [sim.add_patient(EMAIL) for _ in range(3)]
    tok = token_of(sim)
    statuses: list[int] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        pool = urllib3.PoolManager()
        hdrs = {**HEADERS, "Authorization": f"Bearer {tok}", "Account-Id": ACCOUNT_ID}
        for j in range(8):
            pid = pats[(k + j) % 3].id
            r = pool.request("GET", f"{sim.url('eu')}/llu/connections/{pid}/graph", headers=hdrs)
            with lock:
                statuses.append(r.status)
        pool.clear()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 48
    assert len(sim.served) == 48 and sim.count("/llu/connections/") == 48
