"""Nightscout v1 uploader, URL normalisation and api-secret forms."""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import time
from collections.abc import Iterator

import pytest

from linkup_sync.errors import (
    NightscoutError,
    NightscoutRejected,
    NightscoutUnauthorized,
    NightscoutUnreachable,
)
from linkup_sync.http import Deadline, make_pool
from linkup_sync.nightscout import NightscoutV1, api_secret_header, normalize_nightscout_url
from linkup_sync.nightscout.v1 import MAX_BATCH
from linkup_sync.readings import Reading

from ._stub_server import StubServer

SECRET = "test-secret-123456"
SECRET_SHA1 = "14c0629b7d30e4d12e3ab50120566664497754fa"
POOL = make_pool()
T0 = 1795730378000  # 2026-11-26T21:59:38.000Z


@pytest.fixture
def stub() -> Iterator[StubServer]:
    with StubServer() as server:
        yield server


def ns(stub: StubServer, **kw: object) -> NightscoutV1:
    return NightscoutV1(base_url=stub.url, token=SECRET, pool=POOL, **kw)  # type: ignore[arg-type]


def reading(i: int, sgv: int = 120, direction: str = "Flat") -> Reading:
    return Reading(epoch_ms=T0 + i * 300_000, sgv=sgv, direction=direction, source="graph", utc_offset_min=60)


def ok(stub: StubServer, body: object = None) -> None:
    stub.add_json(200, [] if body is None else body)


