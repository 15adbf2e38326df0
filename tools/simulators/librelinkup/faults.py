"""Fault injection of the LibreLink Up simulator (``docs/librelinkup-api.md``).

Maintenance, minimum version, edge HTML pages (Cloudflare 1015, block), 430, 5xx, truncated or
non-JSON bodies, hanging and delayed requests, per-patient data faults.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from tools.simulators.hostile_bodies import HostileBody, HostileQueue
from tools.simulators.librelinkup.accounts import Accounts
from tools.simulators.librelinkup.constants import _REASONS, MAX_HANG_S
from tools.simulators.librelinkup.glucose import SimPatient
from tools.simulators.librelinkup.tampering import Tamper, Where

CLOUDFLARE_1015_HTML = (
    "<!DOCTYPE html>\n"
    '<html lang="en-US"><head><title>Access denied | api-eu.libreview.io used Cloudflare to restrict '
    "access</title></head>\n"
    '<body><div id="cf-wrapper"><h1><span>Error</span><span>1015</span></h1>\n'
    "<h2>You are being rate limited</h2>\n"
    "<p>The owner of this website (api-eu.libreview.io) has banned you temporarily from accessing this "
    "website.</p>\n"
    "</div></body></html>\n"
)
CLOUDFLARE_ATTENTION_HTML = (
    "<!DOCTYPE html>\n"
    '<html lang="en-US"><head><title>Attention Required! | Cloudflare</title></head>\n'
    '<body><div id="cf-wrapper"><h1 data-translate="block_headline">Sorry, you have been blocked</h1>\n'
    "<h2>You are unable to access libreview.io</h2>\n"
    "<p>This website is using a security service to protect itself from online attacks.</p>\n"
    "</div></body></html>\n"
)
NON_JSON_HTML = "<html><body><h1>Service temporarily unavailable</h1></body></html>"
GATEWAY_ERROR_HTML = (
    "<html>\n<head><title>{status} {reason}</title></head>\n<body>\n"
    "<center><h1>{status} {reason}</h1></center>\n</body>\n</html>\n"
)


@dataclass
class _Fault:
    count: int
    status: int
    body: bytes
    content_type: str | None
    path: str | None
    method: str | None
    headers: dict[str, str]
    label: str
    hang_s: float | None = None


class Faults(Accounts):
    """The fault switches and their one-shot queues."""

    # The state of this concern (assigned by LinkUpSimulator.__init__, app.py).
    _faults: list[_Fault]
    _delays: list[_Fault]
    _hostile: HostileQueue

    # -- fault switches ---------------------------------------------------------------------------

    def set_maintenance(self, on: bool = True, *, include_login: bool = False) -> None:
        """Authenticated endpoints answer HTTP 911 ``{"status":911}`` (login too if ``include_login``)."""
        with self._lock:
            self.maintenance = on
            self.maintenance_on_login = on and include_login

    def set_min_version(self, version: str) -> None:
        with self._lock:
            self.min_version = version

    def set_wrong_account_id_status(self, status: int) -> None:
        if status not in (400, 401):
            raise ValueError("status must be 400 or 401")
        with self._lock:
            self.wrong_account_id_status = status

    def fail_next(
        self,
        count: int,
        *,
        status: int,
        body: bytes | str = b"",
        content_type: str | None = "application/json",
        path: str | None = None,
        headers: dict[str, str] | None = None,
        method: str | None = None,
        label: str = "fail_next",
    ) -> None:
        """Answer the next ``count`` matching requests (path prefix after /{region}, optional method)
        with this raw reply, before any other processing. Queued faults are consumed in FIFO order."""
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        with self._lock:
            self._faults.append(
                _Fault(
                    count,
                    status,
                    data,
                    content_type,
                    path,
                    method.upper() if method else None,
                    dict(headers or {}),
                    label,
                )
            )

    def rate_limit_html(self, count: int = 1, *, retry_after: int | None = None, path: str | None = None) -> None:
        """Cloudflare error 1015: HTTP 429 text/html (``cloudflare-1015.html``), optional Retry-After."""
        hdrs = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self.fail_next(
            count,
            status=429,
            body=CLOUDFLARE_1015_HTML,
            content_type="text/html; charset=UTF-8",
            path=path,
            headers=hdrs,
            label="rate_limit_html",
        )

    def cloudflare_block(self, count: int = 1, *, path: str | None = None) -> None:
        """HTTP 403 text/html "Attention Required! | Cloudflare"."""
        self.fail_next(
            count,
            status=403,
            body=CLOUDFLARE_ATTENTION_HTML,
            content_type="text/html; charset=UTF-8",
            path=path,
            label="cloudflare_block",
        )

    def http_430_on_login(self, count: int = 1) -> None:
        """Non-standard HTTP 430 with an empty body on POST /llu/auth/login."""
        self.fail_next(
            count,
            status=430,
            body=b"",
            content_type=None,
            path="/llu/auth/login",
            method="POST",
            label="http_430",
        )

    def server_error(self, count: int = 1, status: int = 502, *, path: str | None = None) -> None:
        reason = _REASONS.get(status, "Error")
        self.fail_next(
            count,
            status=status,
            body=GATEWAY_ERROR_HTML.format(status=status, reason=reason),
            content_type="text/html",
            path=path,
            label="server_error",
        )

    def truncated_json(self, count: int = 1, *, path: str | None = None) -> None:
        """HTTP 200 application/json whose body is cut off mid-object (Content-Length matches)."""
        self.fail_next(
            count,
            status=200,
            body='{"status":0,"data":{"connection":{"id":"c4a7e2f1-9b3d',
            path=path,
            label="truncated_json",
        )

    def non_json(self, count: int = 1, *, status: int = 200, path: str | None = None) -> None:
        """HTTP ``status`` (200) with an HTML body instead of JSON."""
        self.fail_next(count, status=status, body=NON_JSON_HTML, content_type="text/html", path=path, label="non_json")

    def hostile_next(
        self, count: int, body: HostileBody, *, path: str | None = None, method: str | None = None
    ) -> None:
        """Answer the next ``count`` matching requests (path prefix after /{region}) with a hostile body
        (tools/simulators/hostile_bodies.py): too large, a gzip bomb, or dripped a byte at a time."""
        self._hostile.add(count, body, path=path, method=method)

    def hang(self, count: int, seconds: float, *, path: str | None = None) -> None:
        """Hold the next ``count`` matching requests for ``seconds`` REAL seconds (≤ 30), then close
        the connection without a reply. stop() releases hanging requests at once."""
        secs = max(0.0, min(float(seconds), MAX_HANG_S))
        with self._lock:
            self._faults.append(_Fault(count, 0, b"", None, path, None, {}, "hang", hang_s=secs))

    def delay(self, count: int, seconds: float, *, path: str | None = None) -> None:
        """Hold the next ``count`` matching requests for ``seconds`` REAL seconds (≤ 30), then answer
        them normally: a slow server, e.g. to make two runs overlap."""
        secs = max(0.0, min(float(seconds), MAX_HANG_S))
        with self._lock:
            self._delays.append(_Fault(count, 0, b"", None, path, None, {}, "delay", hang_s=secs))

    def _wait_for_delay(self, raw_path: str, method: str) -> None:
        path = "/" + "/".join(urlsplit(raw_path).path.split("/")[2:])
        with self._lock:
            match = next(
                (
                    d
                    for d in self._delays
                    if d.count > 0
                    and (d.path is None or path.startswith(d.path))
                    and (d.method is None or d.method == method)
                ),
                None,
            )
            if match is None:
                return
            match.count -= 1
            seconds = match.hang_s or 0.0
        self._stop_event.wait(seconds)

    def clear_faults(self) -> None:
        """Drop queued faults and switch every fault mode off (accounts and series stay)."""
        self._hostile.clear()
        with self._lock:
            self._faults.clear()
            self._delays.clear()
            self.maintenance = False
            self.maintenance_on_login = False
            self.shuffle = False
            for p in self.patients.values():
                p.clear_faults()

    def shuffle_connections(self, on: bool = True) -> None:
        with self._lock:
            self.shuffle = on

    def _patients_for(self, patient_id: str | bool | None) -> list[SimPatient]:
        if patient_id is None or isinstance(patient_id, bool):
            return list(self.patients.values())
        return [self.patients[patient_id]]

    @staticmethod
    def _flag(patient_id: str | bool | None, on: bool) -> bool:
        return patient_id if isinstance(patient_id, bool) else on

    def sensor_null(self, patient_id: str | bool | None = None, on: bool = True) -> None:
        """``connection.sensor`` becomes null (one patient, or all when ``patient_id`` is None)."""
        with self._lock:
            for p in self._patients_for(patient_id):
                p.sensor_is_null = self._flag(patient_id, on)

    def no_active_sensors(self, patient_id: str | bool | None = None, on: bool = True, *, omit: bool = False) -> None:
        """graph ``activeSensors`` becomes ``[]`` (or is left out entirely with ``omit=True``)."""
        with self._lock:
            for p in self._patients_for(patient_id):
                p.active_sensors_mode = ("missing" if omit else "empty") if self._flag(patient_id, on) else "normal"

    def empty_graph(self, patient_id: str | bool | None = None, on: bool = True) -> None:
        """graph ``graphData`` becomes ``[]`` (the current reading is still served)."""
        with self._lock:
            for p in self._patients_for(patient_id):
                p.graph_empty = self._flag(patient_id, on)

    def future_readings(
        self, seconds: float, patient_id: str | None = None, *, where: Where = "current", replies: int | None = 1
    ) -> None:
        """The next ``replies`` graph replies (None: until clear_faults) date the current reading, the
        history or both ``seconds`` later than they are (negative: earlier), like a phone clock far off."""
        with self._lock:
            for p in self._patients_for(patient_id):
                p.tampers.append(Tamper(where, replies, shift_s=int(seconds)))

    def absurd_readings(
        self, value: object, patient_id: str | None = None, *, where: Where = "current", replies: int | None = 1
    ) -> None:
        """The next ``replies`` graph replies carry ``value`` as ValueInMgPerDl (and Value) of the current
        reading, the history or both: 1000, 12, float("nan") (sent as NaN), 152.5, "152", None..."""
        with self._lock:
            for p in self._patients_for(patient_id):
                p.tampers.append(Tamper(where, replies, value=value))

    # -- dispatch ---------------------------------------------------------------------------------

    def _take_fault(self, path: str, method: str) -> _Fault | None:
        for f in self._faults:
            if f.count <= 0:
                continue
            if f.path is not None and not path.startswith(f.path):
                continue
            if f.method is not None and f.method != method:
                continue
            f.count -= 1
            if f.count <= 0:
                self._faults.remove(f)
            return f
        return None
