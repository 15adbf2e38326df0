"""A deterministic LibreLink Up (LLU v4 follower API) simulator for local tests.

Development tooling only (never shipped to Lambda). It implements the behaviour described in
``docs/librelinkup-api.md`` §15 ("Simulator blueprint"): login with redirects, steps, bad
credentials and lockout; HS256-shaped tokens with a fresh ``ticket`` on every authenticated reply;
the authenticated-endpoint checks (911 → 920 → 401 → 400 → foreign host / unknown patient); a
per-patient glucose series with a current reading and a lagging 5-minute history; and fault switches
(edge HTML pages, 430, 5xx, truncated or non-JSON bodies, hanging requests, ...).

Every region is served under a path prefix of one local ``ThreadingHTTPServer``:
``http://127.0.0.1:PORT/{region}/llu/auth/login``; the region segment plays the role of the host.

Time comes from a :class:`~tools.simulators.clock.VirtualClock`; all generated values depend only on
``seed`` and the clock, so two simulators built the same way answer byte-for-byte the same.

Ground truth for tests: :meth:`SimPatient.samples_between` (the per-minute sensor series),
:attr:`LinkUpSimulator.served` (what each successful graph reply contained) and
:attr:`LinkUpSimulator.requests` (every request received).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import math
import random
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from tools.simulators.clock import VirtualClock
from tools.simulators.server import LoopbackServer

__all__ = [
    "CLOUDFLARE_1015_HTML",
    "CLOUDFLARE_ATTENTION_HTML",
    "HISTORY_LAG_S",
    "HISTORY_WINDOW_S",
    "REGIONS",
    "LinkUpSimulator",
    "RecordedRequest",
    "ServedGraph",
    "SimAccount",
    "SimPatient",
    "account_id_hash",
    "compare_versions",
    "format_llu_timestamp",
    "measurement_color",
    "parse_llu_timestamp",
    "trend_arrow_for_rate",
]

JsonObj = dict[str, Any]

# --------------------------------------------------------------------------------------------------
# Constants (spec references in brackets)
# --------------------------------------------------------------------------------------------------

#: Region keys served (lower case, §2.1). ``global`` stands for ``api.libreview.io``: it only redirects.
REGIONS: frozenset[str] = frozenset(
    {"ae", "ap", "au", "ca", "de", "eu", "eu2", "fr", "jp", "us", "la", "ru", "cn", "global"}
)
TICKET_DURATION_S = 15_552_000  # 180 days [§5.2, §12]
STEP_TICKET_DURATION_S = 3_600  # 1 hour [§5.4]
LOCK_FAILURES = 3  # [§5.6]
LOCK_INTERVAL_S = 60
LOCKOUT_S = 300
HISTORY_WINDOW_S = 12 * 3600  # graphData covers ~12 h [§7.2]
HISTORY_LAG_S = 17 * 60  # newest graphData point ~17 min older than the current reading [§7.2]
HISTORY_EVERY = 5  # every 5th per-minute sample is a history point (5-minute spacing)
TREND_WINDOW_S = 15 * 60  # TrendArrow from the slope over the last 15 min
LOGBOOK_WINDOW_S = 14 * 86400  # [§8]
MAX_HANG_S = 30.0  # upper bound for hang() so a test cannot wedge the suite
MAX_BODY = 1 << 20

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

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    430: "Unknown",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    911: "Unknown",
}

_COUNTRY_REGION = {"DE": "eu", "GB": "eu2", "IE": "eu2", "US": "us", "FR": "fr", "JP": "jp", "AU": "au"}
_REGION_COUNTRY = {
    "ae": "AE",
    "ap": "SG",
    "au": "AU",
    "ca": "CA",
    "de": "DE",
    "eu": "DE",
    "eu2": "GB",
    "fr": "FR",
    "jp": "JP",
    "us": "US",
    "la": "MX",
    "ru": "RU",
    "cn": "CN",
    "global": "US",
}
_REGION_LANG = {"DE": "de-DE", "FR": "fr-FR", "GB": "en-GB", "US": "en-US", "JP": "ja-JP"}


# --------------------------------------------------------------------------------------------------
# Small pure helpers (also used by the tests)
# --------------------------------------------------------------------------------------------------


def account_id_hash(user_id: str) -> str:
    """``Account-Id`` header value: lower-case hex SHA-256 of ``user.id`` as received [§3.3]."""
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()


def _fmt(dt: datetime) -> str:
    hour12 = dt.hour % 12 or 12
    ampm = "AM" if dt.hour < 12 else "PM"
    return f"{dt.month}/{dt.day}/{dt.year} {hour12}:{dt.minute:02d}:{dt.second:02d} {ampm}"


def format_llu_timestamp(epoch_s: float, tz: str | ZoneInfo | None = None) -> str:
    """``M/D/YYYY h:mm:ss AM|PM`` (no zero padding) of ``epoch_s`` in UTC or in zone ``tz`` [§11]."""
    zone: Any = UTC if tz is None else (ZoneInfo(tz) if isinstance(tz, str) else tz)
    return _fmt(datetime.fromtimestamp(int(epoch_s), zone))


def parse_llu_timestamp(text: str) -> int:
    """Inverse of :func:`format_llu_timestamp` for UTC strings (locale-free, strict) [§11]."""
    m = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2}) (AM|PM)", text)
    if not m:
        raise ValueError(f"not an LLU timestamp: {text!r}")
    month, day, year, hour, minute, second = (int(g) for g in m.groups()[:6])
    if not 1 <= hour <= 12:
        raise ValueError(f"hour out of range: {text!r}")
    hour = hour % 12 + (12 if m.group(7) == "PM" else 0)
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp())


def _version_tuple(v: str) -> tuple[int, ...]:
    parts: list[int] = []
    for comp in v.strip().split("."):
        digits = ""
        for ch in comp:
            if not ch.isdigit():
                break
            digits += ch
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def compare_versions(a: str, b: str) -> int:
    """-1/0/1 comparing dotted versions numerically per component (``4.9.0 < 4.16.0``) [§15.3]."""
    ta, tb = _version_tuple(a), _version_tuple(b)
    n = max(len(ta), len(tb))
    ta += (0,) * (n - len(ta))
    tb += (0,) * (n - len(tb))
    return (ta > tb) - (ta < tb)


def trend_arrow_for_rate(rate_mg_per_min: float) -> int:
    """TrendArrow 1..5 (1 = SingleDown … 5 = SingleUp) for a rate of change in mg/dL/min [§10.2]."""
    if rate_mg_per_min <= -2.0:
        return 1
    if rate_mg_per_min <= -1.0:
        return 2
    if rate_mg_per_min < 1.0:
        return 3
    if rate_mg_per_min < 2.0:
        return 4
    return 5


def measurement_color(mg: int, target_low: int, target_high: int) -> int:
    """MeasurementColor per §10.3: 1 green in range, 2 yellow above, 3 orange ≥ 250, 4 red below."""
    if mg < target_low:
        return 4
    if mg <= target_high:
        return 1
    if mg < 250:
        return 2
    return 3


def _mix64(*values: int) -> int:
    """splitmix64-style integer hash (deterministic, fast)."""
    x = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    for v in values:
        x = (x ^ (v & mask)) & mask
        x = (x + 0x9E3779B97F4A7C15) & mask
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
        x ^= x >> 31
    return x


def _det_uuid(*parts: object) -> str:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received (``status`` is None when the simulator hung up without replying)."""

    method: str
    region: str
    path: str  # path after /{region}, without the query string
    status: int | None
    headers: dict[str, str]  # lower-case names
    time: float  # virtual time at arrival
    query: str = ""
    body: bytes = b""
    fault: str | None = None  # label of the injected fault that answered, if any


