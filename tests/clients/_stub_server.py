"""A tiny scripted HTTP server for adapter tests.

Replies with queued (status, headers, body) tuples in order and records every request (method, path,
headers, body). A queued `HANG` never answers (until the server stops). Serves the recorded LibreLink Up
fixtures (tests/support/librelinkup.py) with the status and content type given in their index.json.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.librelinkup import fixture_bytes, fixture_meta

HANG = "hang"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    header_names: list[str]  # as sent
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class StubServer:
    def __init__(self) -> None:
        self.replies: deque[Reply | str] = deque()
        self.requests: list[Recorded] = []
        self._stop = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                stub.requests.append(
                    Recorded(
                        method=self.command,
                        path=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        header_names=list(self.headers.keys()),
                        body=body,
                    )
                )
                reply = stub.replies.popleft() if stub.replies else Reply(599, {}, b"no reply queued")
                if reply == HANG:
                    stub._stop.wait(30)
                    self.close_connection = True
                    return
                assert isinstance(reply, Reply)
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    # --- queueing --------------------------------------------------------------------------------

    def add(self, status: int, body: bytes | str = b"", headers: dict[str, str] | None = None) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.replies.append(Reply(status, dict(headers or {}), data))

    def add_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.add(status, json.dumps(obj), {"Content-Type": "application/json", **(headers or {})})

    def add_fixture(self, name: str, *, gzip_body: bool = False, headers: dict[str, str] | None = None) -> None:
        status, content_type = fixture_meta(name)
        body = fixture_bytes(name)
        hdrs = {"Content-Type": content_type + ("; charset=utf-8" if "json" in content_type else "")}
        if gzip_body:
            body = gzip.compress(body)
            hdrs["Content-Encoding"] = "gzip"
        hdrs.update(headers or {})
        self.add(status, body, hdrs)

    def hang(self) -> None:
        self.replies.append(HANG)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> StubServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
