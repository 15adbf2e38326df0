"""A reply's body, bounded: read in chunks by the request's deadline, decoded here (gzip or deflate) with a
cap on the decoded size, so a gzip bomb stops at the cap, not at the end of its inflation."""

from __future__ import annotations

import socket
import time
import zlib
from collections.abc import Mapping
from typing import Any

import urllib3

from .http import TransportError, timed_out, too_large
from .http_watchdog import shut_at

_CHUNK_BYTES = 64 * 1024


def read_body(
    resp: urllib3.BaseHTTPResponse,
    headers: Mapping[str, str],
    *,
    host: str,
    limit: int,
    end: float,
    read_timeout: float,
) -> bytes:
    """The body, decoded, at most `limit` bytes, by monotonic time `end`.

    Reads go straight to the http.client response with read1 (one socket read each), every read's socket
    timeout is the time left, and a watchdog shuts the socket at `end`: a body sent a byte at a time, or
    a chunked body whose chunk header never ends, cannot hold the run past its deadline.
    """
    declared = headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise too_large(host, limit)
    decoder = _Decoder(headers.get("content-encoding", ""), host=host, limit=limit)
    raw: Any = getattr(resp, "_fp", None)  # http.client.HTTPResponse in urllib3 1.26 and 2.x alike
    if raw is None:  # pragma: no cover - a response without a body stream (never seen from urllib3)
        decoder.feed(resp.read(limit + 1, decode_content=False))
        return decoder.finish()
    sock = _socket_of(resp)
    with shut_at(sock, end) as expired:
        received = 0
        while True:
            left = end - time.monotonic()
            if left <= 0 or expired.is_set():
                raise timed_out()
            if sock is not None:
                sock.settimeout(min(read_timeout, left))
            chunk = raw.read1(_CHUNK_BYTES)
            if expired.is_set():
                raise timed_out()
            if not chunk:
                break
            received += len(chunk)
            if received > limit:
                raise too_large(host, limit)
            decoder.feed(chunk)
    if getattr(raw, "length", None):  # the connection ended before the declared Content-Length
        raise TransportError("connect", "the connection was closed before the whole answer arrived")
    return decoder.finish()


def _socket_of(resp: urllib3.BaseHTTPResponse) -> socket.socket | None:
    connection = getattr(resp, "connection", None) or getattr(resp, "_connection", None)
    sock = getattr(connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


class _Decoder:
    """Content-Encoding gzip, deflate or none, never inflating past `limit` bytes."""

    def __init__(self, encoding: str, *, host: str, limit: int) -> None:
        self.host = host
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.encoding = encoding.strip().lower()
        self._inflate: Any = None
        if self.encoding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.encoding not in ("", "identity", "deflate"):
            raise TransportError(
                "decode", f"the answer is compressed as {self.encoding[:20]!r}, which this bridge does not read"
            )

    def feed(self, data: bytes) -> None:
        if self.encoding == "deflate" and self._inflate is None:
            # RFC 9110 says zlib-wrapped, some servers send raw deflate: the first byte tells them apart
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS if data[:1] == b"\x78" else -zlib.MAX_WBITS)
        if self._inflate is None:
            self._add(data)
            return
        if self._inflate.eof:  # anything after the end of the compressed stream is ignored
            return
        room = self.limit - self.size + 1
        try:
            out = self._inflate.decompress(data, room)
        except zlib.error:
            raise TransportError("decode", "the compressed response could not be decoded") from None
        self._add(out)  # output stops at `room`: one byte past the limit is enough to know

    def _add(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            self.parts.clear()
            raise too_large(self.host, self.limit)
        if data:
            self.parts.append(data)

    def finish(self) -> bytes:
        if self._inflate is not None and not self._inflate.eof:
            try:
                self._add(self._inflate.flush())
            except zlib.error:
                raise TransportError("decode", "the compressed response could not be decoded") from None
        return b"".join(self.parts)