@dataclass(frozen=True)
class ServedGraph:
    """What one successful graph reply (or connections entry) contained."""

    time: float
    patient_id: str
    current_epoch_s: int | None
    history_epoch_s: tuple[int, ...]
    region: str = ""
    source: str = "graph"  # "graph" or "connections"


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


@dataclass
class SimAccount:
    """A LibreLinkUp follower account."""

    email: str
    password: str
    user_id: str
    home_region: str
    pending_steps: list[str] = field(default_factory=list)
    first_name: str = "Fiona"
    last_name: str = "Follower"
    country: str = "DE"
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0
    patient_ids: list[str] = field(default_factory=list)
    created: int = 1690000000
    tou_accept: int = 1730000000
    pp_accept: int = 1730000000
    last_login: int = 0

    @property
    def account_id(self) -> str:
        return account_id_hash(self.user_id)


@dataclass
class _LateRule:
    delay_s: float
    t0: float | None
    t1: float | None


class SimPatient:
    """A followed patient with a deterministic per-minute glucose series.

    Sample ``i`` (``i ≥ 0``) lies at ``t_i = start + 60*i + jitter_i`` with ``jitter_i ∈ {-1,0,1}``
    derived from ``(seed, i)``; its value is a smooth seeded curve (sum of sines + slow drift) clamped
    to 40..400 mg/dL; its TrendArrow comes from the slope over the preceding 15 minutes.
    """

    def __init__(
        self,
        *,
        patient_id: str,
        connection_id: str,
        device_id: str,
        first_name: str,
        last_name: str,
        units: str,
        tz: str,
        start: int,
        seed: int,
        sensor_serial: str,
        sensor_activated: int,
        target_low: int = 70,
        target_high: int = 180,
        country: str = "DE",
        created: int = 1700000000,
    ) -> None:
        if units not in ("mgdl", "mmol"):
            raise ValueError("units must be 'mgdl' or 'mmol'")
        self.id = patient_id
        self.patient_id = patient_id
        self.connection_id = connection_id
        self.device_id = device_id
        self.first_name = first_name
        self.last_name = last_name
        self.units = units
        self.tz = tz
        self.zone = ZoneInfo(tz)
        self.start = int(start)
        self.seed = seed
        self.sensor_serial = sensor_serial
        self.sensor_activated = int(sensor_activated)
        self.target_low = target_low
        self.target_high = target_high
        self.country = country
        self.created = created
        self.app_version = "3.6.2.9113"
        # switches
        self.sensor_is_null = False
        self.active_sensors_mode = "normal"  # "normal" | "empty" | "missing"
        self.graph_empty = False
        self._offline: list[tuple[float, float]] = []
        self._late: list[_LateRule] = []
        # curve parameters
        rng = random.Random(seed)
        self._base = rng.uniform(140.0, 160.0)
        self._waves: list[tuple[float, float, float]] = [
            (rng.uniform(40.0, 55.0), rng.uniform(4.5, 7.0) * 3600.0, rng.uniform(0.0, 2 * math.pi)),
            (rng.uniform(20.0, 30.0), rng.uniform(80.0, 120.0) * 60.0, rng.uniform(0.0, 2 * math.pi)),
            (rng.uniform(5.0, 10.0), rng.uniform(25.0, 40.0) * 60.0, rng.uniform(0.0, 2 * math.pi)),
            (rng.uniform(10.0, 20.0), rng.uniform(20.0, 30.0) * 3600.0, rng.uniform(0.0, 2 * math.pi)),
        ]

    # -- switches ---------------------------------------------------------------------------------

    def offline(self, t0: float, t1: float) -> SimPatient:
        """The phone never uploads samples with ``t0 ≤ t < t1`` (current reading freezes, history hole)."""
        if t1 <= t0:
            raise ValueError("offline interval must have t1 > t0")
        self._offline.append((float(t0), float(t1)))
        return self

    def late_history(self, delay_s: float, t0: float | None = None, t1: float | None = None) -> SimPatient:
        """History points (optionally only those with ``t0 ≤ t < t1``) appear ``delay_s`` later."""
        self._late.append(_LateRule(float(delay_s), t0, t1))
        return self

    def clear_faults(self) -> None:
        self._offline.clear()
        self._late.clear()
        self.sensor_is_null = False
        self.active_sensors_mode = "normal"
        self.graph_empty = False

    # -- series -----------------------------------------------------------------------------------

    def _jitter(self, i: int) -> int:
        return _mix64(self.seed, i) % 3 - 1

    def sample_time(self, i: int) -> int:
        return self.start + 60 * i + self._jitter(i)

    def mg_float(self, t: float) -> float:
        v = self._base
        for amp, period, phase in self._waves:
            v += amp * math.sin(2 * math.pi * (t - self.start) / period + phase)
        return min(400.0, max(40.0, v))

    def mg_at(self, t: float) -> int:
        return round(self.mg_float(t))

    def trend_at(self, t: float) -> int:
        rate = (self.mg_float(t) - self.mg_float(t - TREND_WINDOW_S)) / (TREND_WINDOW_S / 60.0)
        return trend_arrow_for_rate(rate)

    def sample(self, i: int) -> tuple[int, int, int]:
        """``(epoch_s, mg/dL, TrendArrow)`` of sample ``i``."""
        t = self.sample_time(i)
        return (t, self.mg_at(t), self.trend_at(t))

    def _index_range(self, t0: float, t1: float) -> range:
        lo = max(0, math.floor((t0 - self.start - 1) / 60))
        hi = math.floor((t1 - self.start + 1) / 60)
        return range(lo, hi + 1)

    def is_uploaded(self, t: float) -> bool:
        return not any(a <= t < b for a, b in self._offline)

    def samples_between(self, t0: float, t1: float, *, uploaded_only: bool = False) -> list[tuple[int, int, int]]:
        """Per-minute series with ``t0 ≤ t ≤ t1`` (both inclusive), oldest first.

        ``uploaded_only`` drops samples inside :meth:`offline` intervals (which LLU never received).
        """
        out: list[tuple[int, int, int]] = []
        for i in self._index_range(t0, t1):
            t = self.sample_time(i)
            if t0 <= t <= t1 and (not uploaded_only or self.is_uploaded(t)):
                out.append((t, self.mg_at(t), self.trend_at(t)))
        return out

    def current_sample(self, now: float) -> tuple[int, int, int] | None:
        """Newest uploaded per-minute sample with ``t ≤ now`` (None if there is none)."""
        i = math.floor((now - self.start + 1) / 60)
        while i >= 0:
            t = self.sample_time(i)
            if t <= now and self.is_uploaded(t):
                return (t, self.mg_at(t), self.trend_at(t))
            if t <= now:
                # inside an offline interval: jump to just before its start
                starts = [a for a, b in self._offline if a <= t < b]
                i = min(i - 1, math.floor((min(starts) - self.start + 1) / 60))
            else:
                i -= 1
        return None

    def _extra_delay(self, t: float) -> float:
        d = 0.0
        for rule in self._late:
            if (rule.t0 is None or t >= rule.t0) and (rule.t1 is None or t < rule.t1):
                d = max(d, rule.delay_s)
        return d

    def history(self, now: float) -> list[tuple[int, int]]:
        """graphData points visible at ``now``: ``(epoch_s, mg)`` oldest first [§7.2]."""
        if self.graph_empty:
            return []
        out: list[tuple[int, int]] = []
        lo = now - HISTORY_WINDOW_S
        hi = now - HISTORY_LAG_S
        for i in self._index_range(lo, hi):
            if i % HISTORY_EVERY:
                continue
            t = self.sample_time(i)
            if lo <= t <= hi - self._extra_delay(t) and self.is_uploaded(t):
                out.append((t, self.mg_at(t)))
        return out

    # -- JSON -------------------------------------------------------------------------------------

    def glucose_item(self, t: int, mg: int, *, item_type: int, trend: int | None) -> JsonObj:
        mmol = self.units == "mmol"
        item: JsonObj = {
            "FactoryTimestamp": format_llu_timestamp(t),
            "Timestamp": format_llu_timestamp(t, self.zone),
            "type": item_type,
            "ValueInMgPerDl": mg,
        }
        if trend is not None:
            item["TrendArrow"] = trend
            item["TrendMessage"] = None
        item["MeasurementColor"] = measurement_color(mg, self.target_low, self.target_high)
        item["GlucoseUnits"] = 0 if mmol else 1
        item["Value"] = round(mg / 18.0, 1) if mmol else mg
        item["isHigh"] = False
        item["isLow"] = False
        return item

    def sensor_json(self, *, device_id: str = "") -> JsonObj:
        return {
            "deviceId": device_id,
            "sn": self.sensor_serial,
            "a": self.sensor_activated,
            "w": 60,
            "pt": 4,
            "s": False,
            "lj": False,
        }

    def device_json(self, now: float) -> JsonObj:
        cur = self.current_sample(now)
        dev: JsonObj = {
            "did": self.device_id,
            "dtid": 40068,
            "v": self.app_version,
            "l": True,
            "ll": self.target_low,
            "h": True,
            "hl": 250,
        }
        if cur is not None:
            dev["u"] = min(int(now), cur[0] + 18)
        dev["fixedLowAlarmValues"] = {"mgdl": 60, "mmoll": 3.3}
        dev["alarms"] = True
        dev["fixedLowThreshold"] = 0
        return dev

    def alarm_rules(self) -> JsonObj:
        return {
            "c": True,
            "h": {"on": True, "th": 250, "thmm": 13.9, "d": 1440, "f": 0.1},
            "f": {"th": 55, "thmm": 3, "d": 30, "tl": 10, "tlmm": 0.6},
            "l": {
                "on": True,
                "th": self.target_low,
                "thmm": round(self.target_low / 18.0, 1),
                "d": 1440,
                "tl": 10,
                "tlmm": 0.6,
            },
            "nd": {"i": 20, "r": 5, "l": 6},
            "p": 5,
            "r": 5,
            "std": {},
        }

    def connection_json(self, now: float) -> tuple[JsonObj, int | None]:
        cur = self.current_sample(now)
        conn: JsonObj = {
            "id": self.connection_id,
            "patientId": self.id,
            "country": self.country,
            "status": 2,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "targetLow": self.target_low,
            "targetHigh": self.target_high,
            "uom": 0 if self.units == "mmol" else 1,
            "sensor": None if self.sensor_is_null else self.sensor_json(),
            "alarmRules": self.alarm_rules(),
        }
        if cur is not None:
            item = self.glucose_item(cur[0], cur[1], item_type=1, trend=cur[2])
            conn["glucoseMeasurement"] = item
            conn["glucoseItem"] = dict(item)
        conn["glucoseAlarm"] = None
        conn["patientDevice"] = self.device_json(now)
        conn["created"] = self.created
        return conn, (cur[0] if cur is not None else None)

    def logbook_json(self, now: float) -> list[JsonObj]:
        """Alarm events (type 3: alarmType 1 low < 70, 2 high ≥ 250) and 6-hourly scans, newest first."""
        items: list[JsonObj] = []
        prev: int | None = None
        for i in self._index_range(now - LOGBOOK_WINDOW_S, now):
            t = self.sample_time(i)
            if t > now or t < now - LOGBOOK_WINDOW_S or not self.is_uploaded(t):
                continue
            mg = self.mg_at(t)
            if prev is not None and prev >= 70 > mg:
                item = self.glucose_item(t, mg, item_type=3, trend=self.trend_at(t))
                item["alarmType"] = 1
                items.append(item)
            elif prev is not None and prev < 250 <= mg:
                item = self.glucose_item(t, mg, item_type=3, trend=self.trend_at(t))
                item["alarmType"] = 2
                items.append(item)
            elif i % 360 == 17:
                items.append(self.glucose_item(t, mg, item_type=1, trend=self.trend_at(t)))
            prev = mg
        items.reverse()
        return items