# --- URL normalisation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://my-site.herokuapp.com", "https://my-site.herokuapp.com"),
        ("my-site.herokuapp.com", "https://my-site.herokuapp.com"),
        ("  https://my-site.herokuapp.com/  ", "https://my-site.herokuapp.com"),
        ("https://my-site.herokuapp.com///", "https://my-site.herokuapp.com"),
        ("HTTPS://My-Site.HerokuApp.com", "https://my-site.herokuapp.com"),
        ("https://ns.example.org/api/v1", "https://ns.example.org"),
        ("https://ns.example.org/api/v1/", "https://ns.example.org"),
        ("https://ns.example.org/api/v1/entries", "https://ns.example.org"),
        ("https://ns.example.org/api/v1/entries.json", "https://ns.example.org"),
        ("https://ns.example.org/API/V1/Entries.json", "https://ns.example.org"),
        ("ns.example.org/api/v1/entries.json", "https://ns.example.org"),
        ("https://example.org/nightscout", "https://example.org/nightscout"),
        ("https://example.org/nightscout/", "https://example.org/nightscout"),
        ("https://example.org/nightscout/api/v1/", "https://example.org/nightscout"),
        ("https://example.org:8443/ns", "https://example.org:8443/ns"),
        ("example.org:8443", "https://example.org:8443"),
        ("http://localhost:1337", "http://localhost:1337"),
        ("http://127.0.0.1:1337/api/v1", "http://127.0.0.1:1337"),
        ("http://[::1]:1337/", "http://[::1]:1337"),
        ("https://[2001:db8::1]/", "https://[2001:db8::1]"),
        ("https://bücher.example", "https://xn--bcher-kva.example"),
    ],
)
def test_normalize_url(raw: str, expected: str) -> None:
    assert normalize_nightscout_url(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x y", "'x y' is not a web address; expected something like https://my-site.herokuapp.com"),
        ("my-site", "not a web address"),
        ("https://", "not a web address"),
        ("https://exa mple.org", "not a web address"),
        ("https://-bad-.example", "not a web address"),
        ("https://example.org:99999", "not a web address"),
        ("https://example.org:port", "not a web address"),
        ("mailto:me@example.org", "not a web address"),
        ("ftp://example.org", "https://"),
        ("http://my-site.herokuapp.com", "http://"),
        ("http://192.168.1.10:1337", "http://"),
        ("https://user:pw@example.org", "user name or password"),
        ("https://example.org/?token=abc", "NIGHTSCOUT_API_TOKEN"),
        ("https://example.org/#x", "without"),
    ],
)
def test_normalize_url_rejects(raw: str, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        normalize_nightscout_url(raw)
    assert message in str(exc.value)
    assert "NIGHTSCOUT_URL" in str(exc.value)


def test_normalize_url_does_not_echo_token() -> None:
    with pytest.raises(ValueError) as exc:
        normalize_nightscout_url("https://example.org/?token=bridge-0123456789abcdef")
    assert "bridge-0123456789abcdef" not in str(exc.value)
    with pytest.raises(ValueError) as exc:
        normalize_nightscout_url("https://me:hunter2secret@example.org")
    assert "hunter2secret" not in str(exc.value)


# --- api-secret ----------------------------------------------------------------------------------


def test_api_secret_forms() -> None:
    assert api_secret_header(SECRET) == SECRET_SHA1
    assert api_secret_header(f"  {SECRET}\n") == SECRET_SHA1
    token = "bridge-0123456789abcdef"
    assert api_secret_header(token) == hashlib.sha1(token.encode()).hexdigest()  # noqa: S324
    assert api_secret_header(SECRET_SHA1) == SECRET_SHA1
    assert api_secret_header(SECRET_SHA1.upper()) == SECRET_SHA1.upper()
    sha512 = hashlib.sha512(SECRET.encode()).hexdigest()
    assert api_secret_header(sha512) == sha512
    assert api_secret_header("a" * 41) == hashlib.sha1(b"a" * 41).hexdigest()  # noqa: S324
    for bad in ("", "  "):
        with pytest.raises(ValueError, match="NIGHTSCOUT_API_TOKEN"):
            api_secret_header(bad)


# --- upload --------------------------------------------------------------------------------------


def test_entry_for() -> None:
    client = NightscoutV1(base_url="https://ns.example.org", token=SECRET, pool=POOL, device="linkup-sync-test")
    r = Reading(epoch_ms=T0, sgv=120, direction="Flat", source="current")
    assert client.entry_for(r) == {
        "type": "sgv",
        "sgv": 120,
        "date": 1795730378000,
        "dateString": "2026-11-26T21:59:38.000Z",
        "direction": "Flat",
        "device": "linkup-sync-test",
    }


def test_upload_body_and_headers(stub: StubServer) -> None:
    ok(stub, [{"_id": "x"}])  # shorter than the input: still success
    client = ns(stub)
    readings = [reading(2, 130, "FortyFiveUp"), reading(0, 120), reading(1, 125, "NOT COMPUTABLE")]
    assert client.upload(readings) == 3
    assert client.requests_made == 1
    [req] = stub.requests
    assert (req.method, req.path) == ("POST", "/api/v1/entries.json")
    assert req.headers["content-type"] == "application/json"
    assert req.headers["accept"] == "application/json"
    assert req.headers["api-secret"] == SECRET_SHA1
    assert SECRET.encode() not in req.body
    assert req.json() == [
        {
            "type": "sgv",
            "sgv": 120,
            "date": T0,
            "dateString": "2026-11-26T21:59:38.000Z",
            "direction": "Flat",
            "device": "linkup-sync",
        },
        {
            "type": "sgv",
            "sgv": 125,
            "date": T0 + 300_000,
            "dateString": "2026-11-26T22:04:38.000Z",
            "direction": "NOT COMPUTABLE",
            "device": "linkup-sync",
        },
        {
            "type": "sgv",
            "sgv": 130,
            "date": T0 + 600_000,
            "dateString": "2026-11-26T22:09:38.000Z",
            "direction": "FortyFiveUp",
            "device": "linkup-sync",
        },
    ]


def test_upload_sub_path(stub: StubServer) -> None:
    ok(stub)
    client = NightscoutV1(base_url=stub.url + "/ns/api/v1/", token=SECRET, pool=POOL)
    client.upload([reading(0)])
    assert stub.requests[0].path == "/ns/api/v1/entries.json"


def test_upload_empty_sends_nothing(stub: StubServer) -> None:
    client = ns(stub)
    assert client.upload([]) == 0
    assert client.upload(()) == 0
    assert stub.requests == [] and client.requests_made == 0


def test_upload_chunks_in_order(stub: StubServer) -> None:
    for _ in range(3):
        ok(stub)
    client = ns(stub)
    readings = [reading(i, 40 + i % 300) for i in range(2 * MAX_BATCH + 10)]
    assert client.upload(list(reversed(readings))) == len(readings)
    assert MAX_BATCH == 288
    sizes = [len(r.json()) for r in stub.requests]
    assert sizes == [288, 288, 10]
    dates = [e["date"] for r in stub.requests for e in r.json()]
    assert dates == sorted(dates) and len(set(dates)) == len(readings)


def test_upload_exactly_one_batch(stub: StubServer) -> None:
    ok(stub)
    assert ns(stub).upload([reading(i) for i in range(MAX_BATCH)]) == MAX_BATCH
    assert len(stub.requests) == 1


def test_upload_stops_at_first_failed_batch(stub: StubServer) -> None:
    ok(stub)
    stub.add(500, "boom")
    with pytest.raises(NightscoutUnreachable):
        ns(stub).upload([reading(i) for i in range(MAX_BATCH + 5)])
    assert len(stub.requests) == 2


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "text"),
    [
        (
            401,
            '{"status":401,"message":"Unauthorized","description":"Invalid/Missing"}',
            {"Content-Type": "application/json"},
            NightscoutUnauthorized,
            "401",
        ),
        (
            307,
            "",
            {"Location": "https://ns.example.org/api/v1/entries.json"},
            NightscoutRejected,
            "redirects to https: fix NIGHTSCOUT_URL",
        ),
        (308, "", {"Location": "https://ns.example.org/api/v1/entries.json"}, NightscoutRejected, "https"),
        (301, "", {"Location": "https://other.example/x"}, NightscoutRejected, "NIGHTSCOUT_URL"),
        (302, "", {}, NightscoutRejected, "NIGHTSCOUT_URL"),
        (413, "<html><body>PayloadTooLargeError</body></html>", {}, NightscoutRejected, "413"),
        (400, '{"status":400,"message":"bad thing"}', {}, NightscoutRejected, 'HTTP 400: {"status":400'),
        (
            403,
            "<html><h1>Forbidden</h1></html>",
            {"Content-Type": "text/html"},
            NightscoutRejected,
            "HTTP 403: Forbidden",
        ),
        (
            404,
            "Cannot POST /api/v1/entries.json",
            {},
            NightscoutRejected,
            "no Nightscout at this address (HTTP 404 for /api/v1/entries.json)",
        ),  # issue 23 finding 6: doctor's diagnosis
        (500, '{"status":500,"message":"Mongo Error"}', {}, NightscoutUnreachable, "HTTP 500"),
        (502, "<html>Bad Gateway</html>", {}, NightscoutUnreachable, "HTTP 502"),
        (503, "", {}, NightscoutUnreachable, "HTTP 503"),
        (
            200,
            "<html><body>Application error</body></html>",
            {"Content-Type": "text/html"},
            NightscoutRejected,
            "not point to a Nightscout site",
        ),
        (
            200,
            "2026-11-26T21:59:38.000Z\t1795730378000\t120\tFlat\tx\n",
            {"Content-Type": "text/plain"},
            NightscoutRejected,
            "not a list of entries",
        ),
        (200, '{"status":200}', {"Content-Type": "application/json"}, NightscoutRejected, "Nightscout"),
        (200, "", {}, NightscoutRejected, "Nightscout"),
        (204, "", {}, NightscoutRejected, "204"),
    ],
)
def test_upload_errors(
    stub: StubServer, status: int, body: str, headers: dict[str, str], error: type[NightscoutError], text: str
) -> None:
    stub.add(status, body, headers)
    with pytest.raises(error) as exc:
        ns(stub).upload([reading(0)])
    assert text in str(exc.value)
    assert len(stub.requests) == 1  # never retried


