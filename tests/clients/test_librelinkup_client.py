"""LinkUpClient against a scripted local HTTP server serving the recorded fixtures."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator

import pytest
import urllib3

from linkup_sync.errors import (
    LinkUpActionRequired,
    LinkUpBadCredentials,
    LinkUpBlocked,
    LinkUpError,
    LinkUpLocked,
    LinkUpMaintenance,
    LinkUpMalformedResponse,
    LinkUpMissingHeader,
    LinkUpPatientNotFound,
    LinkUpRateLimited,
    LinkUpRedirectLoop,
    LinkUpServerError,
    LinkUpTimeout,
    LinkUpUnauthorized,
    LinkUpUnreachable,
    LinkUpVersionContradicted,
    LinkUpVersionRejected,
)
from linkup_sync.http import Deadline, check_url_scheme, make_pool
from linkup_sync.librelinkup import LinkUpClient
from linkup_sync.librelinkup.client import DEFAULT_USER_AGENT
from linkup_sync.model import Ticket
from tests.support.librelinkup import ACCOUNT_ID, EMAIL, PATIENT, USER_ID, fixture_json

from ._stub_server import StubServer

PASSWORD = "Pa55w0rd-super-secret!"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.test-token-for-unit-tests.sig"
TICKET = Ticket(token=TOKEN, expires=1779742882, user_id=USER_ID, account_id=ACCOUNT_ID, region="eu")

BASE_HEADERS = {
    "content-type": "application/json",
    "accept": "application/json",
    "accept-encoding": "gzip",
    "cache-control": "no-cache",
    "pragma": "no-cache",
    "product": "llu.ios",
    "version": "4.16.0",
    "user-agent": DEFAULT_USER_AGENT,
}
TRANSPORT_HEADERS = {"host", "content-length", "connection"}

POOL = make_pool()


@pytest.fixture
def stub() -> Iterator[StubServer]:
    with StubServer() as server:
        yield server


def client_for(stub: StubServer, **kw: object) -> LinkUpClient:
    return LinkUpClient(url_template=stub.url + "/{region}", version="4.16.0", pool=POOL, **kw)  # type: ignore[arg-type]


def our_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in TRANSPORT_HEADERS}


# --- login ---------------------------------------------------------------------------------------


def test_login_ok_headers_and_body(stub: StubServer) -> None:
    stub.add_fixture("login-ok.json")
    client = client_for(stub)
    ticket = client.login(EMAIL, PASSWORD, "EU")
    assert ticket.region == "eu"
    assert ticket.user_id == USER_ID
    assert ticket.account_id == ACCOUNT_ID
    assert ticket.expires == 1779742882
    assert client.requests_made == 1
    [req] = stub.requests
    assert (req.method, req.path) == ("POST", "/eu/llu/auth/login")
    assert req.json() == {"email": EMAIL, "password": PASSWORD}
    assert our_headers(req.headers) == {**BASE_HEADERS, "account-id": ""}
    assert "authorization" not in req.headers


def test_login_redirect_followed_once(stub: StubServer) -> None:
    stub.add_fixture("login-redirect.json")  # -> eu
    stub.add_fixture("login-ok.json")
    client = client_for(stub)
    ticket = client.login(EMAIL, PASSWORD, "us")
    assert ticket.region == "eu"
    assert [r.path for r in stub.requests] == ["/us/llu/auth/login", "/eu/llu/auth/login"]
    assert stub.requests[0].body == stub.requests[1].body
    assert client.requests_made == 2


def test_login_redirect_followed_twice(stub: StubServer) -> None:
    stub.add_json(200, {"status": 0, "data": {"redirect": True, "region": "eu"}})
    stub.add_json(200, {"status": 0, "data": {"redirect": True, "region": "de"}})
    stub.add_fixture("login-ok.json")
    ticket = client_for(stub).login(EMAIL, PASSWORD, "us")
    assert ticket.region == "de"
    assert [r.path for r in stub.requests] == [
        "/us/llu/auth/login",
        "/eu/llu/auth/login",
        "/de/llu/auth/login",
    ]


def test_login_redirect_to_same_region_refused(stub: StubServer) -> None:
    stub.add_fixture("login-redirect.json")  # -> eu
    with pytest.raises(LinkUpRedirectLoop) as exc:
        client_for(stub).login(EMAIL, PASSWORD, "eu")
    assert len(stub.requests) == 1
    assert "EU -> EU" in str(exc.value)


def test_login_redirect_back_refused(stub: StubServer) -> None:
    stub.add_json(200, {"status": 0, "data": {"redirect": True, "region": "eu"}})
    stub.add_json(200, {"status": 0, "data": {"redirect": True, "region": "us"}})
    with pytest.raises(LinkUpRedirectLoop):
        client_for(stub).login(EMAIL, PASSWORD, "us")
    assert len(stub.requests) == 2


def test_login_third_redirect_refused(stub: StubServer) -> None:
    for region in ("eu", "de", "fr"):
        stub.add_json(200, {"status": 0, "data": {"redirect": True, "region": region}})
    with pytest.raises(LinkUpRedirectLoop) as exc:
        client_for(stub).login(EMAIL, PASSWORD, "us")
    assert len(stub.requests) == 3
    assert "US -> EU -> DE -> FR" in str(exc.value)


def test_login_redirect_to_unusable_region(stub: StubServer) -> None:
    stub.add_json(200, {"status": 0, "data": {"redirect": True, "region": "evil.example/"}})
    with pytest.raises(LinkUpMalformedResponse):
        client_for(stub).login(EMAIL, PASSWORD, "us")
    assert len(stub.requests) == 1


def test_login_gb_alias(stub: StubServer) -> None:
    stub.add_fixture("login-ok.json")
    assert client_for(stub).login(EMAIL, PASSWORD, "GB").region == "eu2"
    assert stub.requests[0].path == "/eu2/llu/auth/login"


def test_login_unknown_region_is_config_error(stub: StubServer) -> None:
    with pytest.raises(ValueError, match="LINK_UP_REGION"):
        client_for(stub).login(EMAIL, PASSWORD, "mars")
    assert stub.requests == []


@pytest.mark.parametrize(
    ("fixture", "error"),
    [
        ("login-bad-credentials.json", LinkUpBadCredentials),
        ("login-locked.json", LinkUpLocked),
        ("login-tou.json", LinkUpActionRequired),
        ("login-pp.json", LinkUpActionRequired),
        ("login-verify-email.json", LinkUpActionRequired),
        ("error-maintenance-911.json", LinkUpMaintenance),
        ("cloudflare-1015.html", LinkUpRateLimited),
    ],
)
def test_login_failures(stub: StubServer, fixture: str, error: type[LinkUpError]) -> None:
    stub.add_fixture(fixture)
    with pytest.raises(error):
        client_for(stub).login(EMAIL, PASSWORD, "eu")
    assert len(stub.requests) == 1  # never retried


def test_login_http_430_and_403_html(stub: StubServer) -> None:
    stub.add(430)
    stub.add(403, "<html><title>Attention Required! | Cloudflare</title></html>", {"Content-Type": "text/html"})
    client = client_for(stub)
    with pytest.raises(LinkUpBlocked) as e1:
        client.login(EMAIL, PASSWORD, "eu")
    with pytest.raises(LinkUpBlocked) as e2:
        client.login(EMAIL, PASSWORD, "eu")
    assert (e1.value.status, e2.value.status) == (430, 403)


def test_login_missing_ticket_parts(stub: StubServer) -> None:
    payload = fixture_json("login-ok.json")
    del payload["data"]["user"]["id"]
    stub.add_json(200, payload)
    with pytest.raises(LinkUpMalformedResponse):
        client_for(stub).login(EMAIL, PASSWORD, "eu")


def test_login_rate_limited_retry_after(stub: StubServer) -> None:
    stub.add_fixture("cloudflare-1015.html", headers={"Retry-After": "600"})
    with pytest.raises(LinkUpRateLimited) as exc:
        client_for(stub).login(EMAIL, PASSWORD, "eu")
    assert exc.value.retry_after == 600


# --- data endpoints ------------------------------------------------------------------------------


def test_connections_headers_and_parse(stub: StubServer) -> None:
    stub.add_fixture("connections-two-patients.json")
    client = client_for(stub, product="llu.android", user_agent="UA/1")
    conns = client.connections(TICKET)
    assert conns[0].patient_id == PATIENT
    [req] = stub.requests
    assert (req.method, req.path) == ("GET", "/eu/llu/connections")
    assert our_headers(req.headers) == {
        **BASE_HEADERS,
        "product": "llu.android",
        "user-agent": "UA/1",
        "authorization": f"Bearer {TOKEN}",
        "account-id": ACCOUNT_ID,
    }
    assert req.body == b""


def test_connections_empty(stub: StubServer) -> None:
    stub.add_fixture("connections-empty.json")
    assert client_for(stub).connections(TICKET) == []


def test_graph_gzip(stub: StubServer) -> None:
    stub.add_fixture("graph.json", gzip_body=True)
    client = client_for(stub)
    g = client.graph(TICKET, PATIENT)
    assert len(g.history) == 141 and g.current is not None and g.current.sgv == 152
    [req] = stub.requests
    assert req.path == f"/eu/llu/connections/{PATIENT}/graph"
    assert req.headers["account-id"] == ACCOUNT_ID
    assert req.headers["accept-encoding"] == "gzip"


def test_graph_uses_ticket_region(stub: StubServer) -> None:
    stub.add_fixture("graph-no-data.json")
    t = Ticket(token=TOKEN, expires=1, user_id=USER_ID, account_id=ACCOUNT_ID, region="ru")
    client_for(stub).graph(t, PATIENT)
    assert stub.requests[0].path.startswith("/ru/llu/connections/")


def test_graph_patient_id_is_escaped(stub: StubServer) -> None:
    stub.add_fixture("error-couldnotloadpatient.json")
    with pytest.raises(LinkUpPatientNotFound) as exc:
        client_for(stub).graph(TICKET, "../../x?y")
    assert stub.requests[0].path == "/eu/llu/connections/..%2F..%2Fx%3Fy/graph"
    assert exc.value.patient_id == "../../x?y"


def test_graph_patient_not_found(stub: StubServer) -> None:
    stub.add_fixture("error-couldnotloadpatient.json")
    with pytest.raises(LinkUpPatientNotFound) as exc:
        client_for(stub).graph(TICKET, PATIENT)
    assert (exc.value.patient_id, exc.value.known) == (PATIENT, [])


@pytest.mark.parametrize(
    ("fixture", "error"),
    [
        ("error-401-invalid-jwt.json", LinkUpUnauthorized),
        ("error-400-required-header-missing.json", LinkUpMissingHeader),
        # the fixture names 4.16.0, the version this client sends: a contradictory refusal (issue #10)
        ("error-403-minimum-version.json", LinkUpVersionContradicted),
        ("error-maintenance-911.json", LinkUpMaintenance),
        ("cloudflare-1015.html", LinkUpRateLimited),
    ],
)
def test_data_errors(stub: StubServer, fixture: str, error: type[LinkUpError]) -> None:
    stub.add_fixture(fixture)
    stub.add_fixture(fixture)
    client = client_for(stub)
    with pytest.raises(error):
        client.connections(TICKET)
    with pytest.raises(error):
        client.graph(TICKET, PATIENT)
    assert client.requests_made == 2


def test_version_rejected_carries_versions(stub: StubServer) -> None:
    stub.add_fixture("error-403-minimum-version.json")
    client = LinkUpClient(url_template=stub.url + "/{region}", version="4.12.0", pool=POOL)
    with pytest.raises(LinkUpVersionRejected) as exc:
        client.connections(TICKET)
    assert (exc.value.minimum_version, exc.value.sent_version) == ("4.16.0", "4.12.0")


def test_server_errors(stub: StubServer) -> None:
    stub.add(502, "<html>bad gateway</html>", {"Content-Type": "text/html"})
    stub.add(200, "<html>proxy</html>", {"Content-Type": "text/html"})
    stub.add(200, b'{"status":0,"data":[', {"Content-Type": "application/json"})  # truncated
    stub.add(200, b"", {"Content-Type": "application/json"})
    client = client_for(stub)
    with pytest.raises(LinkUpServerError) as exc:
        client.connections(TICKET)
    assert exc.value.status == 502
    for _ in range(3):
        with pytest.raises(LinkUpMalformedResponse):
            client.connections(TICKET)


def test_bad_gzip_is_malformed(stub: StubServer) -> None:
    stub.add(200, b"not gzip at all", {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    with pytest.raises(LinkUpMalformedResponse):
        client_for(stub).connections(TICKET)


# --- timeouts, connection failures ---------------------------------------------------------------


def test_timeout_within_deadline(stub: StubServer) -> None:
    stub.hang()
    client = client_for(stub, deadline=Deadline(time.monotonic, 1.0))
    start = time.monotonic()
    with pytest.raises(LinkUpTimeout):
        client.connections(TICKET)
    assert time.monotonic() - start < 20  # ended by the 1 s budget, long before the 30 s hang
    assert client.requests_made == 1


def test_expired_deadline_sends_nothing(stub: StubServer) -> None:
    client = client_for(stub, deadline=Deadline(time.monotonic, -1))
    with pytest.raises(LinkUpTimeout):
        client.login(EMAIL, PASSWORD, "eu")
    assert stub.requests == [] and client.requests_made == 0


def test_connection_refused_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = LinkUpClient(url_template=f"http://127.0.0.1:{port}/{{region}}", version="4.16.0", pool=POOL)
    with pytest.raises(LinkUpUnreachable) as exc:
        client.login(EMAIL, PASSWORD, "eu")
    assert isinstance(exc.value, LinkUpServerError)
    assert exc.value.reason == "unreachable"
    assert exc.value.__cause__ is None and exc.value.__suppress_context__


def test_url_template_must_be_https_or_loopback() -> None:
    with pytest.raises(ValueError, match="https"):
        LinkUpClient(url_template="http://example.com/{region}", version="4.16.0", pool=POOL)
    with pytest.raises(ValueError, match="region"):
        LinkUpClient(url_template="https://example.com/", version="4.16.0", pool=POOL)
    LinkUpClient(url_template="https://api-{region}.libreview.io", version="4.16.0", pool=POOL)
    LinkUpClient(url_template="http://localhost:9/{region}", version="4.16.0", pool=POOL)
    LinkUpClient(url_template="http://[::1]:9/{region}", version="4.16.0", pool=POOL)


# --- shared transport ----------------------------------------------------------------------------


def test_check_url_scheme() -> None:
    for ok in (
        "https://x.example",
        "http://127.0.0.1:8080/a",
        "http://127.8.9.1",
        "http://localhost",
        "http://[::1]:1",
    ):
        check_url_scheme(ok)
    for bad in ("http://example.com", "http://10.0.0.1", "ftp://x", "x.example", "http://128.0.0.1"):
        with pytest.raises(ValueError):
            check_url_scheme(bad)


def test_deadline() -> None:
    now = [100.0]
    d = Deadline(lambda: now[0], 5.0)
    t = d.timeout()
    assert (t.connect_timeout, t.read_timeout) == (3.05, 5.0)
    now[0] = 103.0
    t = d.timeout(connect=3.05, read=10.0)
    assert t.connect_timeout == 2.0 and d.remaining() == 2.0
    now[0] = 105.0
    with pytest.raises(LinkUpTimeout):
        d.timeout(error=LinkUpTimeout())
    with pytest.raises(TimeoutError):
        d.timeout()


def test_make_pool_verifies_tls() -> None:
    pool = make_pool()
    assert isinstance(pool, urllib3.PoolManager)
    assert pool.connection_pool_kw["cert_reqs"] == "CERT_REQUIRED"


# --- secrets never leak --------------------------------------------------------------------------


def test_no_secret_in_any_error_or_log(stub: StubServer, caplog: pytest.LogCaptureFixture) -> None:
    secrets = [PASSWORD, TOKEN, ACCOUNT_ID, EMAIL]
    fixtures_login = [
        "login-bad-credentials.json",
        "login-locked.json",
        "login-tou.json",
        "login-verify-email.json",
        "error-maintenance-911.json",
        "cloudflare-1015.html",
        "error-401-invalid-jwt.json",
    ]
    fixtures_data = [
        "error-401-invalid-jwt.json",
        "error-400-required-header-missing.json",
        "error-403-minimum-version.json",
        "error-couldnotloadpatient.json",
        "cloudflare-1015.html",
    ]
    errors: list[BaseException] = []
    client = client_for(stub)
    with caplog.at_level(logging.DEBUG):
        for name in fixtures_login:
            stub.add_fixture(name)
            with pytest.raises(LinkUpError) as exc:
                client.login(EMAIL, PASSWORD, "eu")
            errors.append(exc.value)
        stub.add_fixture("login-redirect.json")
        with pytest.raises(LinkUpRedirectLoop) as loop:
            client.login(EMAIL, PASSWORD, "eu")
        errors.append(loop.value)
        for name in fixtures_data:
            stub.add_fixture(name)
            with pytest.raises(LinkUpError) as exc:
                client.graph(TICKET, PATIENT)
            errors.append(exc.value)
        stub.add(
            200,
            json.dumps({"status": 0, "data": {"graphData": [{"FactoryTimestamp": TOKEN}]}}),
            {"Content-Type": "application/json"},
        )
        client.graph(TICKET, PATIENT)
        stub.hang()
        quick = client_for(stub, deadline=Deadline(time.monotonic, 0.3))
        with pytest.raises(LinkUpTimeout) as timeout:
            quick.graph(TICKET, PATIENT)
        errors.append(timeout.value)
    texts = [str(e) + repr(e) + repr(e.args) for e in errors]
    texts += [r.getMessage() for r in caplog.records]
    texts += [repr(TICKET), repr(client)]
    for text in texts:
        for secret in secrets:
            assert secret not in text, text
        assert "Bearer" not in text
    assert all(e.__cause__ is None for e in errors)
