"""One request through a bounded pool, with its failures reduced to a few safe kinds (TransportError)."""

from __future__ import annotations

import contextlib
import http.client
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import urllib3
from urllib3 import exceptions as _ux

from .http import (
    DEFAULT_READ_TIMEOUT,
    DEFAULT_REQUEST_LIMIT_S,
    MAX_BODY_BYTES,
    AddressNotAllowed,
    HttpResult,
    TransportError,
    timed_out,
)
from .http_body import read_body
from .http_watchdog import REQUEST_END


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
    ending = REQUEST_END.set(end)
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
        REQUEST_END.reset(ending)
    status = int(resp.status)
    hdrs = {str(k).lower(): str(v) for k, v in resp.headers.items()}
    read_timeout = timeout.read_timeout if isinstance(timeout.read_timeout, int | float) else DEFAULT_READ_TIMEOUT
    complete = False
    try:
        if method.upper() == "HEAD":  # no body, whatever Content-Length says
            data = b""
        else:
            data = read_body(resp, hdrs, host=host, limit=max_body, end=end, read_timeout=read_timeout)
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


def _late(end: float) -> TransportError | None:
    """A failure after the request's deadline is the deadline's doing (the watchdog shut the socket)."""
    return timed_out() if time.monotonic() >= end else None


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
        return timed_out()
    if isinstance(exc, _ux.SSLError):
        return TransportError("tls", "the TLS certificate could not be verified or the TLS handshake failed")
    if isinstance(exc, _ux.DecodeError):
        return TransportError("decode", "the compressed response could not be decoded")
    return TransportError("connect", "the connection failed or was closed")