def test_excerpt_is_short_and_redacted(stub: StubServer) -> None:
    long_body = f"<p>bad secret {SECRET} / {SECRET_SHA1}</p>" + "x" * 1000 + "\x00\x07"
    stub.add(400, long_body)
    with pytest.raises(NightscoutRejected) as exc:
        ns(stub).upload([reading(0)])
    msg = str(exc.value)
    assert SECRET not in msg and SECRET_SHA1 not in msg
    assert "[redacted]" in msg
    assert len(msg) < 300 and "<p>" not in msg and "\x00" not in msg


def test_excerpt_redacts_what_v3_redacts(stub: StubServer) -> None:
    # v1 and v3 share one excerpt: JWT-shaped strings and runs of 16 or more hex digits are removed too.
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    stub.add(400, f"id 0123456789abcdef0123 jwt {jwt} end")
    with pytest.raises(NightscoutRejected) as exc:
        ns(stub).upload([reading(0)])
    msg = str(exc.value)
    assert "0123456789abcdef0123" not in msg and jwt not in msg
    assert "id [redacted] jwt [redacted] end" in msg


def test_timeout_within_deadline(stub: StubServer) -> None:
    stub.hang()
    client = ns(stub, deadline=Deadline(time.monotonic, 1.0))
    start = time.monotonic()
    with pytest.raises(NightscoutUnreachable):
        client.upload([reading(0)])
    assert time.monotonic() - start < 20  # ended by the 1 s budget, long before the 30 s hang


def test_expired_deadline_sends_nothing(stub: StubServer) -> None:
    client = ns(stub, deadline=Deadline(time.monotonic, 0))
    with pytest.raises(NightscoutUnreachable):
        client.upload([reading(0)])
    assert stub.requests == []


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = NightscoutV1(base_url=f"http://127.0.0.1:{port}", token=SECRET, pool=POOL)
    with pytest.raises(NightscoutUnreachable) as exc:
        client.upload([reading(0)])
    assert exc.value.__cause__ is None


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="http://"):
        NightscoutV1(base_url="http://ns.example.org", token=SECRET, pool=POOL)
    with pytest.raises(ValueError, match="NIGHTSCOUT_API_TOKEN"):
        NightscoutV1(base_url="https://ns.example.org", token=" ", pool=POOL)


def test_no_secret_in_errors_repr_or_logs(stub: StubServer, caplog: pytest.LogCaptureFixture) -> None:
    errors: list[BaseException] = []
    client = ns(stub)
    with caplog.at_level(logging.DEBUG):
        for status, body in [(401, SECRET), (400, SECRET_SHA1), (500, SECRET), (200, SECRET), (302, "")]:
            stub.add(status, body, {"Location": f"https://x.example/?secret={SECRET}"})
            with pytest.raises(NightscoutError) as exc:
                client.upload([reading(0)])
            errors.append(exc.value)
    texts = [str(e) + repr(e) + repr(e.args) for e in errors] + [repr(client)]
    texts += [r.getMessage() for r in caplog.records]
    for text in texts:
        assert SECRET not in text and SECRET_SHA1 not in text, text
    assert json.dumps(client.entry_for(reading(0))).find(SECRET) == -1
