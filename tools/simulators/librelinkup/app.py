"""The LibreLink Up simulator itself: state, request log, dispatch and the HTTP handler.

Ties the concerns together (accounts, faults, routes), each in its own module (``docs/librelinkup-api.md`` §15).
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from tools.simulators.clock import VirtualClock
from tools.simulators.hostile_bodies import HostileQueue, serve
from tools.simulators.librelinkup.accounts import SimAccount
from tools.simulators.librelinkup.constants import _REASONS, MAX_BODY, REGIONS
from tools.simulators.librelinkup.faults import _Fault
from tools.simulators.librelinkup.glucose import SimPatient
from tools.simulators.librelinkup.plumbing import RecordedRequest, ServedGraph, _json, _Response
from tools.simulators.librelinkup.routes import Routes


class LinkUpSimulator(Routes):
    """Local LibreLink Up server. Use as a context manager or call :meth:`start` / :meth:`stop`."""

    _thread_name = "llu-sim"

    def __init__(
        self, clock: VirtualClock | Callable[[], float], *, min_version: str = "4.16.0", seed: int = 0
    ) -> None:
        super().__init__()
        self.clock = clock
        self.seed = seed
        self.min_version = min_version
        self.maintenance = False
        self.maintenance_on_login = False
        #: HTTP status for a present but wrong Account-Id
        #: (401 → invalid-jwt body, 400 → RequiredHeaderMissing body)
        self.wrong_account_id_status = 401
        #: error.message of a bad-credentials reply
        #: ("notAuthenticated"; newer servers: "incorrect username/password")
        self.bad_credentials_message = "notAuthenticated"
        #: also answer /llu/connections, /user, /account with couldNotLoadPatient on a foreign host
        self.foreign_host_blocks_all = False
        self.gzip_enabled = True
        self.shuffle = False
        self.requests: list[RecordedRequest] = []
        self.served: list[ServedGraph] = []
        self.served_connections: list[ServedGraph] = []
        self.accounts: dict[str, SimAccount] = {}
        self.patients: dict[str, SimPatient] = {}
        self._faults: list[_Fault] = []
        self._delays: list[_Fault] = []
        self._hostile = HostileQueue()
        self._key_generation = 0
        self._patient_counter = 0
        self._shuffle_counter = 0
        self.url_template = ""

    # -- lifecycle --------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)

    # -- request log ------------------------------------------------------------------------------

    def count(self, path: str | None = None, method: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (path is None or r.path.startswith(path)) and (method is None or r.method == method.upper())
            )

    @property
    def logins(self) -> int:
        return self.count("/llu/auth/login", "POST")

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()
            self.served.clear()
            self.served_connections.clear()

    def _handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> _Response:
        """Process one request (called from handler threads); records it in :attr:`requests`."""
        split = urlsplit(raw_path)
        segs = split.path.split("/", 2)
        region = segs[1].lower() if len(segs) > 1 else ""
        path = "/" + segs[2] if len(segs) > 2 else "/"
        with self._lock:
            now = self.clock()
            if region not in REGIONS:
                resp = _json(404, {"message": "NotFound"})
            elif (hostile := self._hostile.take(path, method)) is not None:
                resp = _Response(200, fault=hostile.label, hostile=hostile)
            else:
                fault = self._take_fault(path, method)
                if fault is not None:
                    resp = _Response(
                        fault.status,
                        fault.body,
                        fault.content_type,
                        dict(fault.headers),
                        fault=fault.label,
                        hang_s=fault.hang_s,
                    )
                else:
                    resp = self._route(method, region, path, split.query, headers, body, now)
            self.requests.append(
                RecordedRequest(
                    method=method,
                    region=region,
                    path=path,
                    status=None if resp.hang_s is not None else resp.status,
                    headers=dict(headers),
                    time=now,
                    query=split.query,
                    body=body,
                    fault=resp.fault,
                )
            )
            return resp


def _gzip_accepted(accept: str) -> bool:
    """Accept-Encoding names gzip without q=0."""
    return any(
        tok.split(";")[0].strip().lower() == "gzip" and "q=0" not in tok.replace(" ", "") for tok in accept.split(",")
    )


def _reply(handler: BaseHTTPRequestHandler, resp: _Response, *, gzip_ok: bool) -> None:
    """Status, headers and body of a plain reply, gzipped when the client takes it and there is a body."""
    payload = resp.body
    use_gzip = gzip_ok and bool(payload)
    if use_gzip:
        payload = gzip.compress(payload, compresslevel=1, mtime=0)  # the client only inflates it
    handler.send_response(resp.status, _REASONS.get(resp.status))
    if resp.content_type:
        handler.send_header("Content-Type", resp.content_type)
    if use_gzip:
        handler.send_header("Content-Encoding", "gzip")
    for k, v in resp.headers.items():
        handler.send_header(k, v)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(payload)


def _make_handler(sim: LinkUpSimulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "llu-sim"
        sys_version = ""
        timeout = 120.0  # idle keep-alive connections are dropped after this many real seconds

        def setup(self) -> None:
            super().setup()
            sim._connection_opened(self.connection)

        def finish(self) -> None:
            try:
                super().finish()
            finally:
                sim._connection_closed(self.connection)

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, MAX_BODY)) if length > 0 else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            sim._wait_for_delay(self.path, self.command)
            resp = sim._handle(self.command, self.path, headers, body)
            if resp.hang_s is not None:
                sim._stop_event.wait(resp.hang_s)
                self.close_connection = True
                return
            if resp.hostile is not None:
                serve(self, resp.hostile, sim._stop_event)
                return
            _reply(self, resp, gzip_ok=sim.gzip_enabled and _gzip_accepted(headers.get("accept-encoding", "")))

        def date_time_string(self, timestamp: float | None = None) -> str:
            return formatdate(sim.clock() if timestamp is None else timestamp, usegmt=True)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

    return Handler
