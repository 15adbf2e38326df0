"""Hostile reply bodies both simulators can answer with: too large, a gzip bomb, a body dripped slowly.

Each is generated while it is written, never held whole in memory or stored on disk:

* ``oversized``: an empty JSON list padded with spaces to ``size`` bytes, Content-Length set.
* ``gzip_bomb``: about 1 MB of gzip (``Content-Encoding: gzip``) that inflates to ``size`` bytes of
  spaces, 1 GiB by default. Full-flushed blocks of 1 MiB each compress to the same few hundred bytes, so
  the stream is one block repeated, with the CRC-32 and length a real gzip file carries.
* ``drip``: ``size`` bytes declared, then one byte every ``interval_s`` REAL seconds. It stops by itself
  after ``max_s`` real seconds, when the client goes away, or when the simulator stops.
"""

from __future__ import annotations

import functools
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Protocol

GIB = 1024 * 1024 * 1024
_BLOCK = 1024 * 1024  # bytes of spaces per full-flushed deflate block of the bomb
_WRITE = 64 * 1024
MAX_DRIP_S = 120.0  # a dripping body ends after this many real seconds at the latest
KINDS = ("oversized", "gzip_bomb", "drip")


class Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> object: ...


@dataclass(frozen=True)
class HostileBody:
    kind: str
    size: int = GIB
    interval_s: float = 1.0
    max_s: float = MAX_DRIP_S

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        if self.kind == "gzip_bomb" and self.size % _BLOCK:
            raise ValueError("a gzip bomb inflates to a whole number of MiB")

    @property
    def label(self) -> str:
        return f"hostile_{self.kind}"

    def headers(self) -> list[tuple[str, str]]:
        found = [("Content-Type", "application/json; charset=utf-8")]
        if self.kind == "gzip_bomb":
            found.append(("Content-Encoding", "gzip"))
        found.append(("Content-Length", str(self.content_length())))
        return found

    def content_length(self) -> int:
        if self.kind == "gzip_bomb":
            head, block, tail = _bomb_parts(self.size)
            return len(head) + block_count(self.size) * len(block) + len(tail)
        return self.size

    def write(self, out: Writable, stop: threading.Event) -> None:
        """The body onto `out`; returns when it is written, the client went away, or `stop` is set."""
        try:
            if self.kind == "oversized":
                _write_oversized(out, self.size, stop)
            elif self.kind == "gzip_bomb":
                _write_bomb(out, self.size, stop)
            else:
                _drip(out, self.size, self.interval_s, min(self.max_s, MAX_DRIP_S), stop)
        except OSError:  # the client closed the connection: what a bounded client does
            return


def block_count(size: int) -> int:
    return size // _BLOCK


def _write_oversized(out: Writable, size: int, stop: threading.Event) -> None:
    head, tail = b"[", b"]"
    out.write(head)
    left = size - len(head) - len(tail)
    spaces = b" " * _WRITE
    while left > 0 and not stop.is_set():
        piece = spaces[: min(left, _WRITE)]
        out.write(piece)
        left -= len(piece)
    out.write(tail)
    out.flush()


def _write_bomb(out: Writable, size: int, stop: threading.Event) -> None:
    head, block, tail = _bomb_parts(size)
    out.write(head)
    for _ in range(block_count(size)):
        if stop.is_set():
            return
        out.write(block)
    out.write(tail)
    out.flush()


@functools.lru_cache(maxsize=4)
def _bomb_parts(size: int) -> tuple[bytes, bytes, bytes]:
    """The gzip header, the one repeated block, and the end (final empty block, CRC-32, length)."""
    spaces = b" " * _BLOCK
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    first = compressor.compress(spaces) + compressor.flush(zlib.Z_FULL_FLUSH)
    second = compressor.compress(spaces) + compressor.flush(zlib.Z_FULL_FLUSH)
    header = first[: len(first) - len(second)]
    assert first.endswith(second), "full-flushed blocks of the same input compress alike"
    crc = 0
    for _ in range(block_count(size)):
        crc = zlib.crc32(spaces, crc)
    # a final, empty fixed-Huffman block (3 bits, padded to bytes), then the gzip trailer
    tail = b"\x03\x00" + struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)
    return header, second, tail


def _drip(out: Writable, size: int, interval_s: float, max_s: float, stop: threading.Event) -> None:
    end = time.monotonic() + max_s
    out.write(b"[")
    out.flush()
    sent = 1
    while sent < size and time.monotonic() < end:
        if stop.wait(interval_s):
            return
        out.write(b" ")
        out.flush()
        sent += 1


@dataclass
class _Queued:
    count: int
    body: HostileBody
    path: str | None
    method: str | None


class HostileQueue:
    """The hostile replies a simulator owes: the next ``count`` requests matching a path prefix (and a
    method) get ``body``. Thread-safe; first queued, first served."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queued: list[_Queued] = []

    def add(self, count: int, body: HostileBody, *, path: str | None = None, method: str | None = None) -> None:
        with self._lock:
            self._queued.append(_Queued(count, body, path, method.upper() if method else None))

    def clear(self) -> None:
        with self._lock:
            self._queued.clear()

    def take(self, path: str, method: str) -> HostileBody | None:
        with self._lock:
            for queued in self._queued:
                if queued.path is not None and not path.startswith(queued.path):
                    continue
                if queued.method is not None and queued.method != method.upper():
                    continue
                queued.count -= 1
                if queued.count <= 0:
                    self._queued.remove(queued)
                return queued.body
        return None


def serve(handler: BaseHTTPRequestHandler, body: HostileBody, stop: threading.Event) -> None:
    """Answer 200 with `body` on `handler`'s connection, then close it."""
    handler.close_connection = True
    try:
        handler.send_response(200)
        for name, value in body.headers():
            handler.send_header(name, value)
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.flush()
    except OSError:
        return
    body.write(handler.wfile, stop)
