"""JavaScript-flavoured values, moment.js dates and the ``qs`` query syntax the server relies on.

Nightscout is a Node.js server; what it stores and answers follows JavaScript coercion rules
(``docs/nightscout-api.md``). These helpers reproduce them for the stand-in.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard
from urllib.parse import parse_qsl

from tools.simulators.nightscout.constants import _EPOCH, _UNDEF, MIN_TIMESTAMP, JsonObj

# --------------------------------------------------------------------------------------------------
# JavaScript-flavoured value helpers
# --------------------------------------------------------------------------------------------------


def _is_num(v: Any) -> TypeGuard[int | float]:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _js_truthy(v: Any) -> bool:
    if v is _UNDEF or v is None or v is False:
        return False
    if _is_num(v):
        return not (v == 0 or (isinstance(v, float) and math.isnan(v)))
    if isinstance(v, str):
        return v != ""
    return True


def _js_num_str(v: int | float) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        if v.is_integer() and abs(v) < 1e21:
            return str(int(v))
        text = repr(v)
        return re.sub(r"e([+-])0*(\d)", r"e\1\2", text)
    return str(v)


def _js_str(v: Any) -> str:
    """``String(v)`` of JavaScript."""
    if v is _UNDEF:
        return "undefined"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if _is_num(v):
        return _js_num_str(v)
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return ",".join("" if x is None or x is _UNDEF else _js_str(x) for x in v)
    return "[object Object]"


def _js_strict_eq(a: Any, b: Any) -> bool:
    """JavaScript ``===`` between decoded JSON values (objects compare by reference: never equal)."""
    if a is _UNDEF or b is _UNDEF:
        return a is b
    if a is None or b is None:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_num(a) and _is_num(b):
        return bool(a == b)
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return False


def _parse_int(v: Any) -> int | float:
    """JavaScript ``parseInt(v)`` (radix 10, or 16 with a ``0x`` prefix); NaN when no digits."""
    text = _js_str(v).lstrip(" \t\n\r\v\f\u00a0\ufeff")
    m = re.match(r"([+-]?)(0[xX][0-9a-fA-F]+|\d+)", text)
    if not m:
        return math.nan
    digits = m.group(2)
    value = int(digits, 16) if digits[:2].lower() == "0x" else int(digits)
    return -value if m.group(1) == "-" else value


_NUMERIC_RE = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")


def _is_number_in_string(v: Any) -> bool:
    return isinstance(v, str) and bool(_NUMERIC_RE.match(v))


def _num(v: float) -> int | float:
    return int(v) if math.isfinite(v) and v.is_integer() and abs(v) < 2**53 else v


def _to_js_number(v: Any) -> int | float:
    """``Number(v)`` of JavaScript for decoded JSON values."""
    if v is _UNDEF:
        return math.nan
    if v is None or v is False:
        return 0
    if v is True:
        return 1
    if _is_num(v):
        return _num(float(v)) if isinstance(v, float) else v
    if isinstance(v, str):
        s = v.strip()
        if s == "":
            return 0
        if re.fullmatch(r"[+-]?Infinity", s):
            return -math.inf if s.startswith("-") else math.inf
        if re.fullmatch(r"0[xX][0-9a-fA-F]+", s):
            return int(s, 16)
        if _NUMERIC_RE.match(s):
            return _num(float(s))
        return math.nan
    return math.nan


def _plain(obj: Any) -> Any:
    """Make a value serialise like ``JSON.stringify`` (integral floats as integers, NaN as null)."""
    if isinstance(obj, float):
        return _num(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items() if v is not _UNDEF}
    if isinstance(obj, list | tuple):
        return [None if v is _UNDEF else _plain(v) for v in obj]
    return obj


def _dumps(obj: Any) -> bytes:
    text = json.dumps(_plain(obj), separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"Unexpected token {name[:1]} in JSON")


def _loads(raw: bytes) -> Any:
    """``JSON.parse`` of a request body (numbers: integral values become ints)."""
    return json.loads(raw.decode("utf-8"), parse_float=lambda s: _num(float(s)), parse_constant=_reject_constant)


# --------------------------------------------------------------------------------------------------
# Dates (moment.js behaviour the server relies on)
# --------------------------------------------------------------------------------------------------

_ISO_RE = re.compile(
    r"^\s*(?P<y>\d{4})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2}))?)?"
    r"(?:[T ](?P<h>\d{2})(?::?(?P<mi>\d{2})(?::?(?P<s>\d{2})(?:[.,](?P<f>\d+))?)?)?"
    r"(?P<tz>\s*Z|[+-]\d{2}(?::?\d{2})?)?)?$"
)
_RFC2822_RE = re.compile(
    r"^\s*(?:[A-Za-z]{3},?\s+)?\d{1,2}\s+[A-Za-z]{3}\s+\d{2,4}\s+\d{2}:\d{2}(?::\d{2})?\s+"
    r"(?:[+-]\d{4}|UT|GMT|[ECMP][SD]T|Z)\s*$"
)
_MAX_DATE_MS = 8_640_000_000_000_000


def _parse_iso(text: str) -> tuple[int, int] | None:
    """``moment.parseZone(text, ISO_8601)`` → (epoch ms, utcOffset minutes), or None if invalid."""
    m = _ISO_RE.match(text)
    if not m:
        return None
    try:
        y, mo, d = int(m["y"]), int(m["mo"] or 1), int(m["d"] or 1)
        h, mi, s = int(m["h"] or 0), int(m["mi"] or 0), int(m["s"] or 0)
        frac_ms = int(((m["f"] or "") + "000")[:3])  # sub-millisecond digits are truncated [§2.4]
        extra_day = 0
        if h == 24 and mi == 0 and s == 0 and frac_ms == 0:
            h, extra_day = 0, 1
        base = datetime(y, mo, d, h, mi, s, tzinfo=UTC) + timedelta(days=extra_day)
    except ValueError:
        return None
    offset = 0
    tz = (m["tz"] or "").strip()
    if tz and tz != "Z":
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 60 + int(digits[2:4] or 0))
    ms = (base - _EPOCH) // timedelta(milliseconds=1) + frac_ms - offset * 60_000
    return ms, offset


def _email_datetime(text: str) -> datetime | None:
    """An RFC 2822 / HTTP date as an aware datetime (UTC when it names no zone), or None."""
    try:
        dt = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def _parse_rfc2822(text: str) -> tuple[int, int] | None:
    if not _RFC2822_RE.match(text):
        return None
    dt = _email_datetime(text)
    if dt is None:
        return None
    off = dt.utcoffset()
    offset = int(off.total_seconds() // 60) if off is not None else 0
    return (dt - _EPOCH) // timedelta(milliseconds=1), offset


def _parse_zone(value: Any) -> tuple[int, int] | None:
    """``moment.parseZone(value)`` for a decoded JSON value (None = invalid moment)."""
    if _is_num(value):
        if not math.isfinite(value) or abs(value) > _MAX_DATE_MS:
            return None
        return math.trunc(value), 0
    if isinstance(value, str):
        return _parse_iso(value) or _parse_rfc2822(value)
    return None


def _moment_local(value: Any) -> tuple[int, int] | None:
    """``moment(value)`` on a UTC host: the instant, with offset 0."""
    parsed = _parse_zone(value)
    return None if parsed is None else (parsed[0], 0)


def _iso_utc(ms: int) -> str | None:
    """``toISOString()``: ``YYYY-MM-DDTHH:mm:ss.SSSZ`` (None outside years 1..9999)."""
    try:
        dt = _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return None
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _http_date(ms: int) -> str:
    return email.utils.formatdate(ms / 1000, usegmt=True)


def _parse_http_date(text: str | None) -> int | None:
    if not text:
        return None
    dt = _email_datetime(text)
    return None if dt is None else (dt - _EPOCH) // timedelta(milliseconds=1)


def _v3_parse_date(value: Any) -> tuple[int, int] | None:
    """``dateTools.parseToMoment`` of API v3 [§5.3 step 2]."""
    if not _js_truthy(value):
        return None
    if isinstance(value, list):
        for item in value:
            parsed = _v3_parse_date(item)
            if parsed is not None:
                return parsed
        return None
    if _is_number_in_string(value):
        value = _num(float(value))
    if _is_num(value):
        if not math.isfinite(value) or abs(value) > _MAX_DATE_MS:
            return None
        ms = math.trunc(value)
        if ms < MIN_TIMESTAMP:
            ms *= 1000  # epoch seconds
        if ms < MIN_TIMESTAMP or ms > _MAX_DATE_MS:
            return None
        return ms, 0
    if isinstance(value, str):
        parsed = _parse_iso(value) or _parse_rfc2822(value)
        if parsed is None or parsed[0] < MIN_TIMESTAMP:
            return None
        return parsed
    return None


def _version_tuple(version: str) -> tuple[int, int, int]:
    parts = [int(p) for p in re.findall(r"\d+", version)[:3]]
    if not parts:
        return (15, 0, 7)
    while len(parts) < 3:
        parts.append(0)
    return (parts[0], parts[1], parts[2])


# --------------------------------------------------------------------------------------------------
# Query strings (the ``qs`` "extended" syntax Express uses)
# --------------------------------------------------------------------------------------------------


def _qs_parse(raw: str) -> JsonObj:
    """``find[date][$gte]=1&a[]=x`` → ``{"find": {"date": {"$gte": "1"}}, "a": ["x"]}``."""
    out: JsonObj = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        m = re.match(r"^([^\[]+)((?:\[[^\]]*\])*)$", key)
        if not m:
            _qs_put(out, [key], value)
            continue
        parts = [m.group(1), *re.findall(r"\[([^\]]*)\]", m.group(2))]
        _qs_put(out, parts[:6], value)
    return out


def _qs_put(target: JsonObj, parts: list[str], value: str) -> None:
    node: Any = target
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        nxt = None if last else parts[i + 1]
        if isinstance(node, list):
            if last:
                node.append(value)
                return
            child: Any = [] if nxt == "" or (nxt or "").isdigit() else {}
            node.append(child)
            node = child
            continue
        if last:
            if part in node:
                existing = node[part]
                node[part] = [*existing, value] if isinstance(existing, list) else [existing, value]
            else:
                node[part] = value
            return
        if part not in node or not isinstance(node[part], dict | list):
            node[part] = [] if nxt == "" or (nxt or "").isdigit() else {}
        node = node[part]
