"""Shared HTTP transport bits for the LibreLink Up and Nightscout adapters.

Only stdlib + urllib3 (works with urllib3 1.26 and 2.x). TLS verification is always on: there is no
switch to turn it off. Plain http is allowed only to loopback hosts (local simulators and tests).
"""

from __future__ import annotations

import http.client
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import urllib3
from urllib3 import exceptions as _ux

DEFAULT_CONNECT_TIMEOUT = 3.05
DEFAULT_READ_TIMEOUT = 10.0


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
    return urllib3.PoolManager(
        num_pools=num_pools,
        maxsize=maxsize,
        cert_reqs="CERT_REQUIRED",
        retries=False,
        **kwargs,  # type: ignore[arg-type]
    )


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
    """A request did not produce a response. `kind` is one of timeout, dns, tls, connect, decode, address.

    The message never contains a URL, header or body: adapters map it to their own typed errors.
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


def send(
    pool: urllib3.PoolManager,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | None,
    timeout: urllib3.Timeout,
) -> HttpResult:
    """One request: no retries, no redirects, body preloaded and gzip-decoded."""
    try:
        resp = pool.request(
            method,
            url,
            body=body,
            headers=dict(headers),
            timeout=timeout,
            retries=False,
            redirect=False,
            preload_content=True,
        )
        data = resp.data or b""
        status = int(resp.status)
        hdrs = {str(k).lower(): str(v) for k, v in resp.headers.items()}
    except _ux.MaxRetryError as exc:  # not expected with retries=False; unwrap defensively
        raise _transport_error(exc.reason) from None
    except (_ux.HTTPError, http.client.HTTPException, OSError) as exc:
        raise _transport_error(exc) from None
    return HttpResult(status=status, headers=hdrs, data=data)


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
