"""The lifecycle both simulators share: one ``ThreadingHTTPServer`` on 127.0.0.1 (a free port) served by a
daemon thread, and a stop that also releases waiting handlers and idle keep-alive connections."""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar, Self


class LoopbackServer:
    """Base of the simulators. Use as a context manager or call :meth:`start` / :meth:`stop`.

    A subclass names its serving thread in `_thread_name` and builds its request handler class in
    :meth:`_handler`, whose ``setup`` calls :meth:`_connection_opened` and ``finish``
    :meth:`_connection_closed`. Real-time waits in handlers use `_stop_event`, which :meth:`stop` sets.
    """

    _thread_name: ClassVar[str]

    def __init__(self) -> None:
        self.base_url = ""
        self.port = 0
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._open_sockets: set[socket.socket] = set()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stop_event.clear()
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self.port = int(server.server_address[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=self._thread_name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stop_event.set()  # releases hanging requests and every real-time hold
        server.shutdown()
        server.server_close()
        with self._lock:
            socks = list(self._open_sockets)
        for s in socks:  # wake handler threads blocked on idle keep-alive connections
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _connection_opened(self, connection: socket.socket) -> None:
        """From a handler's ``setup``: answer at once and remember the connection for :meth:`stop`."""
        # headers and body go out in two writes: without this every reply waits ~40 ms for the
        # client's delayed ACK
        with contextlib.suppress(OSError):
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._open_sockets.add(connection)

    def _connection_closed(self, connection: socket.socket) -> None:
        """From a handler's ``finish``."""
        with self._lock:
            self._open_sockets.discard(connection)
