"""The simulated patient: glucose curve, reading times, trend and colour, and the JSON built from them.

Section numbers refer to ``docs/librelinkup-api.md``: the LLU timestamp format, the current reading and the lagging
5-minute history of graphData (§7.2), the logbook (§8).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from tools.simulators.librelinkup.constants import (
    HISTORY_EVERY,
    HISTORY_LAG_S,
    HISTORY_WINDOW_S,
    LOGBOOK_WINDOW_S,
    TREND_WINDOW_S,
    JsonObj,
)
from tools.simulators.librelinkup.plumbing import _mix64


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


def _curve(rng: random.Random, profile: str) -> tuple[float, list[tuple[float, float, float]]]:
    """The base value and the (amplitude, period, phase) of each sine of a patient's glucose curve."""
    if profile == "fast":
        return rng.uniform(180.0, 190.0), [
            (rng.uniform(65.0, 75.0), rng.uniform(90.0, 110.0) * 60.0, rng.uniform(0.0, 2 * math.pi)),
            (rng.uniform(8.0, 12.0), rng.uniform(35.0, 45.0) * 60.0, rng.uniform(0.0, 2 * math.pi)),
            (rng.uniform(25.0, 35.0), rng.uniform(6.0, 8.0) * 3600.0, rng.uniform(0.0, 2 * math.pi)),
        ]
    return rng.uniform(140.0, 160.0), [
        (rng.uniform(40.0, 55.0), rng.uniform(4.5, 7.0) * 3600.0, rng.uniform(0.0, 2 * math.pi)),
        (rng.uniform(20.0, 30.0), rng.uniform(80.0, 120.0) * 60.0, rng.uniform(0.0, 2 * math.pi)),
        (rng.uniform(5.0, 10.0), rng.uniform(25.0, 40.0) * 60.0, rng.uniform(0.0, 2 * math.pi)),
        (rng.uniform(10.0, 20.0), rng.uniform(20.0, 30.0) * 3600.0, rng.uniform(0.0, 2 * math.pi)),
    ]


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

    ``profile="fast"``: a patient whose glucose swings fast (meals, corrections): a wave of about
    75 mg/dL every 1.5 to 2 hours on top, so rises and falls of 3 to 6 mg/dL/min come several times a day.
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
        profile: str = "steady",
    ) -> None:
        if units not in ("mgdl", "mmol"):
            raise ValueError("units must be 'mgdl' or 'mmol'")
        if profile not in ("steady", "fast"):
            raise ValueError("profile must be 'steady' or 'fast'")
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
        self.tampers: list[Any] = []  # tampering.Tamper rules: readings no sensor gives (issue 21)
        self._offline: list[tuple[float, float]] = []
        self._late: list[_LateRule] = []
        # curve parameters
        self._base, self._waves = _curve(random.Random(seed), profile)

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
        self.tampers.clear()

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
