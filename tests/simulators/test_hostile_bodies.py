"""The simulators' hostile bodies are what they claim: a real 1 GiB gzip bomb of about 1 MB, a body of the
declared size, a drip that stops by itself; generated on the fly, and answered only to matching requests."""

from __future__ import annotations

import http.client
import threading
import time
import zlib

import pytest
from tools.simulators.clock import VirtualClock
from tools.simulators.hostile_bodies import GIB, HostileBody, HostileQueue
from tools.simulators.librelinkup import LinkUpSimulator
from tools.simulators.nightscout import NightscoutStandIn

MB = 1024 * 1024


class Sink:
    def __init__(self) -> None:
        self.size = 0
        self.inflated = 0
        self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def write(self, data: bytes, /) -> int:
        self.size += len(data)
        self.inflated += len(self.inflate.decompress(data))
        return len(data)

    def flush(self) -> None:
        return None


def test_the_gzip_bomb_is_valid_gzip_of_1_gib_in_about_1_mb() -> None:
    bomb = HostileBody("gzip_bomb", size=GIB)
    sink = Sink()
    bomb.write(sink, threading.Event())
    assert sink.size == bomb.content_length() and 0.5 * MB < sink.size < 1.5 * MB
    assert sink.inflated == GIB
    assert sink.inflate.eof  # the CRC-32 and length of the trailer checked out (zlib raises otherwise)


def test_an_oversized_body_has_its_declared_size_and_is_json() -> None:
    body = HostileBody("oversized", size=3 * MB)
    chunks: list[bytes] = []

    class Keep:
        def write(self, data: bytes, /) -> None:
            chunks.append(bytes(data))

        def flush(self) -> None:
            return None

    body.write(Keep(), threading.Event())
    whole = b"".join(chunks)
    assert len(whole) == 3 * MB == int(dict(body.headers())["Content-Length"])
    assert max(len(c) for c in chunks) <= 64 * 1024  # written a piece at a time, never held whole
    assert whole.startswith(b"[ ") and whole.endswith(b" ]") and not whole.strip(b"[ ]")


def test_a_drip_stops_by_itself_after_its_time() -> None:
    drip = HostileBody("drip", size=1_000_000, interval_s=0.05, max_s=0.5)
    sink: list[bytes] = []

    class Keep:
        def write(self, data: bytes, /) -> None:
            sink.append(bytes(data))

        def flush(self) -> None:
            return None

    started = time.monotonic()
    drip.write(Keep(), threading.Event())
    assert time.monotonic() - started < 10
    assert all(len(piece) == 1 for piece in sink) and 2 <= len(sink) < 1_000


def test_unknown_kinds_and_partial_bombs_are_refused() -> None:
    with pytest.raises(ValueError):
        HostileBody("slowloris")
    with pytest.raises(ValueError):
        HostileBody("gzip_bomb", size=GIB + 1)


def test_the_queue_answers_only_matching_requests_and_only_count_times() -> None:
    queue = HostileQueue()
    body = HostileBody("oversized", size=10)
    queue.add(2, body, path="/api/v1/entries", method="get")
    assert queue.take("/api/v1/treatments", "GET") is None
    assert queue.take("/api/v1/entries", "POST") is None
    assert queue.take("/api/v1/entries/sgv.json", "GET") is body
    assert queue.take("/api/v1/entries", "GET") is body
    assert queue.take("/api/v1/entries", "GET") is None


def test_the_nightscout_stand_in_drips_until_stopped() -> None:
    ns = NightscoutStandIn(VirtualClock(0)).start()
    ns.hostile_next(1, HostileBody("drip", size=1_000_000, interval_s=0.05), path="/api/v1/status")
    connection = http.client.HTTPConnection("127.0.0.1", ns.port, timeout=10)
    connection.request("GET", "/api/v1/status.json")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Length") == "1000000"
    assert response.read1(1) == b"["
    threading.Timer(0.3, ns.stop).start()  # stop() ends the drip: the connection closes early
    started = time.monotonic()
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    assert time.monotonic() - started < 10
    assert [r.fault for r in ns.requests] == ["hostile_drip"]


def test_the_librelinkup_simulator_sends_the_bomb_on_the_path_asked() -> None:
    sim = LinkUpSimulator(VirtualClock(0)).start()
    try:
        sim.hostile_next(1, HostileBody("gzip_bomb", size=64 * MB), path="/llu/auth/login")
        connection = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
        connection.request("POST", "/eu/llu/auth/login", body=b"{}")
        response = connection.getresponse()
        assert response.getheader("Content-Encoding") == "gzip"
        sink = Sink()
        sink.write(response.read())
        assert sink.inflated == 64 * MB
        assert [(r.path, r.fault) for r in sim.requests] == [("/llu/auth/login", "hostile_gzip_bomb")]
    finally:
        sim.stop()
