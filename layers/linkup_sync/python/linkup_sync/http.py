"""Shared HTTP transport bits for the LibreLink Up and Nightscout adapters.

Only stdlib + urllib3 (works with urllib3 1.26 and 2.x). TLS verification is always on: there is no
switch to turn it off. Plain http is allowed only to loopback hosts (local simulators and tests).

Every reply is untrusted: its body is read in chunks, decoded with a cap on the decoded size (a gzip
bomb stops at the cap, not at the end of its inflation), and the whole request, body included, ends by
the time its timeout's `total` allows (docs/limits.md).

Here: the pools, the run's Deadline, the URL checks and what a request gives back (HttpResult,
TransportError). One request is `http_request.send`; its body is read by http_body.py, its deadline
held by http_watchdog.py.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3 import exceptions as _ux
from urllib3.connection import HTTPConnection, HTTPSConnection

from .http_watchdog import headers_by_deadline

DEFAULT_CONNECT_TIMEOUT = 3.05
DEFAULT_READ_TIMEOUT = 10.0
# A request made without a run's deadline (the command line's checks) still ends within this many seconds.
DEFAULT_REQUEST_LIMIT_S = 30.0
# The most of a reply's body this bridge reads, decoded, unless the caller names its own cap.
MAX_BODY_BYTES = 4 * 1024 * 1024


class BoundedHTTPConnection(HTTPConnection):
    """urllib3's connection, its response headers bounded by the request's deadline (the connect by the
    connect timeout, a TLS handshake as a whole by it too: CPython's handshake keeps one deadline)."""

    def getresponse(self) -> Any:
        return headers_by_deadline(getattr(self, "sock", None), super().getresponse)


class BoundedHTTPSConnection(HTTPSConnection):
    """urllib3's TLS connection, its response headers bounded by the request's deadline."""

    def getresponse(self) -> Any:
        return headers_by_deadline(getattr(self, "sock", None), super().getresponse)


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


def request_timeout(deadline: Deadline | None, *, expired: BaseException) -> urllib3.Timeout:
    """One request's timeout: within the run's `deadline` (raising `expired` when no time is left), or,
    without a run, the default connect and read timeouts and DEFAULT_REQUEST_LIMIT_S in all."""
    if deadline is not None:
        return deadline.timeout(error=expired)
    return urllib3.Timeout(total=DEFAULT_REQUEST_LIMIT_S, connect=DEFAULT_CONNECT_TIMEOUT, read=DEFAULT_READ_TIMEOUT)


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


# --- what one request gives back (http_request.send) -------------------------------------------------


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


def timed_out() -> TransportError:
    """The request, its body included, did not end by its deadline."""
    return TransportError("timeout", "no answer in time")


def too_large(host: str, limit: int) -> TransportError:
    return TransportError(
        "too_large",
        f"the answer of {host or 'the server'} is larger than {size_text(limit)}, the most the bridge reads",
    )
