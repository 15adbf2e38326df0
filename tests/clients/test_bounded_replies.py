"""Replies are bounded in size and time (issue 21): what a hostile LibreLink Up or Nightscout sends.

The simulators answer with a 1 GiB gzip bomb (1 MB on the wire), a 64 MB body, or a body dripped a byte
at a time (tools/simulators/hostile_bodies.py). The clients stop at their cap with a typed error naming the host
and the limit, keep none of it, and end a dripping body with the deadline. The raw server below sends what
the simulators do not: chunked bodies, bodies without a length, raw deflate, a chunk header that never ends.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator

import pytest
import urllib3
from tools.simulators.clock import VirtualClock
from tools.simulators.hostile_bodies import GIB, HostileBody
from tools.simulators.librelinkup import LinkUpSimulator
from tools.simulators.nightscout import NightscoutStandIn

from linkup_sync.errors import (
    LinkUpServerError,
    LinkUpTimeout,
    LinkUpTooLarge,
    NightscoutTooLarge,
    NightscoutUnreachable,
)
from linkup_sync.http import MAX_BODY_BYTES, Deadline, TransportError, make_pool, size_text
from linkup_sync.http_request import send
from linkup_sync.librelinkup import LinkUpClient
from linkup_sync.librelinkup.client import MAX_REPLY_BYTES
from linkup_sync.nightscout.transport import MAX_ANSWER_BYTES, readback_limit
from linkup_sync.nightscout.v1 import READ_COUNT, NightscoutV1
from linkup_sync.nightscout.v3 import NightscoutV3

from ..support import nightscout
from ..support.nightscout import SECRET, T0_S

EMAIL = "fiona.follower@example.invalid"
PASSWORD = "correct horse battery staple"
MB = 1024 * 1024
# A dripped body: one byte every 0.2 s (urllib3's 10 s per-read timeout never fires), 10,000 bytes long
# (2,000 s, or the drip's own 120 s stop): only the deadline can end the request within the limit below.
DRIP = HostileBody("drip", size=10_000, interval_s=0.2)
DEADLINE_S = 2.0
ENDS_WITHIN_S = 15.0  # generous versus the 2 s deadline, far below the drip's 120 s


clock = nightscout.clock
ns = nightscout.ns


@pytest.fixture
def llu(clock: VirtualClock) -> Iterator[LinkUpSimulator]:
    sim = LinkUpSimulator(clock).start()
    sim.add_account(EMAIL, PASSWORD)
    sim.add_patient(EMAIL)
    try:
        yield sim
    finally:
        sim.stop()


def peak_mb(call: Callable[[], object]) -> tuple[float, BaseException | None]:
    """The Python heap's peak (MB) while `call` runs, and what it raised."""
    tracemalloc.start()
    raised: BaseException | None = None
    try:
        call()
    except Exception as exc:
        raised = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / MB, raised


# --- LibreLink Up ------------------------------------------------------------------------------------


def test_a_librelinkup_gzip_bomb_stops_at_the_cap_and_names_host_and_limit(llu: LinkUpSimulator) -> None:
    client = LinkUpClient(url_template=llu.url_template, pool=make_pool())
    ticket = client.login(EMAIL, PASSWORD, "eu")
    llu.hostile_next(1, HostileBody("gzip_bomb", size=GIB), path="/llu/connections")
    peak, raised = peak_mb(lambda: client.connections(ticket))
    assert isinstance(raised, LinkUpTooLarge)
    assert isinstance(raised, LinkUpServerError)  # backed off like any server fault, never needs a person
    assert not raised.needs_person
    assert "127.0.0.1" in raised.message and size_text(MAX_REPLY_BYTES) == "4 MB" and "4 MB" in raised.message
    assert peak < 3 * MAX_REPLY_BYTES / MB  # the cap and a chunk, not the 1 GiB it inflates to
    # the next request is answered normally: nothing of the bomb is left on the pooled connection
    assert client.connections(ticket)


def test_a_librelinkup_body_of_64_mb_is_refused_without_reading_it(llu: LinkUpSimulator) -> None:
    client = LinkUpClient(url_template=llu.url_template, pool=make_pool())
    ticket = client.login(EMAIL, PASSWORD, "eu")
    llu.hostile_next(1, HostileBody("oversized", size=64 * MB), path="/llu/connections")
    peak, raised = peak_mb(lambda: client.connections(ticket))
    assert isinstance(raised, LinkUpTooLarge)
    assert peak < 8


def test_a_dripping_librelinkup_body_ends_with_the_deadline(llu: LinkUpSimulator) -> None:
    deadline = Deadline(time.monotonic, DEADLINE_S)
    client = LinkUpClient(url_template=llu.url_template, pool=make_pool(), deadline=deadline)
    llu.hostile_next(1, DRIP, path="/llu/auth/login")
    started = time.monotonic()
    with pytest.raises(LinkUpTimeout):
        client.login(EMAIL, PASSWORD, "eu")
    assert time.monotonic() - started < ENDS_WITHIN_S
    assert [r.fault for r in llu.requests] == ["hostile_drip"]