# --------------------------------------------------------------------------------------------------
# The simulator
# --------------------------------------------------------------------------------------------------


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    fault: str | None = None
    hang_s: float | None = None


def _json(status: int, obj: Any) -> _Response:
    return _Response(status, _dumps(obj))


_ERR_JWT = {"message": "invalid or expired jwt"}
_ERR_HEADER = {"message": "RequiredHeaderMissing"}
_ERR_PATIENT = {"error": {"message": "couldNotLoadPatient"}, "status": 4}
_LOCKED = {
    "status": 429,
    "data": {
        "code": 60,
        "data": {"failures": LOCK_FAILURES, "interval": LOCK_INTERVAL_S, "lockout": LOCKOUT_S},
        "message": "locked",
    },
}


class LinkUpSimulator(LoopbackServer):
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
        self._key_generation = 0
        self._patient_counter = 0
        self._shuffle_counter = 0
        self.url_template = ""

    # -- lifecycle --------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)

    def start(self) -> Self:
        super().start()
        self.url_template = self.base_url + "/{region}"
        return self

    def url(self, region: str) -> str:
        """Base URL standing for the host of ``region`` (no trailing slash)."""
        return self.url_template.format(region=region)

    # -- set-up -----------------------------------------------------------------------------------

    def add_account(
        self,
        email: str,
        password: str,
        *,
        home_region: str = "eu",
        pending_steps: Sequence[str] = (),
        user_id: str | None = None,
        first_name: str = "Fiona",
        last_name: str = "Follower",
        country: str | None = None,
    ) -> SimAccount:
        home = home_region.lower()
        if home not in REGIONS or home == "global":
            raise ValueError(f"unknown home region {home_region!r}")
        key = email.strip().lower()
        with self._lock:
            if key in self.accounts:
                raise ValueError(f"account {email!r} exists")
            acc = SimAccount(
                email=email,
                password=password,
                user_id=user_id or _det_uuid("user", self.seed, key),
                home_region=home,
                pending_steps=list(pending_steps),
                first_name=first_name,
                last_name=last_name,
                country=country or _REGION_COUNTRY.get(home, "DE"),
            )
            self.accounts[key] = acc
            return acc

    def add_patient(
        self,
        email: str,
        *,
        patient_id: str | None = None,
        first_name: str = "Pat",
        last_name: str = "Example",
        units: str = "mgdl",
        tz: str = "Europe/Berlin",
        start: float | None = None,
        seed: int | None = None,
        sensor_serial: str | None = None,
        sensor_activated: int | None = None,
        target_low: int = 70,
        target_high: int = 180,
        country: str = "DE",
    ) -> SimPatient:
        """Let the account ``email`` follow a patient (an existing ``patient_id`` is shared as is).

        ``start`` (default: ~24 h before now) is the time of the first per-minute sample.
        """
        with self._lock:
            acc = self._account(email)
            if patient_id is not None and patient_id in self.patients:
                pat = self.patients[patient_id]
            else:
                n = self._patient_counter
                self._patient_counter += 1
                pseed = seed if seed is not None else _mix64(self.seed, 7919, n) & 0x7FFFFFFF
                pid = patient_id or _det_uuid("patient", self.seed, n)
                # default phase: the newest sample is 57-59 s old at whole-minute multiples of now
                st = int(start) if start is not None else int(self.clock()) - 86400 + 2
                serial = sensor_serial or "0E" + hashlib.sha256(f"sn{pid}".encode()).hexdigest()[:8].upper()
                pat = SimPatient(
                    patient_id=pid,
                    connection_id=_det_uuid("connection", self.seed, pid),
                    device_id=_det_uuid("device", self.seed, pid),
                    first_name=first_name,
                    last_name=last_name,
                    units=units,
                    tz=tz,
                    start=st,
                    seed=pseed,
                    sensor_serial=serial,
                    sensor_activated=sensor_activated if sensor_activated is not None else st - 3600,
                    target_low=target_low,
                    target_high=target_high,
                    country=country,
                )
                self.patients[pid] = pat
            if pat.id not in acc.patient_ids:
                acc.patient_ids.append(pat.id)
            return pat

    def account(self, email: str) -> SimAccount:
        with self._lock:
            return self._account(email)

    def _account(self, email: str) -> SimAccount:
        try:
            return self.accounts[email.strip().lower()]
        except KeyError:
            raise KeyError(f"no account {email!r}") from None

    def patient(self, patient_id: str) -> SimPatient:
        return self.patients[patient_id]

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

    def revoke_tokens(self) -> None:
        """Every token issued so far (login, step and ticket tokens) becomes invalid (→ 401)."""
        with self._lock:
            self._key_generation += 1

    def force_steps(self, email: str, steps: Sequence[str]) -> None:
        with self._lock:
            self._account(email).pending_steps = list(steps)

    def set_password(self, email: str, password: str) -> None:
        with self._lock:
            self._account(email).password = password

    def unlock(self, email: str) -> None:
        with self._lock:
            acc = self._account(email)
            acc.locked_until = 0.0
            acc.failures.clear()

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

    # -- tokens -----------------------------------------------------------------------------------

    def _key(self) -> bytes:
        return hashlib.sha256(f"llu-sim-hs256:{self.seed}:{self._key_generation}".encode()).digest()

    def _sign(self, claims: JsonObj) -> str:
        header = _b64url(_dumps({"alg": "HS256", "typ": "JWT"}))
        payload = _b64url(_dumps(claims))
        signing_input = f"{header}.{payload}".encode("ascii")
        sig = _b64url(hmac.new(self._key(), signing_input, hashlib.sha256).digest())
        return f"{header}.{payload}.{sig}"

    def decode_token(self, token: str) -> JsonObj:
        """Claims of ``token`` (no validation)."""
        parts = token.split(".")
        if len(parts) != 3:
            raise ValueError("not a JWT")
        claims = json.loads(_b64url_decode(parts[1]))
        if not isinstance(claims, dict):
            raise ValueError("JWT payload is not an object")
        return claims

    def _validate(self, token: str, now: float) -> JsonObj | None:
        parts = token.split(".")
        if len(parts) != 3:
            return None
        expected = _b64url(hmac.new(self._key(), f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, parts[2]):
            return None
        try:
            claims = self.decode_token(token)
        except (ValueError, UnicodeDecodeError):
            return None
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= now:
            return None
        return claims

    def _user_claims(self, acc: SimAccount, product: str, exp: int, *, step: bool) -> JsonObj:
        claims: JsonObj = {
            "id": acc.user_id,
            "firstName": acc.first_name,
            "lastName": acc.last_name,
            "country": acc.country,
            "region": acc.home_region,
            "role": "patient",
        }
        if step:
            claims["email"] = acc.email
        else:
            claims["units"] = 1
            claims["practices"] = []
        claims["c"] = 1
        claims["s"] = product
        claims["exp"] = exp
        if step:
            claims["step"] = True
        return claims

    def issue_token(self, email: str, *, product: str = "llu.ios", step: bool = False) -> JsonObj:
        """A ticket ``{token, expires, duration}`` for ``email`` as the server would issue it now."""
        with self._lock:
            return self._ticket(self._account(email), product, int(self.clock()), step=step)

    def _ticket(self, acc: SimAccount, product: str, now: int, *, step: bool = False) -> JsonObj:
        life = STEP_TICKET_DURATION_S if step else TICKET_DURATION_S
        exp = now + life
        return {
            "token": self._sign(self._user_claims(acc, product, exp, step=step)),
            "expires": exp,
            "duration": life * 1000,
        }

    # -- bodies -----------------------------------------------------------------------------------

    def _user_json(self, acc: SimAccount, *, full: bool) -> JsonObj:
        user: JsonObj = {
            "id": acc.user_id,
            "firstName": acc.first_name,
            "lastName": acc.last_name,
            "email": acc.email,
            "country": acc.country,
            "uiLanguage": _REGION_LANG.get(acc.country, "en-US"),
            "communicationLanguage": _REGION_LANG.get(acc.country, "en-US"),
            "accountType": "pat",
            "uom": "1",
            "dateFormat": "2",
            "timeFormat": "2",
            "emailDay": [1],
            "system": {
                "messages": {
                    "firstUsePhoenix": acc.created,
                    "firstUsePhoenixReportsDataMerged": acc.created,
                    "lluGettingStartedBanner": acc.created + 120,
                    "lluNewFeatureModal": acc.created + 90,
                    "lluOnboarding": acc.created + 100,
                    "lvWebPostRelease": "3.19.10",
                }
            },
            "details": {},
            "twoFactor": {
                "primaryMethod": "",
                "primaryValue": "",
                "secondaryMethod": "",
                "secondaryValue": "",
            },
            "created": acc.created,
            "lastLogin": acc.last_login,
        }
        if full:
            user["programs"] = {}
        user["dateOfBirth"] = 315532800
        if full:
            user["practices"] = {}
            user["devices"] = {}
            user["consents"] = {"llu": {"policyAccept": acc.pp_accept, "touAccept": acc.tou_accept}}
        return user

    def _login_ok(self, acc: SimAccount, product: str, now: int) -> JsonObj:
        acc.last_login = now
        return self._login_body(acc, product, now)

    def _login_body(self, acc: SimAccount, product: str, now: int) -> JsonObj:
        return {
            "status": 0,
            "data": {
                "user": self._user_json(acc, full=True),
                "messages": {"unread": 0},
                "notifications": {"unresolved": 0},
                "authTicket": self._ticket(acc, product, now),
                "invitations": None,
                "trustedDeviceToken": "",
            },
        }

    def _step_body(self, acc: SimAccount, product: str, now: int) -> JsonObj:
        stype = acc.pending_steps[0]
        if stype in ("tou", "pp"):
            title = "Common.termsOfUse" if stype == "tou" else "Common.privacyPolicy"
            step: JsonObj = {
                "type": stype,
                "componentName": "AcceptDocument",
                "props": {"reaccept": True, "titleKey": title, "type": stype},
            }
        elif stype == "verifyEmail":
            step = {"type": stype, "componentName": "VerifyEmail", "props": {"email": acc.email}}
        else:
            step = {"type": stype, "componentName": stype[:1].upper() + stype[1:], "props": {}}
        return {
            "status": 4,
            "data": {
                "step": step,
                "user": {
                    "accountType": "pat",
                    "country": acc.country,
                    "uiLanguage": _REGION_LANG.get(acc.country, "en-US"),
                },
                "authTicket": self._ticket(acc, product, now, step=True),
            },
        }

    def _after_password(self, acc: SimAccount, product: str, now: int) -> JsonObj:
        if acc.pending_steps:
            return self._step_body(acc, product, now)
        return self._login_ok(acc, product, now)

    def country_config(self, country: str | None) -> JsonObj:
        regional = {
            r: {
                "lslApi": f"{self.url(r)}/",
                "socketHub": f"{self.url(r)}/poll/" if r in ("au", "eu2") else f"{self.url(r)}/hub/",
            }
            for r in sorted(REGIONS - {"global"})
        }
        region = _COUNTRY_REGION.get((country or "").upper(), "eu")
        return {
            "status": 0,
            "data": {
                "MinVersion": self.min_version,
                "lslApi": f"{self.url(region)}/",
                "lv": "https://www.libreview.com",
                "heartbeatMilliseconds": 2100000,
                "minorityAge": 18,
                "regionalMap": regional,
            },
        }

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

    def _route(
        self,
        method: str,
        region: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        now: float,
    ) -> _Response:
        p = path.rstrip("/") or "/"
        parts = p.strip("/").split("/")
        if method == "POST" and p == "/llu/auth/login":
            return self._login(region, headers, body, now)
        if method == "POST" and len(parts) == 3 and parts[:2] == ["auth", "continue"]:
            return self._continue(parts[2], headers, now)
        if method == "GET" and p == "/llu/config/country":
            country = parse_qs(query).get("country", [None])[0]
            return _json(200, self.country_config(country))
        if method == "GET":
            if p == "/llu/connections":
                return self._authed(region, headers, now, None, self._connections)
            if len(parts) == 4 and parts[:2] == ["llu", "connections"] and parts[3] in ("graph", "logbook"):
                handler = self._graph if parts[3] == "graph" else self._logbook
                return self._authed(region, headers, now, parts[2], handler)
            if len(parts) == 4 and parts[:3] == ["llu", "notifications", "settings"]:
                return self._authed(region, headers, now, parts[3], self._notifications)
            if p == "/user":
                return self._authed(region, headers, now, None, self._user)
            if p == "/account":
                return self._authed(region, headers, now, None, self._account_ep)
        return _json(404, {"message": "NotFound"})

    # -- login ------------------------------------------------------------------------------------

    def _login(self, region: str, headers: dict[str, str], body: bytes, now: float) -> _Response:
        if self.maintenance_on_login:
            return _json(911, {"status": 911})
        product = headers.get("product", "").strip()
        version = headers.get("version", "").strip()
        if not product or not version:
            return _json(400, _ERR_HEADER)
        try:
            payload = json.loads(body.decode("utf-8")) if body else None
        except (ValueError, UnicodeDecodeError):
            return _json(400, {"message": "InvalidJSON"})
        email = payload.get("email") if isinstance(payload, dict) else None
        password = payload.get("password") if isinstance(payload, dict) else None
        bad = {"status": 2, "error": {"message": self.bad_credentials_message}}
        if not isinstance(email, str) or not isinstance(password, str):
            return _json(200, bad)
        acc = self.accounts.get(email.strip().lower())
        if acc is None:
            return _json(200, bad)
        if acc.locked_until > now:
            return _json(200, _LOCKED)
        if not hmac.compare_digest(password.encode(), acc.password.encode()):
            acc.failures = [t for t in acc.failures if t > now - LOCK_INTERVAL_S]
            acc.failures.append(now)
            if len(acc.failures) >= LOCK_FAILURES:
                acc.locked_until = now + LOCKOUT_S
                acc.failures.clear()
            return _json(200, bad)
        acc.failures.clear()
        if region != acc.home_region:
            return _json(200, {"status": 0, "data": {"redirect": True, "region": acc.home_region}})
        return _json(200, self._after_password(acc, product, int(now)))

    def _continue(self, step_type: str, headers: dict[str, str], now: float) -> _Response:
        claims = self._bearer(headers, now)
        if claims is None or claims.get("step") is not True:
            return _json(401, _ERR_JWT)
        acc = next((a for a in self.accounts.values() if a.user_id == claims.get("id")), None)
        if acc is None or step_type not in ("tou", "pp"):
            return _json(401, _ERR_JWT)
        if not acc.pending_steps or acc.pending_steps[0] != step_type:
            return _json(401, _ERR_JWT)
        acc.pending_steps.pop(0)
        if step_type == "tou":
            acc.tou_accept = int(now)
        else:
            acc.pp_accept = int(now)
        product = str(claims.get("s") or headers.get("product") or "llu.ios")
        return _json(200, self._after_password(acc, product, int(now)))

    # -- authenticated endpoints ------------------------------------------------------------------

    def _bearer(self, headers: dict[str, str], now: float) -> JsonObj | None:
        auth = headers.get("authorization", "").strip()
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self._validate(token.strip(), now)

    def _authed(
        self,
        region: str,
        headers: dict[str, str],
        now: float,
        target_id: str | None,
        handler: Callable[[SimAccount, str | None, float, str], JsonObj],
    ) -> _Response:
        if self.maintenance:
            return _json(911, {"status": 911})
        product = headers.get("product", "").strip()
        version = headers.get("version", "").strip()
        if not product or not version:
            return _json(400, _ERR_HEADER)
        if compare_versions(version, self.min_version) < 0:
            return _json(403, {"data": {"minimumVersion": self.min_version}, "status": 920})
        claims = self._bearer(headers, now)
        if claims is None or claims.get("step") is True:
            return _json(401, _ERR_JWT)
        acc = next((a for a in self.accounts.values() if a.user_id == claims.get("id")), None)
        if acc is None:
            return _json(401, _ERR_JWT)
        account_id = headers.get("account-id", "").strip()
        if not account_id:
            return _json(400, _ERR_HEADER)
        if account_id != acc.account_id:
            return _json(self.wrong_account_id_status, _ERR_HEADER if self.wrong_account_id_status == 400 else _ERR_JWT)
        if claims.get("region") != region and (target_id is not None or self.foreign_host_blocks_all):
            return _json(200, _ERR_PATIENT)
        body = handler(acc, target_id, now, region)
        if body.get("status") == 0:
            body["ticket"] = self._ticket(acc, str(claims.get("s") or product), int(now))
        return _json(200, body)

    def _followed(self, acc: SimAccount, patient_id: str | None) -> SimPatient | None:
        if patient_id is None or patient_id not in acc.patient_ids:
            return None
        return self.patients.get(patient_id)

    def _connections(self, acc: SimAccount, _t: str | None, now: float, region: str) -> JsonObj:
        pats = [self.patients[pid] for pid in acc.patient_ids]
        if self.shuffle and len(pats) > 1:
            rng = random.Random(_mix64(self.seed, 4242, self._shuffle_counter))
            self._shuffle_counter += 1
            rng.shuffle(pats)
        data = []
        for p in pats:
            conn, cur = p.connection_json(now)
            data.append(conn)
            self.served_connections.append(ServedGraph(now, p.id, cur, (), region, "connections"))
        return {"status": 0, "data": data}

    def _graph(self, acc: SimAccount, patient_id: str | None, now: float, region: str) -> JsonObj:
        pat = self._followed(acc, patient_id)
        if pat is None:
            return dict(_ERR_PATIENT)
        conn, cur = pat.connection_json(now)
        hist = pat.history(now)
        data: JsonObj = {"connection": conn}
        if pat.active_sensors_mode == "normal":
            data["activeSensors"] = [
                {"sensor": pat.sensor_json(device_id=pat.device_id), "device": pat.device_json(now)}
            ]
        elif pat.active_sensors_mode == "empty":
            data["activeSensors"] = []
        data["graphData"] = [pat.glucose_item(t, mg, item_type=0, trend=None) for t, mg in hist]
        self.served.append(ServedGraph(now, pat.id, cur, tuple(t for t, _ in hist), region, "graph"))
        return {"status": 0, "data": data}

    def _logbook(self, acc: SimAccount, patient_id: str | None, now: float, region: str) -> JsonObj:
        pat = self._followed(acc, patient_id)
        if pat is None:
            return dict(_ERR_PATIENT)
        return {"status": 0, "data": pat.logbook_json(now)}

    def _notifications(self, acc: SimAccount, connection_id: str | None, now: float, region: str) -> JsonObj:
        pat = next(
            (self.patients[p] for p in acc.patient_ids if self.patients[p].connection_id == connection_id),
            None,
        )
        if pat is None:
            return dict(_ERR_PATIENT)
        data = {
            "connectionId": pat.connection_id,
            "alarmRules": pat.alarm_rules(),
            "std": {},
            "patientDevice": pat.device_json(now),
        }
        return {"status": 0, "data": data}

    def _user(self, acc: SimAccount, _t: str | None, now: float, region: str) -> JsonObj:
        """``GET /user``: the body of a successful login (without touching ``lastLogin``) [§9]."""
        return self._login_body(acc, "llu.ios", int(now))

    def _account_ep(self, acc: SimAccount, _t: str | None, now: float, region: str) -> JsonObj:
        return {"status": 0, "data": {"user": self._user_json(acc, full=False)}}


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
            payload = resp.body
            accept = headers.get("accept-encoding", "")
            use_gzip = (
                sim.gzip_enabled
                and bool(payload)
                and any(
                    tok.split(";")[0].strip().lower() == "gzip" and "q=0" not in tok.replace(" ", "")
                    for tok in accept.split(",")
                )
            )
            if use_gzip:
                payload = gzip.compress(payload, mtime=0)
            self.send_response(resp.status, _REASONS.get(resp.status))
            if resp.content_type:
                self.send_header("Content-Type", resp.content_type)
            if use_gzip:
                self.send_header("Content-Encoding", "gzip")
            for k, v in resp.headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def date_time_string(self, timestamp: float | None = None) -> str:
            return formatdate(sim.clock() if timestamp is None else timestamp, usegmt=True)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

    return Handler
