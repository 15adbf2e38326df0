"""The request's deadline, held by a watchdog: a server that sends its headers or its body a byte at a time,
each within the socket timeout, cannot hold a run past the time its request may take.

`send` (http_request.py) sets REQUEST_END for the request under way in its thread; the pool's connections
(http.py) hold the status line and headers to it, the body reading (http_body.py) the body.
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

# The monotonic time by which the request under way in this thread must be over (set by `send`): the
# pool's connection classes hold the status line and headers to it, read_body the body.
REQUEST_END: contextvars.ContextVar[float | None] = contextvars.ContextVar("linkup_sync_request_end", default=None)


def headers_by_deadline(sock: object, getresponse: Callable[[], Any]) -> Any:
    """http.client reads the status line and headers before the bridge sees the response; a server that
    sends them a byte at a time, each just within the socket timeout, would hold the run past its deadline."""
    end = REQUEST_END.get()
    if end is None or not isinstance(sock, socket.socket):
        return getresponse()
    with shut_at(sock, end):
        return getresponse()


@contextlib.contextmanager
def shut_at(sock: socket.socket | None, end: float) -> Iterator[threading.Event]:
    """A watchdog that shuts `sock` at monotonic time `end`; the event tells that it did."""
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
