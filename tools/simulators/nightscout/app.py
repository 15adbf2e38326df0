"""The Nightscout stand-in itself: state, recorded requests, faults, routing and the HTTP handler.

Ties the concerns together (store, auth, treatments, v1, v3), each in its own module; section numbers
refer to ``docs/nightscout-api.md``.
"""

from __future__ import annotations

import contextlib
import email.utils
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tools.simulators.hostile_bodies import HostileBody, HostileQueue, serve
from tools.simulators.nightscout.auth import BUILTIN_ROLES, _Subject
from tools.simulators.nightscout.constants import (
    _EXTENSIONS,
    _REASONS,
    API3_VERSION,
    DEFAULT_API_SECRET,
    MAX_BODY,
    MAX_HANG_S,
    JsonObj,
)
from tools.simulators.nightscout.hostile import _HostileRead, is_read_back, with_hostile_dates
from tools.simulators.nightscout.plumbing import (
    RecordedRequest,
    _cannot,
    _Fault,
    _Hang,
    _json,
    _Req,
    _Response,
    _text,
    _V3Error,
)
from tools.simulators.nightscout.v1 import V1Routes
from tools.simulators.nightscout.v3 import V3Routes
from tools.simulators.nightscout.values import _loads, _qs_parse

# --------------------------------------------------------------------------------------------------
# The stand-in
# --------------------------------------------------------------------------------------------------


