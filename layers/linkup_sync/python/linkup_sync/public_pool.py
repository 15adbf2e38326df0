"""The hosted worker's HTTP pool: it connects only to addresses the hosted rule (linkup_sync.addresses) allows.

Each new connection resolves its host once, checks every address the answer holds and connects only to a
checked one, so a name whose DNS answer changes after an account was added (or between two lookups, as a
rebinding attack does) still never reaches an address inside. TLS still verifies the certificate against
the host name: only the socket's peer is chosen here. Redirects are never followed (http.send).
"""

from __future__ import annotations

import socket

import urllib3
from urllib3 import exceptions as _ux
from urllib3.connection import HTTPConnection
from urllib3.util import connection as _sockets

from .addresses import AddressRefused, SiteAddresses
from .http import AddressNotAllowed, BoundedHTTPConnection, BoundedHTTPSConnection, make_pool


def _open(conn: HTTPConnection, addresses: SiteAddresses, *, tls: bool) -> socket.socket:
    """What urllib3's HTTPConnection._new_conn does, with every address checked before connecting."""
    host = str(getattr(conn, "_dns_host", conn.host))
    port = int(conn.port or (443 if tls else 80))
    try:
        targets = addresses.connectable(host, port, tls=tls)
    except AddressRefused as exc:
        raise AddressNotAllowed(conn, exc.message) from None
    except (OSError, UnicodeError) as exc:  # the name does not resolve
        raise _ux.NewConnectionError(conn, f"getaddrinfo failed: {type(exc).__name__}") from None
    error: OSError | None = None
    for address in targets:
        try:
            return _sockets.create_connection(
                (address, port), conn.timeout, source_address=conn.source_address, socket_options=conn.socket_options
            )
        except OSError as exc:  # this address does not answer: the next one may
            error = exc
    if isinstance(error, TimeoutError):
        raise _ux.ConnectTimeoutError(conn, f"Connection timed out (connect timeout={conn.timeout})")
    raise _ux.NewConnectionError(conn, f"Failed to establish a new connection: {type(error).__name__}")


def guard_pool(pool: urllib3.PoolManager, addresses: SiteAddresses) -> urllib3.PoolManager:
    """Make `pool` open every new connection through `addresses` (its open connections are dropped)."""

    class CheckedHTTPConnection(BoundedHTTPConnection):
        def _new_conn(self) -> socket.socket:
            return _open(self, addresses, tls=False)

    class CheckedHTTPSConnection(BoundedHTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return _open(self, addresses, tls=True)

    class CheckedHTTPPool(urllib3.HTTPConnectionPool):
        ConnectionCls = CheckedHTTPConnection

    class CheckedHTTPSPool(urllib3.HTTPSConnectionPool):
        ConnectionCls = CheckedHTTPSConnection

    pool.clear()
    pool.pool_classes_by_scheme = {"http": CheckedHTTPPool, "https": CheckedHTTPSPool}
    return pool


def public_only_pool(addresses: SiteAddresses, *, num_pools: int = 4, maxsize: int = 2) -> urllib3.PoolManager:
    """make_pool's verifying PoolManager, reaching only the addresses `addresses` allows."""
    return guard_pool(make_pool(num_pools=num_pools, maxsize=maxsize), addresses)
