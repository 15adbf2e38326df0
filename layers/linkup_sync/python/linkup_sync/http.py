"""Shared HTTP transport bits for the LibreLink Up and Nightscout adapters.

Only stdlib + urllib3 (works with urllib3 1.26 and 2.x). TLS verification is always on: there is no
switch to turn it off. Plain http is allowed only to loopback hosts (local simulators and tests).

Every reply is untrusted: its body is read in chunks, decoded here with a cap on the decoded size (a
gzip bomb stops at the cap, not at the end of its inflation), and the whole request, body included,
ends by the time its timeout's `total` allows (docs/limits.md).
"""

from __future__ import annotations

import contextlib
import contextvars
import http.client
import ipaddress
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3 import exceptions as _ux
from urllib3.connection import HTTPConnection, HTTPSConnection

DEFAULT_CONNECT_TIMEOUT = 3.05
DEFAULT_READ_TIMEOUT = 10.0
# A request made without a run's deadline (the command line's checks) still ends within this many seconds.
DEFAULT_REQUEST_LIMIT_S = 30.0
# The most of a reply's body this bridge reads, decoded, unless the caller names its own cap.
MAX_BODY_BYTES = 4 * 1024 * 1024
_CHUNK_BYTES = 64 * 1024


# The monotonic time by which the request under way in this thread must be over (set by `send`): the
# connection classes below hold the status line and headers to it, _read_body the body.
_REQUEST_END: contextvars.ContextVar[float | None] = contextvars.ContextVar("linkup_sync_request_end", default=None)


def _headers_by_deadline(sock: object, getresponse: Callable[[], Any]) -> Any:
    """http.client reads the status line and headers before the bridge sees the response; a server that
    sends them a byte at a time, each just within the socket timeout, would hold the run past its deadline."""
    end = _REQUEST_END.get()
    if end is None or not isinstance(sock, socket.socket):
        return getresponse()
    with _shut_at(sock, end):
        return getresponse()


class BoundedHTTPConnection(HTTPConnection):
    """urllib3's connection, its response headers bounded by the request's deadline (the connect by the
    connect timeout, a TLS handshake as a whole by it too: CPython's handshake keeps one deadline)."""

    def getresponse(self) -> Any:
        return _headers_by_deadline(getattr(self, "sock", None), super().getresponse)


class BoundedHTTPSConnection(HTTPSConnection):
    """urllib3's TLS connection, its response headers bounded by the request's deadline."""

    def getresponse(self) -> Any:
        return _headers_by_deadline(getattr(self, "sock", None), super().getresponse)


class BoundedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = BoundedHTTPConnection


class BoundedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = BoundedHTTPSConnection


def make_pool(num_pools: int = 4, maxsize: int = 2) -> urllib3.PoolManager:
    """A PoolManager that always verifies certificates (certifi's CAs if installed, else the system's).

    Create it once per Lambda container and reuse it across warm invocations.
    """
    kwargs: dict[str, object] = {}
    try:
        import certifi  # lazy: only needed when a pool is made

        kwargs["ca_certs"] = certifi.where()
    except ImportError:  # pragma: no cover - certifi ships with the Lambda runtime and our venv
        import ssl

        kwargs["ssl_context"] = ssl.create_default_context()
    pool = urllib3.PoolManager(
        num_pools=num_pools,
        maxsize=maxsize,
        cert_reqs="CERT_REQUIRED",
        retries=False,
        **kwargs,  # type: ignore[arg-type]
    )
    pool.pool_classes_by_scheme = {"http": BoundedHTTPPool, "https": BoundedHTTPSPool}
    return pool


class Deadline:
    """The time left for this run; every request's timeout is capped by it."""

    def __init__(self, clock: Callable[[], float], seconds: float) -> None:
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        return self._end - self._clock()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def timeout(
        self,
        connect: float = DEFAULT_CONNECT_TIMEOUT,
        read: float = DEFAULT_READ_TIMEOUT,
        *,
        error: BaseException | None = None,
    ) -> urllib3.Timeout:
        """A urllib3.Timeout no longer than the time left. Raises `error` when no time is left."""
        left = self.remaining()
        if left <= 0:
            raise error if error is not None else TimeoutError("the run's time budget is used up")
        return urllib3.Timeout(total=left, connect=min(connect, left), read=min(read, left))

    def __repr__(self) -> str:
        return f"Deadline(remaining={self.remaining():.2f})"


