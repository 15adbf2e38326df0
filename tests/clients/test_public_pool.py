"""Issue 21: the hosted worker's pool (linkup_sync.public_pool) connects only to addresses it checked, after
resolving the name itself; a refusal is a TransportError of kind "address" naming cause and fix. A loopback
stub plays the site; a fake resolver plays DNS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import urllib3

from linkup_sync.addresses import SiteAddresses
from linkup_sync.http import TransportError, make_pool
from linkup_sync.http_request import send
from linkup_sync.public_pool import guard_pool, public_only_pool
from tests.clients._stub_server import StubServer
from tests.fakes import FakeDns

TIMEOUT = urllib3.Timeout(connect=5, read=5)


@pytest.fixture
def stub() -> Iterator[StubServer]:
    with StubServer() as server:
        yield server


def get(pool: urllib3.PoolManager, url: str) -> int:
    return send(pool, "GET", url, headers={}, body=None, timeout=TIMEOUT).status


def port_of(stub: StubServer) -> int:
    return int(stub.url.rsplit(":", 1)[1])


@pytest.mark.parametrize("host", ["ns.example.org", "127.0.0.1", "localhost", "2130706433", "127.1", "[::ffff:7f00:1]"])
def test_a_site_on_this_machine_gets_no_connection(stub: StubServer, host: str) -> None:
    pool = public_only_pool(SiteAddresses(resolve=FakeDns({"ns.example.org": ["127.0.0.1"]})))
    with pytest.raises(TransportError) as refused:
        get(pool, f"http://{host}:{port_of(stub)}/api/v1/status.json")
    assert refused.value.kind == "address"
    assert "a loopback address (this machine itself)" in refused.value.detail
    assert "Fix: give the site's public https:// address" in refused.value.detail
    assert stub.requests == []


def test_the_checked_address_is_the_one_connected_to(stub: StubServer) -> None:
    """With loopback allowed (the tests' variable), the name is resolved once and its checked answer used."""
    dns = FakeDns({"ns.example.org": ["127.0.0.1"]})
    stub.add_json(200, {"status": "ok"})
    pool = public_only_pool(SiteAddresses(allow_loopback=True, resolve=dns))
    assert get(pool, f"http://ns.example.org:{port_of(stub)}/api/v1/status.json") == 200
    assert dns.asked == ["ns.example.org"] and len(stub.requests) == 1
    assert stub.requests[0].headers["host"] == f"ns.example.org:{port_of(stub)}"  # the site's name, as asked


def test_one_address_inside_refuses_the_name(stub: StubServer) -> None:
    dns = FakeDns({"ns.example.org": ["127.0.0.1", "10.0.0.5"]})
    pool = public_only_pool(SiteAddresses(allow_loopback=True, resolve=dns))
    with pytest.raises(TransportError) as refused:
        get(pool, f"http://ns.example.org:{port_of(stub)}/")
    assert "resolves to 10.0.0.5, a private network address" in refused.value.detail and stub.requests == []


def test_a_name_that_does_not_resolve_is_a_dns_failure(stub: StubServer) -> None:
    pool = public_only_pool(SiteAddresses(allow_loopback=True, resolve=FakeDns({})))
    with pytest.raises(TransportError) as failed:
        get(pool, f"http://gone.example.org:{port_of(stub)}/")
    assert failed.value.kind == "dns"


def test_guarding_a_pool_drops_its_open_connections(stub: StubServer) -> None:
    stub.add(200, "ok")
    pool = make_pool()
    assert get(pool, stub.url + "/") == 200  # the personal stack's pool: its own site on this machine
    guard_pool(pool, SiteAddresses())
    with pytest.raises(TransportError):
        get(pool, stub.url + "/")
    assert len(stub.requests) == 1


def test_the_personal_pool_keeps_todays_rules(stub: StubServer) -> None:
    stub.add(200, "ok")
    assert get(make_pool(), stub.url + "/") == 200