# --- Nightscout --------------------------------------------------------------------------------------


def test_a_nightscout_read_back_gzip_bomb_stops_at_the_read_back_cap(ns: NightscoutStandIn) -> None:
    client = NightscoutV1(base_url=ns.base_url, token=SECRET, pool=make_pool())
    ns.hostile_next(1, HostileBody("gzip_bomb", size=GIB), path="/api/v1/entries", method="GET")
    peak, raised = peak_mb(lambda: client.existing_sgv(int(T0_S * 1000) - 3_600_000))
    assert isinstance(raised, NightscoutTooLarge)
    assert isinstance(raised, NightscoutUnreachable)  # a passing fault: the next run tries again
    assert not raised.needs_person
    limit = readback_limit(READ_COUNT)
    assert "127.0.0.1" in raised.message and size_text(limit) in raised.message
    assert peak < 3 * limit / MB


def test_a_v3_read_back_is_bounded_by_its_limit_too(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    ns.add_role("cgm-v3", ["api:entries:create", "api:entries:read", "api:entries:update"])
    token = ns.add_subject("bridge-v3", ["cgm-v3"])
    client = NightscoutV3(base_url=ns.base_url, token=token, clock=clock, pool=make_pool())
    client.existing_sgv(int(T0_S * 1000))  # gets the JWT
    ns.hostile_next(1, HostileBody("oversized", size=readback_limit(1000) + 1), path="/api/v3/entries")
    with pytest.raises(NightscoutTooLarge):
        client.existing_sgv(int(T0_S * 1000))


def test_an_upload_answer_is_held_to_the_smaller_cap(ns: NightscoutStandIn) -> None:
    client = NightscoutV1(base_url=ns.base_url, token=SECRET, pool=make_pool())
    ns.hostile_next(1, HostileBody("oversized", size=MAX_ANSWER_BYTES + 1), path="/api/v1/treatments", method="POST")
    with pytest.raises(NightscoutTooLarge, match="1 MB"):
        client.post_announcement(text="hello", at_ms=int(T0_S * 1000))


def test_a_read_back_as_large_as_its_query_allows_is_read(ns: NightscoutStandIn) -> None:
    """The cap follows what the query can return: a body just under it is read (and parsed)."""
    client = NightscoutV1(base_url=ns.base_url, token=SECRET, pool=make_pool())
    ns.hostile_next(1, HostileBody("oversized", size=readback_limit(READ_COUNT) - 1), path="/api/v1/entries")
    existing = client.existing_sgv(int(T0_S * 1000))  # an empty list padded with spaces: no entries
    assert existing.instants == ()


def test_a_dripping_nightscout_body_ends_with_the_deadline(ns: NightscoutStandIn) -> None:
    deadline = Deadline(time.monotonic, DEADLINE_S)
    client = NightscoutV1(base_url=ns.base_url, token=SECRET, pool=make_pool(), deadline=deadline)
    ns.hostile_next(1, DRIP)
    started = time.monotonic()
    with pytest.raises(NightscoutUnreachable, match="no answer in time"):
        client.existing_sgv(int(T0_S * 1000))
    assert time.monotonic() - started < ENDS_WITHIN_S


# --- send() against a raw server: what the simulators do not send -----------------------------------


class RawServer:
    """Accepts connections and answers each with `reply(connection)`: bytes written as they come."""

    def __init__(self, reply: Callable[[socket.socket, threading.Event], None]) -> None:
        self.reply = reply
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/x"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            try:
                self.reply(conn, self.stop)
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(5)


def raw(reply: Callable[[socket.socket, threading.Event], None]) -> Iterator[RawServer]:
    server = RawServer(reply)
    try:
        yield server
    finally:
        server.close()


def get(url: str, *, max_body: int = MAX_BODY_BYTES, total: float = 10.0) -> bytes:
    timeout = urllib3.Timeout(total=total, connect=3.0, read=10.0)
    return send(make_pool(), "GET", url, headers={}, body=None, timeout=timeout, max_body=max_body).data


def chunked(conn: socket.socket, stop: threading.Event) -> None:
    """An endless chunked body of spaces, no length announced."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b" " * 65536
    while not stop.is_set():
        conn.sendall(b"10000\r\n" + piece + b"\r\n")


def test_an_endless_chunked_body_stops_at_the_cap() -> None:
    for server in raw(chunked):
        with pytest.raises(TransportError) as caught:
            get(server.url, max_body=MB)
        assert caught.value.kind == "too_large"
        assert "127.0.0.1" in caught.value.detail and "1 MB" in caught.value.detail


def until_closed(conn: socket.socket, stop: threading.Event) -> None:
    """A body without Content-Length, ended by closing the connection: deflate-compressed, 8 MB."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nConnection: close\r\n\r\n")
    conn.sendall(zlib.compress(b"[" + b" " * (8 * MB) + b"]"))