class NightscoutStandIn(V3Routes, V1Routes):
    """Local Nightscout server on 127.0.0.1. Use as a context manager or call start()/stop()."""

    _thread_name = "ns-standin"

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        api_secret: str = DEFAULT_API_SECRET,
        version: str = "15.0.7",
        auth_fail_delay_ms: int = 0,
        default_roles: Sequence[str] = ("denied",),
        units: str = "mg/dl",
        name: str = "nightscout",
    ) -> None:
        super().__init__()
        self.clock = clock
        self.api_secret = api_secret
        self.version = version
        #: AUTH_FAIL_DELAY in ms (real time); each failed authentication adds it [§3.5]
        self.auth_fail_delay_ms = auth_fail_delay_ms
        #: AUTH_DEFAULT_ROLES, granted to every caller [§3.4]
        self.default_roles = list(default_roles)
        self.units = units
        self.name = name
        #: number of failed authentications (secret/token given but not resolvable)
        self.auth_failures = 0
        self._entries: list[JsonObj] = []
        self._treatments: list[JsonObj] = []
        self._requests: list[RecordedRequest] = []
        self._roles: dict[str, list[str]] = {k: list(v) for k, v in BUILTIN_ROLES.items()}
        self._role_docs: dict[str, JsonObj] = {}
        self._subjects: list[_Subject] = []
        self._faults: list[_Fault] = []
        self._hangs: list[_Hang] = []
        self._hostile = HostileQueue()
        self._hostile_reads: list[_HostileRead] = []
        self._unreachable = False
        self._delay_until: dict[str, float] = {}
        self._jwt_generation = 0
        self._oid_counter = 0

    # -- lifecycle --------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)

    # -- request log ---------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def count(self, path: str | None = None, method: str | None = None) -> int:
        """Recorded requests whose path starts with ``path`` and whose method is ``method``."""
        with self._lock:
            return sum(
                1
                for r in self._requests
                if (path is None or r.path.startswith(path)) and (method is None or r.method == method.upper())
            )

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- faults --------------------------------------------------------------------------------------

    def set_unreachable(self, on: bool) -> None:
        """While on, every connection is accepted, read and closed without any response."""
        with self._lock:
            self._unreachable = on

    def fail_next(
        self,
        count: int,
        *,
        status: int,
        body: str = "",
        content_type: str | None = "text/html",
        path: str | None = None,
        method: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests (path prefix / method) with this canned reply."""
        with self._lock:
            self._faults.append(
                _Fault(
                    count,
                    status,
                    body.encode("utf-8"),
                    content_type,
                    path,
                    method.upper() if method else None,
                    dict(headers or {}),
                )
            )

    def hang_next(self, count: int, seconds: float, *, path: str | None = None) -> None:
        """Hold the next ``count`` (matching) requests ``seconds`` real seconds (≤ 30), then answer."""
        with self._lock:
            self._hangs.append(_Hang(count, max(0.0, min(float(seconds), MAX_HANG_S)), path))

    def hostile_next(
        self, count: int, body: HostileBody, *, path: str | None = None, method: str | None = None
    ) -> None:
        """Answer the next ``count`` matching requests with a hostile body (tools/simulators/hostile_bodies.py):
        too large, a gzip bomb, or dripped a byte at a time."""
        self._hostile.add(count, body, path=path, method=method)

    def hostile_read_back(self, dates: Sequence[Any], *, count: int = 1) -> None:
        """The next ``count`` read-backs (GET of sgv entries, v1 or v3) also list one entry per value of
        ``dates`` as its ``date``: ``float("nan")``, ``float("inf")``, ``"soon"``, None... (hostile.py)."""
        with self._lock:
            self._hostile_reads.append(_HostileRead(count, tuple(dates)))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._hangs.clear()
            self._hostile_reads.clear()
            self._unreachable = False
        self._hostile.clear()

    def _take_fault(self, path: str, method: str) -> _Fault | None:
        with self._lock:
            for f in self._faults:
                if f.count > 0 and (f.path is None or path.startswith(f.path)) and f.method in (None, method):
                    f.count -= 1
                    return f
            self._faults = [f for f in self._faults if f.count > 0]
        return None

    def _take_hang(self, path: str) -> float:
        with self._lock:
            for h in self._hangs:
                if h.count > 0 and (h.path is None or path.startswith(h.path)):
                    h.count -= 1
                    return h.seconds
            self._hangs = [h for h in self._hangs if h.count > 0]
        return 0.0

    # -- HTTP entry point ------------------------------------------------------------------------------

    def _record(
        self, method: str, raw_path: str, raw_query: str, headers: dict[str, str], raw: bytes
    ) -> RecordedRequest:
        body: Any = None
        if raw:
            try:
                body = _loads(raw)
            except ValueError:
                body = None
        rec = RecordedRequest(
            method=method,
            path=raw_path,
            query=dict(parse_qsl(raw_query, keep_blank_values=True)),
            status=None,
            headers=headers,
            body=body,
            time=self.clock(),
            raw_query=raw_query,
            raw_body=raw,
        )
        with self._lock:
            self._requests.append(rec)
        return rec

    def _build_request(
        self, method: str, raw_path: str, raw_query: str, headers: dict[str, str], raw: bytes, ip: str
    ) -> _Req:
        path = raw_path
        accept = headers.get("accept")
        m = re.match(r"^(.*?)\.([A-Za-z]+)(/?)$", path)
        if m and m.group(2).lower() in _EXTENSIONS and path.lower().startswith(("/api/v1/", "/api/v3/")):
            path = m.group(1) + m.group(3)
            accept = _EXTENSIONS[m.group(2).lower()]
        lpath = path.lower()
        if len(lpath) > 1 and lpath.endswith("/"):
            lpath = lpath[:-1]
        ctype = headers.get("content-type", "")
        mime = ctype.split(";")[0].strip().lower()
        body: Any = {}
        error: str | None = None
        is_json = mime == "application/json"
        if is_json and raw.strip():
            try:
                body = _loads(raw)
                if not isinstance(body, dict | list):
                    raise ValueError("Unexpected token in JSON (strict mode: object or array only)")
            except (ValueError, UnicodeDecodeError) as exc:
                body, error = {}, f"SyntaxError: {exc}"
        elif mime == "application/x-www-form-urlencoded" and raw:
            body = _qs_parse(raw.decode("utf-8", "replace"))
        forwarded = headers.get("x-forwarded-for", "").split(",")[0].strip()
        return _Req(
            method=method,
            path=path,
            lpath=lpath,
            query=_qs_parse(raw_query),
            headers=headers,
            accept=accept,
            body=body,
            body_error=error,
            is_json=is_json,
            client_ip=forwarded or ip,
        )

    def _handle(self, req: _Req) -> _Response:
        try:
            resp = self._route(req)
        except _V3Error as exc:
            return exc.response
        if resp.status == 200 and is_read_back(req.method, req.lpath):
            with self._lock:
                hostile = next((h for h in self._hostile_reads if h.count > 0), None)
                body = with_hostile_dates(resp.body, hostile.dates) if hostile is not None else None
                if hostile is not None and body is not None:
                    hostile.count -= 1
                    resp.body = body
        return resp

    def _route(self, req: _Req) -> _Response:
        p = req.lpath
        if p.startswith("/api/v1/"):
            return self._route_v1(req, p[len("/api/v1") :])
        if p.startswith("/api/v2/"):
            return self._route_v2(req, p[len("/api/v2") :])
        if p.startswith("/api/v3/"):
            return self._route_v3(req, p[len("/api/v3") :])
        if p == "/api/versions" and req.method == "GET":
            return _json(
                200,
                [
                    {"version": "1.0.0", "url": "/api/v1"},
                    {"version": "2.0.0", "url": "/api/v2"},
                    {"version": API3_VERSION, "url": "/api/v3"},
                ],
            )
        return _cannot(req.method, req.path)


# --------------------------------------------------------------------------------------------------
# HTTP handler
# --------------------------------------------------------------------------------------------------


def _read_chunked(rfile: Any) -> bytes | None:
    """A chunked body, or None past MAX_BODY."""
    chunks: list[bytes] = []
    total = 0
    while True:
        line = rfile.readline(1024)
        size = int(line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        total += size
        if total > MAX_BODY:
            return None
        chunks.append(rfile.read(size))
        rfile.readline(8)


def _read_body(handler: BaseHTTPRequestHandler) -> bytes | None:
    """The request's body, or None past MAX_BODY."""
    if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
        return _read_chunked(handler.rfile)
    length = int(handler.headers.get("Content-Length") or 0)
    if length > MAX_BODY:
        return None
    return handler.rfile.read(length) if length > 0 else b""


def _request_target(handler: BaseHTTPRequestHandler) -> tuple[str, str]:
    """(path, query) of the raw request target: http.server collapses a leading "//", Express does not."""
    parts = handler.requestline.split(" ")
    target = parts[1] if len(parts) >= 2 else handler.path
    if not target.startswith("/"):
        target = urlsplit(target).path or "/"  # absolute-form target
    raw_path, _, raw_query = target.partition("?")
    return raw_path.split("#", 1)[0], raw_query


def _cut_off(handler: BaseHTTPRequestHandler) -> None:
    """The connection closed without a reply."""
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.shutdown(socket.SHUT_RDWR)


def _send(handler: BaseHTTPRequestHandler, rec: RecordedRequest | None, resp: _Response) -> None:
    if rec is not None:
        rec.status = resp.status
    try:
        handler.send_response(resp.status, _REASONS.get(resp.status))
        for name, value in resp.headers:
            handler.send_header(name, value)
        if not any(n.lower() == "x-powered-by" for n, _ in resp.headers):
            handler.send_header("X-Powered-By", "Express")
        handler.send_header("Content-Length", str(len(resp.body)))
        if handler.close_connection:
            handler.send_header("Connection", "close")
        handler.end_headers()
        if resp.body and resp.status not in (204, 304):
            handler.wfile.write(resp.body)
        handler.wfile.flush()
    except OSError:
        handler.close_connection = True


def _held_or_hostile(
    handler: BaseHTTPRequestHandler, site: NightscoutStandIn, rec: RecordedRequest, method: str, raw_path: str
) -> bool:
    """A queued hang is waited out; True when a queued hostile body was served instead of a reply."""
    hold = site._take_hang(raw_path)
    if hold > 0:
        rec.fault = "hang_next"
        site._stop_event.wait(hold)
    hostile = site._hostile.take(raw_path, method)
    if hostile is None:
        return False
    rec.fault = hostile.label
    rec.status = 200
    serve(handler, hostile, site._stop_event)
    return True


def _fault_or_answer(
    handler: BaseHTTPRequestHandler,
    site: NightscoutStandIn,
    method: str,
    target: tuple[str, str],
    headers: dict[str, str],
    raw: bytes,
) -> _Response:
    """A queued fault, else the stand-in's answer (a 500 when the stand-in itself fails)."""
    raw_path, raw_query = target
    fault = site._take_fault(raw_path, method)
    if fault is not None:
        resp = _Response(fault.status, fault.body, fault=("fail_next"))
        if fault.content_type:
            resp.headers.append(("Content-Type", fault.content_type))
        resp.headers.extend(fault.headers.items())
        return resp
    req = site._build_request(method, raw_path, raw_query, headers, raw, handler.client_address[0])
    try:
        return site._handle(req)
    except Exception as exc:  # keep the stand-in alive; surface as a server error
        return _json(500, {"status": 500, "message": "Stand-in error", "description": repr(exc)})


def _serve_site(handler: BaseHTTPRequestHandler, site: NightscoutStandIn, method: str, target: tuple[str, str]) -> None:
    """One request to one site: recorded, then the faults in their order, then the answer."""
    raw_path, raw_query = target
    headers = {k.lower(): v for k, v in handler.headers.items()}
    try:
        raw = _read_body(handler)
    except (OSError, ValueError):
        handler.close_connection = True
        return
    rec = site._record(method, raw_path, raw_query, headers, raw or b"")
    with site._lock:
        unreachable = site._unreachable
    if unreachable:
        rec.fault = "unreachable"
        _cut_off(handler)
        return
    if raw is None:
        handler.close_connection = True
        _send(
            handler,
            rec,
            _text(413, "<pre>PayloadTooLargeError: request entity too large</pre>", "text/html; charset=utf-8"),
        )
        return
    if _held_or_hostile(handler, site, rec, method, raw_path):
        return
    resp = _fault_or_answer(handler, site, method, target, headers, raw)
    if resp.no_reply:
        rec.fault = "no-reply"
        site._stop_event.wait(MAX_HANG_S)
        _cut_off(handler)
        return
    if resp.fault and rec.fault is None:
        rec.fault = resp.fault
    _send(handler, rec, resp)


def _make_handler(
    standin: Any, pick: Callable[[str], tuple[NightscoutStandIn, str] | None] | None = None
) -> type[BaseHTTPRequestHandler]:
    """The HTTP handler of one stand-in, or (with `pick`) of many sites behind one server (`standin` is then
    the server: its clock and connections), where pick(path) names the site of a path and the path in it."""

    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "nightscout-standin"
        sys_version = ""
        timeout = 15  # idle keep-alive connections are closed after this many seconds

        def setup(self) -> None:
            super().setup()
            standin._connection_opened(self.connection)

        def finish(self) -> None:
            with contextlib.suppress(OSError):
                super().finish()
            standin._connection_closed(self.connection)

        def log_message(self, format: str, *args: Any) -> None:
            return

        def version_string(self) -> str:
            return self.server_version

        def date_time_string(self, timestamp: float | None = None) -> str:
            """The ``Date`` header follows the virtual clock."""
            return email.utils.formatdate(standin.clock() if timestamp is None else timestamp, usegmt=True)

        def _serve(self) -> None:
            method = self.command  # http.server calls do_<command>: one of the five below
            raw_path, raw_query = _request_target(self)
            picked = pick(raw_path) if pick is not None else (standin, raw_path)
            if picked is None:
                _send(self, None, _cannot(method, raw_path))
                return
            site, raw_path = picked
            _serve_site(self, site, method, (raw_path, raw_query))

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    return _Handler