_LOOPBACK_NAMES = {"localhost", "localhost."}


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_PRIVATE_SUFFIXES = (".local", ".lan", ".home", ".home.arpa", ".internal", ".localdomain")


def is_private_host(host: str | None) -> bool:
    """True for a host on a home network: a private or link-local IP address, a single-label name such as
    docker-compose's `nightscout`, or a name under .local/.lan/.home.arpa/.internal. Loopback included."""
    if not host:
        return False
    host = host.strip("[]").lower().rstrip(".")
    if is_loopback_host(host):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "." not in host or host.endswith(_PRIVATE_SUFFIXES)
    return address.is_private or address.is_link_local


def check_url_scheme(url: str, *, name: str = "The URL") -> None:
    """Raise ValueError unless `url` is https, or http to a loopback host (127.0.0.0/8, ::1, localhost)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "https":
        return
    if scheme == "http":
        if is_loopback_host(parts.hostname):
            return
        raise ValueError(
            f"{name} starts with http://, which would send secrets unencrypted over the internet. "
            "Use the https:// address of the site (plain http is allowed only for 127.0.0.1/localhost)."
        )
    raise ValueError(f"{name} must start with https:// (found {scheme + '://' if scheme else 'no scheme'}).")


# --- one request, with failures reduced to a few safe kinds -------------------------------------------


class AddressNotAllowed(_ux.NewConnectionError):
    """The pool refused to open a connection: the host is, or resolves to, an address it may not reach
    (linkup_sync.public_pool, the hosted stack's). `detail` names the cause and the fix, never the URL."""

    def __init__(self, conn: object, detail: str) -> None:
        super().__init__(conn, detail)  # type: ignore[arg-type]
        self.detail = detail


class TransportError(Exception):
    """A request did not produce a usable response. `kind` is one of timeout, dns, tls, connect, decode,
    address, too_large.

    The message never contains a URL, header or body (too_large names the host and the limit): adapters
    map it to their own typed errors.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class HttpResult:
    status: int
    headers: Mapping[str, str] = field(repr=False)  # lower-case names
    data: bytes = field(repr=False)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def size_text(limit: int) -> str:
    """A byte count as people read it: 4 MB, 2.1 MB, 512 kB."""
    if limit >= 1024 * 1024:
        return f"{limit / (1024 * 1024):.1f}".removesuffix(".0") + " MB"
    return f"{max(1, round(limit / 1024))} kB"


def too_large(host: str, limit: int) -> TransportError:
    return TransportError(
        "too_large",
        f"the answer of {host or 'the server'} is larger than {size_text(limit)}, the most the bridge reads",
    )


def send(
    pool: urllib3.PoolManager,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | None,
    timeout: urllib3.Timeout,
    max_body: int = MAX_BODY_BYTES,
) -> HttpResult:
    """One request: no retries, no redirects, the body read in chunks and decoded here.

    The whole request ends within `timeout.total` seconds (DEFAULT_REQUEST_LIMIT_S without one): connect
    and headers by urllib3's timeouts, the body by this function however slowly it arrives. A body whose
    decoded size would pass `max_body` is a TransportError("too_large") and nothing of it is kept.
    """
    budget = timeout.total if isinstance(timeout.total, int | float) else DEFAULT_REQUEST_LIMIT_S
    end = time.monotonic() + budget
    host = urlsplit(url).hostname or ""
    ending = _REQUEST_END.set(end)
    try:
        resp = pool.request(
            method,
            url,
            body=body,
            headers=dict(headers),
            timeout=timeout,
            retries=False,
            redirect=False,
            preload_content=False,
            decode_content=False,
        )
    except _ux.MaxRetryError as exc:  # not expected with retries=False; unwrap defensively
        raise _late(end) or _transport_error(exc.reason) from None
    except (_ux.HTTPError, http.client.HTTPException, OSError, ValueError) as exc:
        # ValueError: a TLS socket the watchdog shut while a read was starting
        raise _late(end) or _transport_error(exc) from None
    finally:
        _REQUEST_END.reset(ending)
    status = int(resp.status)
    hdrs = {str(k).lower(): str(v) for k, v in resp.headers.items()}
    read_timeout = timeout.read_timeout if isinstance(timeout.read_timeout, int | float) else DEFAULT_READ_TIMEOUT
    complete = False
    try:
        if method.upper() == "HEAD":  # no body, whatever Content-Length says
            data = b""
            complete = True
        else:
            data = _read_body(resp, hdrs, host=host, limit=max_body, end=end, read_timeout=read_timeout)
            complete = True
    except (_ux.HTTPError, http.client.HTTPException, OSError, ValueError) as exc:
        raise _late(end) or _transport_error(exc) from None
    finally:
        if not complete:  # a hostile or broken connection is never reused
            with contextlib.suppress(Exception):
                resp.close()
        with contextlib.suppress(Exception):
            resp.release_conn()
    return HttpResult(status=status, headers=hdrs, data=data)


def _read_body(
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
    with _shut_at(sock, end) as expired:
        received = 0
        while True:
            left = end - time.monotonic()
            if left <= 0 or expired.is_set():
                raise TransportError("timeout", "no answer in time")
            if sock is not None:
                sock.settimeout(min(read_timeout, left))
            chunk = raw.read1(_CHUNK_BYTES)
            if expired.is_set():
                raise TransportError("timeout", "no answer in time")
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


def _late(end: float) -> TransportError | None:
    """A failure after the request's deadline is the deadline's doing (the watchdog shut the socket)."""
    return TransportError("timeout", "no answer in time") if time.monotonic() >= end else None


@contextlib.contextmanager
def _shut_at(sock: socket.socket | Callable[[], socket.socket | None] | None, end: float) -> Iterator[threading.Event]:
    """A watchdog that shuts `sock` (or the socket a callable gives then) at monotonic time `end`; the
    event tells that it did."""
    expired = threading.Event()
    watchdog = threading.Timer(max(0.0, end - time.monotonic()), _shut, (sock, expired))
    watchdog.daemon = True
    watchdog.start()
    try:
        yield expired
    finally:
        watchdog.cancel()


def _shut(sock: socket.socket | None, expired: threading.Event) -> None:
    """The deadline passed: a blocked read returns at once (the connection is not reused).

    socket.socket.shutdown, not the TLS socket's own: that one also drops its TLS object, which a read
    starting in the run's thread at that moment would meet as an AttributeError instead of an OSError."""
    expired.set()
    if sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


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


def _transport_error(exc: BaseException | None) -> TransportError:
    # Order matters: NewConnectionError subclasses ConnectTimeoutError (a TimeoutError) in urllib3.
    if isinstance(exc, AddressNotAllowed):
        return TransportError("address", exc.detail)
    name_resolution = getattr(_ux, "NameResolutionError", None)
    if name_resolution is not None and isinstance(exc, name_resolution):
        return TransportError("dns", "the host name could not be resolved")
    if isinstance(exc, _ux.NewConnectionError):
        if "Name or service not known" in str(exc) or "getaddrinfo" in str(exc):
            return TransportError("dns", "the host name could not be resolved")
        return TransportError("connect", "the connection was refused or failed")
    if isinstance(exc, _ux.TimeoutError | TimeoutError):
        return TransportError("timeout", "no answer in time")
    if isinstance(exc, _ux.SSLError):
        return TransportError("tls", "the TLS certificate could not be verified or the TLS handshake failed")
    if isinstance(exc, _ux.DecodeError):
        return TransportError("decode", "the compressed response could not be decoded")
    return TransportError("connect", "the connection failed or was closed")