def test_a_deflated_body_without_a_length_stops_at_the_cap() -> None:
    for server in raw(until_closed):
        with pytest.raises(TransportError) as caught:
            get(server.url, max_body=MB)
        assert caught.value.kind == "too_large"
        assert get(server.url, max_body=9 * MB) == b"[" + b" " * (8 * MB) + b"]"


def raw_deflate(conn: socket.socket, stop: threading.Event) -> None:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    body = compressor.compress(b'{"ok":true}') + compressor.flush()
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


def test_raw_deflate_and_gzip_are_decoded() -> None:
    for server in raw(raw_deflate):
        assert get(server.url) == b'{"ok":true}'

    def gzipped(conn: socket.socket, stop: threading.Event) -> None:
        body = gzip.compress(b'{"ok":1}')
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    for server in raw(gzipped):
        assert get(server.url) == b'{"ok":1}'


def test_an_unknown_content_encoding_is_a_decode_error() -> None:
    def brotli(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 3\r\n\r\nabc")

    for server in raw(brotli):
        with pytest.raises(TransportError) as caught:
            get(server.url)
        assert caught.value.kind == "decode"


def test_a_body_cut_short_of_its_length_is_an_error_not_a_short_answer() -> None:
    def short(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n[1,2")

    for server in raw(short):
        with pytest.raises(TransportError) as caught:
            get(server.url)
        assert caught.value.kind == "connect"


def endless_chunk_header(conn: socket.socket, stop: threading.Event) -> None:
    """A chunked body whose first chunk-size line never ends: hex digits, one every 0.2 s."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    while not stop.wait(0.2):
        conn.sendall(b"0")


def test_a_chunk_header_that_never_ends_is_cut_by_the_request_time() -> None:
    for server in raw(endless_chunk_header):
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            get(server.url, total=DEADLINE_S)
        assert caught.value.kind in ("timeout", "connect")
        assert time.monotonic() - started < ENDS_WITHIN_S


def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    def declared(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (10 * GIB))
        stop.wait(30)  # sends nothing more: only a refusal on the header can end the request in time

    for server in raw(declared):
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            get(server.url, max_body=MB, total=30)
        assert caught.value.kind == "too_large"
        assert time.monotonic() - started < ENDS_WITHIN_S


def dripping_headers(conn: socket.socket, stop: threading.Event) -> None:
    """The status line, then a header that never ends, one byte every 0.2 s: http.client reads the headers
    before the bridge sees the response, and urllib3's 10 s per-read timeout never fires."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    while not stop.wait(0.2):
        conn.sendall(b"a")


def dripping_status_line(conn: socket.socket, stop: threading.Event) -> None:
    for byte in b"HTTP/1.1 200 OK\r\n":
        if stop.wait(0.2):
            return
        conn.sendall(bytes([byte]))
    while not stop.wait(0.2):
        conn.sendall(b"X")


@pytest.mark.parametrize("reply", [dripping_headers, dripping_status_line], ids=["headers", "status-line"])
def test_headers_sent_a_byte_at_a_time_end_with_the_deadline(
    reply: Callable[[socket.socket, threading.Event], None],
) -> None:
    for server in raw(reply):
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            get(server.url, total=DEADLINE_S)
        assert caught.value.kind == "timeout"
        assert time.monotonic() - started < ENDS_WITHIN_S


def test_the_hosted_pool_bounds_dripping_headers_too() -> None:
    """The hosted worker's pool (public_pool: every address checked) keeps the deadline's watchdog."""
    from linkup_sync.addresses import SiteAddresses
    from linkup_sync.public_pool import public_only_pool

    pool = public_only_pool(SiteAddresses(allow_loopback=True))
    for server in raw(dripping_headers):
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            timeout = urllib3.Timeout(total=DEADLINE_S, connect=3.0, read=10.0)
            send(pool, "GET", server.url, headers={}, body=None, timeout=timeout)
        assert caught.value.kind == "timeout"
        assert time.monotonic() - started < ENDS_WITHIN_S


def dripping_handshake(conn: socket.socket, stop: threading.Event) -> None:
    """A TLS record header announcing 16 kB of handshake, then one byte every 0.2 s (about an hour): the
    handshake must end with the request's deadline (CPython holds a handshake to one deadline, the connect
    timeout, not each of its reads: this test keeps it so)."""
    conn.sendall(b"\x16\x03\x03\x40\x00")
    while not stop.wait(0.2):
        conn.sendall(b"\x00")


@pytest.mark.parametrize("pool", ["plain", "hosted"])
def test_a_tls_handshake_dripped_a_byte_at_a_time_ends_with_the_deadline(pool: str) -> None:
    from linkup_sync.addresses import SiteAddresses
    from linkup_sync.public_pool import public_only_pool

    manager = make_pool() if pool == "plain" else public_only_pool(SiteAddresses(allow_loopback=True))
    for server in raw(dripping_handshake):
        url = server.url.replace("http://", "https://")
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            timeout = urllib3.Timeout(total=DEADLINE_S, connect=3.0, read=10.0)
            send(manager, "GET", url, headers={}, body=None, timeout=timeout)
        assert caught.value.kind == "timeout"
        assert time.monotonic() - started < ENDS_WITHIN_S
