"""A faithful, deterministic Nightscout stand-in (development tooling, never shipped to Lambda).

Reproduces what a CGM bridge can observe of a real Nightscout server (cgm-remote-monitor 15.0.7 by
default; ``version="15.0.6"`` or older switches to the legacy behaviour). Section numbers refer to
``docs/nightscout-api.md``.

* API v1 upload ``POST /api/v1/entries[.json|/]``: credentials (§3.1/§3.2), ``api:entries:read`` +
  ``api:entries:create`` (§3.4), body rules (§2.2), date normalisation (§2.4), upsert on
  ``{sysTime, type}`` with ``$set`` merge (15.0.7) or full replacement (≤ 15.0.6) (§2.5), replies (§2.6).
* Read-back ``GET /api/v1/entries[.json]``, ``/entries/<type>``, ``/entries/current``, echo (§4):
  implicit 4-day window, ``find[...]`` with ``parseInt`` semantics, TSV/CSV content negotiation.
* ``/api/v1/status``, ``/api/v1/verifyauth`` (§3.6), ``/api/v2/authorization/*`` (§3.3, §3.7).
* ``AUTH_FAIL_DELAY`` (§3.5) as a real, bounded sleep per client IP.
* API v3 (§5): Bearer-JWT only, one document per POST, identifier rule, de-duplication,
  immutable fields, search, read, version, status, lastModified; entries and treatments.
* Treatments (§11): v1 upsert on ``created_at + eventType`` with ``isAnnouncement`` added for
  announcements, v3 stored as sent; the 10-minute alarm snooze a recent non-announcement treatment
  causes (:meth:`NightscoutStandIn.urgent_alarms_snoozed`) and the announcement it would push.
* Faults: unreachable host, canned error replies, hanging requests.

Time comes from the injected clock (seconds since the epoch), except for the real-time waits
(``AUTH_FAIL_DELAY``, :meth:`NightscoutStandIn.hang_next`, the ≤ 15.0.6 ``POST []`` hang), which are
real seconds, bounded, and released by :meth:`NightscoutStandIn.stop`.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import email.utils
import functools
import hashlib
import hmac
import html
import json
import math
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any, TypeGuard
from urllib.parse import parse_qsl, unquote, urlsplit

from tools.simulators.server import LoopbackServer

__all__ = [
    "API3_VERSION",
    "DEFAULT_API_SECRET",
    "NS_UUID_NAMESPACE",
    "UNAUTHORIZED_BODY",
    "NightscoutStandIn",
    "RecordedRequest",
    "access_token_for",
    "v3_identifier",
]

JsonObj = dict[str, Any]

DEFAULT_API_SECRET = "test-secret-123456"
API3_VERSION = "3.0.3-alpha"
JWT_LIFETIME_S = 28_800  # 8 h [§3.7]
FOUR_DAYS_MS = 345_600_000  # implicit read window [§4]
TWO_DAYS_MS = 172_800_000  # in-memory cache [§4]
ENTRIES_DEFAULT_COUNT = 10
MIN_PASSPHRASE_LENGTH = 12  # [§3.2]
MIN_TIMESTAMP = 946_684_800_000  # v3 [§5.3]
MIN_UTC_OFFSET, MAX_UTC_OFFSET = -1440, 1440
API3_MAX_LIMIT = 1000
MAX_BODY = 50 * 1024 * 1024  # JSON body limit [§2.1]
MAX_HANG_S = 30.0  # upper bound of every real-time hold
MAX_AUTH_DELAY_S = 30.0
NS_UUID_NAMESPACE = uuid.UUID(bytes=b"NightscoutRocks!")  # [§5.4]
SNOOZE_WINDOW_MS = 600_000  # treatmentnotify isCurrent(): under 10 minutes old [§11]
UNAUTHORIZED_BODY: JsonObj = {"status": 401, "message": "Unauthorized", "description": "Invalid/Missing"}

BUILTIN_ROLES: dict[str, list[str]] = {  # lib/authorization/storage.js [§3.4]
    "admin": ["*"],
    "denied": [],
    "status-only": ["api:status:read"],
    "readable": ["*:*:read"],
    "careportal": ["api:treatments:create"],
    "devicestatus-upload": ["api:devicestatus:create"],
    "activity": ["api:activity:create"],
}

_V3_IMMUTABLE = (
    "identifier", "date", "utcOffset", "eventType", "device", "app",
    "srvCreated", "subject", "srvModified", "modifiedBy", "isValid",
)  # fmt: skip
_V3_COLLECTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    # name: (dedup fallback fields, fallback date field)  [§5.3 step 4]
    "entries": (("date", "type"), "date"),
    "treatments": (("created_at", "eventType"), "created_at"),
}
_V3_RESERVED = ("token", "sort", "sort$desc", "limit", "skip", "fields", "now")
_V3_OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "re")
_V1_INT_FIELDS = ("date", "sgv", "filtered", "unfiltered", "rssi", "noise", "mbg")  # query walker [§4]
_EXTENSIONS = {
    "json": "application/json",
    "csv": "text/csv",
    "txt": "text/plain",
    "tsv": "text/tab-separated-values",
    "html": "text/html",
    "svg": "image/svg+xml",
    "png": "image/png",
    "js": "application/javascript",
}
_ENTRY_FORMATS = ["text/plain", "text/tab-separated-values", "text/csv", "application/json"]
_STATUS_FORMATS = [
    "text/html", "image/png", "image/svg+xml", "application/javascript", "text/plain", "application/json",
]  # fmt: skip
_HEX24 = re.compile(r"^[0-9a-fA-F]{24}$")
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_REASONS = {
    200: "OK", 201: "Created", 302: "Found", 304: "Not Modified", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 406: "Not Acceptable", 410: "Gone",
    413: "Payload Too Large", 422: "Unprocessable Entity", 500: "Internal Server Error",
}  # fmt: skip


class _Undefined:
    """JavaScript ``undefined`` (a missing key), distinct from ``null`` (None)."""

    def __repr__(self) -> str:
        return "undefined"


_UNDEF = _Undefined()


# --------------------------------------------------------------------------------------------------
# Public helpers
# --------------------------------------------------------------------------------------------------


def access_token_for(api_secret: str, subject_name: str, subject_id: str) -> str:
    """Access token of a subject [§3.3]: ``abbrev-<16 hex of sha1(sha1_hex(API_SECRET) + _id)>``."""
    abbrev = re.sub(r"[^A-Za-z0-9_]", "", subject_name.lower())[:10]
    return f"{abbrev}-{_subject_digest(api_secret, subject_id)[:16]}"


def v3_identifier(device: Any, date: Any, event_type: Any = None) -> str:
    """The v3 identifier rule [§5.4]: ``uuid5("<device>_<date>[_<eventType>]", "NightscoutRocks!")``.

    Pass ``None`` for a JSON ``null`` device; a missing device is spelled ``"undefined"`` by the
    server, which this helper does when ``device`` is the string ``"undefined"``.
    """
    key = f"{_js_str(device)}_{_js_str(date)}"
    if _js_truthy(event_type):
        key += f"_{_js_str(event_type)}"
    return str(uuid.uuid5(NS_UUID_NAMESPACE, key))


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()  # noqa: S324 - protocol-mandated digest


def _subject_digest(api_secret: str, subject_id: str) -> str:
    return _sha1(_sha1(api_secret) + subject_id)


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


# --------------------------------------------------------------------------------------------------
# Mongo-like matching and sorting
# --------------------------------------------------------------------------------------------------


def _get_path(doc: Mapping[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return _UNDEF
    return node


def _mongo_eq(stored: Any, value: Any) -> bool:
    if value is None or value is _UNDEF:
        return stored is None or stored is _UNDEF
    if stored is _UNDEF or stored is None:
        return False
    if isinstance(stored, list) and not isinstance(value, list):
        return any(_mongo_eq(x, value) for x in stored)
    if isinstance(value, bool) or isinstance(stored, bool):
        return isinstance(value, bool) and isinstance(stored, bool) and value == stored
    if _is_num(value) and _is_num(stored):
        return bool(stored == value)
    if isinstance(value, str) and isinstance(stored, str):
        return stored == value
    if isinstance(value, dict) and isinstance(stored, dict):
        return stored.keys() == value.keys() and all(_mongo_eq(stored[k], value[k]) for k in value)
    if isinstance(value, list) and isinstance(stored, list):
        return len(value) == len(stored) and all(_mongo_eq(a, b) for a, b in zip(stored, value, strict=True))
    return False


def _mongo_cmp(stored: Any, op: str, value: Any) -> bool:
    if isinstance(stored, list):
        return any(_mongo_cmp(x, op, value) for x in stored)
    same = (_is_num(stored) and _is_num(value)) or (isinstance(stored, str) and isinstance(value, str))
    if not same:
        return False
    if op == "$gt":
        return bool(stored > value)
    if op == "$gte":
        return bool(stored >= value)
    if op == "$lt":
        return bool(stored < value)
    return bool(stored <= value)


def _match_ops(stored: Any, ops: Mapping[str, Any]) -> bool:
    for op, arg in ops.items():
        if op == "$eq":
            ok = _mongo_eq(stored, arg)
        elif op == "$ne":
            ok = not _mongo_eq(stored, arg)
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            ok = _mongo_cmp(stored, op, arg)
        elif op == "$in":
            ok = any(_mongo_eq(stored, a) for a in (arg if isinstance(arg, list) else [arg]))
        elif op == "$nin":
            ok = not any(_mongo_eq(stored, a) for a in (arg if isinstance(arg, list) else [arg]))
        elif op == "$exists":
            ok = (stored is not _UNDEF) == _js_truthy(arg)
        elif op == "$regex":
            try:
                ok = isinstance(stored, str) and re.search(str(arg), stored) is not None
            except re.error:
                ok = False
        else:
            ok = False
        if not ok:
            return False
    return True


def _matches(doc: Mapping[str, Any], query: Mapping[str, Any]) -> bool:
    for key, cond in query.items():
        if key == "$or":
            if not any(_matches(doc, q) for q in cond):
                return False
            continue
        if key == "$and":
            if not all(_matches(doc, q) for q in cond):
                return False
            continue
        stored = _get_path(doc, key)
        if isinstance(cond, dict) and cond and all(str(k).startswith("$") for k in cond):
            if not _match_ops(stored, cond):
                return False
        elif not _mongo_eq(stored, cond):
            return False
    return True


def _sort_rank(v: Any) -> tuple[int, Any]:
    """BSON sort order: null/missing < numbers < strings < objects < arrays < booleans."""
    if v is _UNDEF or v is None:
        return (1, 0)
    if isinstance(v, bool):
        return (8, int(v))
    if _is_num(v):
        return (2, float(v))
    if isinstance(v, str):
        return (3, v)
    if isinstance(v, dict):
        return (4, json.dumps(_plain(v), sort_keys=True))
    return (5, json.dumps(_plain(v), sort_keys=True))


def _sort_docs(docs: list[JsonObj], spec: Sequence[tuple[str, int]]) -> list[JsonObj]:
    def cmp(a: JsonObj, b: JsonObj) -> int:
        for fld, direction in spec:
            ka, kb = _sort_rank(_get_path(a, fld)), _sort_rank(_get_path(b, fld))
            if ka != kb:
                return (-1 if ka < kb else 1) * direction
        return 0

    return sorted(docs, key=functools.cmp_to_key(cmp))


# --------------------------------------------------------------------------------------------------
# Permissions (Apache Shiro style, as shiro-trie checks them)
# --------------------------------------------------------------------------------------------------


def _implies(pattern: str, permission: str) -> bool:
    pat = [set(p.split(",")) for p in pattern.split(":")]
    req = permission.split(":")
    for i, part in enumerate(req):
        if i >= len(pat):
            return True  # a shorter pattern implies everything below it
        if "*" not in pat[i] and part not in pat[i]:
            return False
    return all("*" in p for p in pat[len(req) :])


def _allowed(groups: Iterable[Sequence[str]], permission: str) -> bool:
    return any(any(_implies(p, permission) for p in group) for group in groups)


# --------------------------------------------------------------------------------------------------
# HTML purification (DOMPurify, approximated)
# --------------------------------------------------------------------------------------------------

_DANGEROUS_BLOCK = re.compile(
    r"(?is)<(script|style|iframe|object|embed|noscript|template|title|textarea|xmp|noembed|noframes)\b.*?"
    r"(?:</\1\s*>|$)"
)


def _sanitize(text: str) -> str:
    if not any(c in text for c in "<>&\u00a0"):
        return text
    text = _DANGEROUS_BLOCK.sub("", text)
    text = re.sub(r"<[^>]*>", "", text)
    text = html.unescape(text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\u00a0", "&nbsp;")


def _purify(obj: Any) -> Any:
    """String values that are not numeric pass through the sanitiser [§2.2]."""
    if isinstance(obj, dict):
        for k, v in list(obj.items()):
            obj[k] = _purify(v)
        return obj
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            obj[i] = _purify(v)
        return obj
    if isinstance(obj, str) and isinstance(_to_js_number(obj), float) and math.isnan(_to_js_number(obj)):
        return _sanitize(obj)
    return obj


# --------------------------------------------------------------------------------------------------
# Content negotiation (Express ``req.accepts`` / ``res.format``)
# --------------------------------------------------------------------------------------------------


def _negotiate(accept: str | None, offers: Sequence[str]) -> str | None:
    if accept is None or accept.strip() == "":
        return offers[0]
    specs: list[tuple[str, str, float, int]] = []
    for index, part in enumerate(accept.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        mtype = pieces[0].lower()
        if "/" not in mtype:
            mtype = "*/*" if mtype == "*" else mtype + "/*"
        q = 1.0
        for param in pieces[1:]:
            if param.lower().startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        t, s = mtype.split("/", 1)
        specs.append((t, s, q, index))
    ranked: list[tuple[float, int, int, int, str]] = []
    for offer_index, offer in enumerate(offers):
        ot, os_ = offer.split("/", 1)
        best: tuple[int, float, int] | None = None
        for t, s, q, index in specs:
            if t not in ("*", ot) or s not in ("*", os_):
                continue
            spec = (4 * (t == ot) + 2 * (s == os_), q, index)
            if best is None or (spec[0], spec[1], -spec[2]) > (best[0], best[1], -best[2]):
                best = spec
        if best is not None and best[1] > 0:
            ranked.append((-best[1], -best[0], best[2], offer_index, offer))
    if not ranked:
        return None
    ranked.sort()
    return ranked[0][4]


# --------------------------------------------------------------------------------------------------
# Records and plumbing
# --------------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request as received. ``status`` is None while pending or when no reply was sent."""

    method: str
    path: str  # as sent, without the query string
    query: dict[str, str]  # flat: "find[date][$gte]" -> "1795..." (last value wins)
    status: int | None
    headers: dict[str, str]  # lower-case names
    body: Any  # the JSON-decoded body, or None (empty / not JSON)
    time: float  # virtual time at arrival
    raw_query: str = ""
    raw_body: bytes = b""
    fault: str | None = None  # "unreachable", "fail_next", "hang_next", "no-reply"


@dataclass
class _Fault:
    count: int
    status: int
    body: bytes
    content_type: str | None
    path: str | None
    method: str | None
    headers: dict[str, str]


@dataclass
class _Hang:
    count: int
    seconds: float
    path: str | None


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    no_reply: bool = False  # hold the connection, then close it without replying
    fault: str | None = None


@dataclass
class _Req:
    method: str
    path: str  # original path (case kept), extension stripped
    lpath: str  # lower-cased path for routing, one trailing slash removed
    query: JsonObj
    headers: dict[str, str]
    accept: str | None
    body: Any
    body_error: str | None
    is_json: bool
    client_ip: str


@dataclass
class _Subject:
    id: str
    name: str
    roles: list[str]
    created_at: str


@dataclass
class _Auth:
    groups: list[list[str]]
    subject: _Subject | None = None
    defaults: bool = False
    failed: bool = False

    def can(self, permission: str) -> bool:
        return _allowed(self.groups, permission)


def _json(status: int, obj: Any, headers: Sequence[tuple[str, str]] = ()) -> _Response:
    return _Response(status, _dumps(obj), [("Content-Type", "application/json; charset=utf-8"), *headers])


def _text(status: int, text: str, ctype: str = "text/plain; charset=utf-8") -> _Response:
    return _Response(status, text.encode("utf-8"), [("Content-Type", ctype)])


def _unauthorized() -> _Response:
    return _json(401, UNAUTHORIZED_BODY)


def _cannot(method: str, path: str) -> _Response:
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n'
        f"</head>\n<body>\n<pre>Cannot {method} {html.escape(path)}</pre>\n</body>\n</html>\n"
    )
    return _text(404, page, "text/html; charset=utf-8")


def _v3_status(status: int, message: str | None = None) -> _Response:
    body: JsonObj = {"status": status}
    if message:
        body["message"] = message
    return _json(status, body)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _V3Error(Exception):
    def __init__(self, response: _Response) -> None:
        super().__init__(response.status)
        self.response = response


class _MongoError(Exception):
    pass


# --------------------------------------------------------------------------------------------------
# The stand-in
# --------------------------------------------------------------------------------------------------


class NightscoutStandIn(LoopbackServer):
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
        self._unreachable = False
        self._delay_until: dict[str, float] = {}
        self._jwt_generation = 0
        self._oid_counter = 0

    # -- lifecycle --------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)

    # -- version-dependent behaviour ---------------------------------------------------------------

    @property
    def merge_upsert(self) -> bool:
        """15.0.7+: ``$set`` merge and JSON reply in input order; older: replacement, sorted, negotiated."""
        return _version_tuple(self.version) >= (15, 0, 7)

    @property
    def api_enabled(self) -> bool:
        return len(self.api_secret) >= MIN_PASSPHRASE_LENGTH

    @property
    def api_secret_sha1(self) -> str:
        return _sha1(self.api_secret)

    @property
    def api_secret_sha512(self) -> str:
        return hashlib.sha512(self.api_secret.encode("utf-8")).hexdigest()

    def _now_ms(self) -> int:
        return round(self.clock() * 1000)

    def _new_oid(self) -> str:
        with self._lock:
            self._oid_counter = (self._oid_counter + 1) & 0xFFFFFF
            counter = self._oid_counter
        return f"{int(self.clock()) & 0xFFFFFFFF:08x}c51b992e71{counter:06x}"

    # -- roles, subjects, tokens ---------------------------------------------------------------------

    def add_role(self, name: str, permissions: Sequence[str]) -> None:
        """Create (or redefine) a role [§3.3]."""
        with self._lock:
            self._roles[name] = list(permissions)
            if name not in self._role_docs:
                self._role_docs[name] = {"_id": self._new_oid(), "created_at": _iso_utc(self._now_ms())}

    def add_subject(self, name: str, roles: Sequence[str], *, subject_id: str | None = None) -> str:
        """Create a subject and return its access token (computed exactly as in §3.3)."""
        with self._lock:
            if subject_id is None:
                subject_id = _sha1(f"subject:{name}:{len(self._subjects)}")[:24]
            self._subjects.append(_Subject(subject_id, name, list(roles), _iso_utc(self._now_ms()) or ""))
            return access_token_for(self.api_secret, name, subject_id)

    def access_token(self, name: str) -> str:
        """Access token of the (first) subject called ``name``."""
        with self._lock:
            for s in self._subjects:
                if s.name == name:
                    return access_token_for(self.api_secret, s.name, s.id)
        raise KeyError(name)

    def uploader_token(self, name: str = "bridge") -> str:
        """Role ``cgmuploader`` (api:entries:create + api:entries:read), one subject; its access token."""
        with self._lock:
            if "cgmuploader" not in self._roles:
                self.add_role("cgmuploader", ["api:entries:create", "api:entries:read"])
            with contextlib.suppress(KeyError):
                return self.access_token(name)
            return self.add_subject(name, ["cgmuploader"])

    def admin_token(self, name: str = "bridge-admin") -> str:
        """A subject with the built-in ``admin`` role (``*``)."""
        with self._lock:
            with contextlib.suppress(KeyError):
                return self.access_token(name)
            return self.add_subject(name, ["admin"])

    def jwt_for(self, access_token: str) -> str:
        """The JWT ``GET /api/v2/authorization/request/<access_token>`` would issue now."""
        authed = self._authorize(access_token)
        if authed is None:
            raise KeyError(access_token)
        return str(authed["token"])

    def rotate_jwt_key(self) -> None:
        """Simulate a redeploy that regenerates the JWT key: every issued JWT becomes invalid [§3.7]."""
        with self._lock:
            self._jwt_generation += 1

    def reset_auth_delay(self) -> None:
        with self._lock:
            self._delay_until.clear()

    def _role_perms(self, role: str) -> list[str]:
        return list(self._roles.get(role, []))

    def _default_groups(self) -> list[list[str]]:
        return [self._role_perms(r) for r in self.default_roles if r in self._roles]

    def _find_subject(self, token: Any) -> _Subject | None:
        """``storage.findSubject``: token (or a prefix of SHA-1(token)) → subject [§3.2]."""
        if not isinstance(token, str) or not token:
            return None
        prefix = token.split("-")[-1]
        if len(prefix) < 16:
            return None
        for s in sorted(self._subjects, key=lambda x: x.name):
            digest = _subject_digest(self.api_secret, s.id)
            token_digest = _sha1(access_token_for(self.api_secret, s.name, s.id))
            if token_digest.startswith(token) or digest.startswith(prefix):
                return s
        return None

    def _jwt_key(self) -> bytes:
        return hashlib.sha256(f"ns-standin:{self.api_secret}:{self._jwt_generation}".encode()).digest()

    def _sign_jwt(self, claims: JsonObj) -> str:
        header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
        payload = _b64url(_dumps(claims))
        sig = hmac.new(self._jwt_key(), f"{header}.{payload}".encode("ascii"), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64url(sig)}"

    def _verify_jwt(self, token: Any) -> JsonObj | None:
        if not isinstance(token, str) or token.count(".") != 2:
            return None
        header_b64, payload_b64, sig_b64 = token.split(".")
        try:
            header = json.loads(_b64url_decode(header_b64))
            claims = json.loads(_b64url_decode(payload_b64))
            sig = _b64url_decode(sig_b64)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
            return None
        with self._lock:
            key = self._jwt_key()
        expected = hmac.new(key, f"{header_b64}.{payload_b64}".encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(sig, expected):
            return None
        exp = claims.get("exp")
        if _is_num(exp) and math.floor(self.clock()) >= exp:
            return None  # expired (jsonwebtoken: now >= exp)
        return claims

    def _authorize(self, access_token: Any) -> JsonObj | None:
        """``authorization.authorize``: access token (or JWT) → fresh JWT + permission groups."""
        claims = self._verify_jwt(access_token)
        user_token = claims.get("accessToken") if claims and claims.get("accessToken") else access_token
        with self._lock:
            subject = self._find_subject(user_token)
            if subject is None:
                return None
            iat = math.floor(self.clock())
            token = self._sign_jwt(
                {
                    "accessToken": access_token_for(self.api_secret, subject.name, subject.id),
                    "iat": iat,
                    "exp": iat + JWT_LIFETIME_S,
                }
            )
            roles = list(dict.fromkeys([*subject.roles, *self.default_roles]))
            return {
                "token": token,
                "sub": subject.name,
                "permissionGroups": [self._role_perms(r) for r in roles],
                "iat": iat,
                "exp": iat + JWT_LIFETIME_S,
            }

    def _is_api_key(self, value: str) -> bool:
        if not self.api_enabled:
            return False
        return value.lower() == self.api_secret_sha1 or value == self.api_secret_sha512

    # -- AUTH_FAIL_DELAY [§3.5] -------------------------------------------------------------------------

    def _apply_auth_delay(self, ip: str) -> None:
        with self._lock:
            deadline = self._delay_until.get(ip)
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait > 0:
                self._stop_event.wait(min(wait, MAX_AUTH_DELAY_S))

    def _add_failed(self, ip: str) -> None:
        self.auth_failures += 1
        now = time.monotonic()
        delay = max(self.auth_fail_delay_ms, 0) / 1000.0
        entry = self._delay_until.get(ip)
        if entry is None:
            self._delay_until[ip] = now + delay
            return
        self._delay_until[ip] = max(entry, now) + delay

    def _resolve(self, ip: str, api_secret: Any, token: Any) -> _Auth:
        """``authorization.resolve`` [§3.1/§3.2]."""
        self._apply_auth_delay(ip)
        with self._lock:
            if api_secret == "null" or not isinstance(api_secret, str):
                api_secret = None
            defaults = self._default_groups()
            if not api_secret and not token:
                return _Auth(defaults, defaults=True)
            if api_secret and self._is_api_key(api_secret):
                self._delay_until.pop(ip, None)
                return _Auth([["*"]])
            access: Any = None
            claims = self._verify_jwt(token) if token else None
            if claims:
                access = claims.get("accessToken")
            if not access and api_secret and self._find_subject(api_secret) is not None:
                access = api_secret
            if access:
                self._delay_until.pop(ip, None)
                subject = self._find_subject(access)
                if subject is None:
                    return _Auth([], failed=True)
                groups = [self._role_perms(r) for r in subject.roles if r in self._roles]
                return _Auth([*groups, *defaults], subject=subject)
            self._add_failed(ip)
            return _Auth([], failed=True)

    def _v1_credentials(self, req: _Req) -> tuple[Any, Any]:
        """(api secret, JWT) from header/query/body; body credentials are removed [§2.2, §3.1]."""
        body = req.body
        q_secret = req.query.get("secret")
        secret: Any = q_secret if _js_truthy(q_secret) else req.headers.get("api-secret")
        if not _js_truthy(secret):
            if isinstance(body, list) and body and isinstance(body[0], dict) and _js_truthy(body[0].get("secret")):
                secret = body[0].pop("secret")
            elif isinstance(body, dict) and _js_truthy(body.get("secret")):
                secret = body.pop("secret")
        token: Any = None
        header = req.headers.get("authorization")
        if header:
            parts = header.split(" ")
            if len(parts) == 2 and parts[0] == "Bearer":  # case-sensitive on v1 [§3.1]
                token = parts[1]
        if not token:
            access: Any = req.query.get("token")
            if not _js_truthy(access):
                access = None
                if isinstance(body, list) and body and isinstance(body[0], dict) and _js_truthy(body[0].get("token")):
                    access = body[0].pop("token")
                elif isinstance(body, dict) and _js_truthy(body.get("token")):
                    access = body.pop("token")
            if access:
                authed = self._authorize(access)
                if authed:
                    token = authed["token"]
        return secret, token

    def _v1_auth(self, req: _Req) -> _Auth:
        secret, token = self._v1_credentials(req)
        return self._resolve(req.client_ip, secret, token)

    # -- store access (copies) ---------------------------------------------------------------------

    @property
    def entries(self) -> list[JsonObj]:
        """Copies of every stored entries document (v1 and v3), in storage order."""
        with self._lock:
            return copy.deepcopy(self._entries)

    @property
    def treatments(self) -> list[JsonObj]:
        with self._lock:
            return copy.deepcopy(self._treatments)

    def announcements(self) -> list[JsonObj]:
        """Stored treatments Nightscout treats as announcements: those marked ``isAnnouncement`` [§11].

        v1 adds the mark to every ``eventType: "Announcement"`` itself; v3 stores only what was sent.
        """
        return [d for d in self.treatments if d.get("isAnnouncement") is True]

    def urgent_alarms_snoozed(self) -> bool:
        """Whether Nightscout would now snooze URGENT alarms because of a recent treatment [§11].

        ``autoSnoozeAlarms`` in lib/plugins/treatmentnotify.js: the newest treatment not in the future
        (automated ``openaps://`` / ``loop://`` ones left out unless manual) that is less than 10 minutes
        old snoozes urgent alarms for ``snoozeMins`` (10) unless it is an announcement.
        """
        last = self._last_current_treatment()
        return last is not None and not last.get("isAnnouncement")

    def pushed_announcement(self) -> JsonObj | None:
        """The announcement Nightscout would push now (the newest treatment, under 10 minutes old) [§11]."""
        last = self._last_current_treatment()
        return last if last is not None and last.get("isAnnouncement") else None

    def _last_current_treatment(self) -> JsonObj | None:
        now = self._now_ms()
        dated: list[tuple[int, JsonObj]] = []
        for doc in self.treatments:
            entered = str(doc.get("enteredBy") or "")
            manual = doc.get("eventType") in ("BG Check", "Meal Bolus", "Carb Correction", "Correction Bolus")
            if entered.startswith(("openaps://", "loop://")) and not manual:
                continue
            parsed = _parse_zone(doc["created_at"]) if isinstance(doc.get("created_at"), str) else None
            mills = parsed[0] if parsed else doc.get("date")
            if _is_num(mills) and mills <= now:
                dated.append((int(mills), doc))
        if not dated:
            return None
        mills, last = max(dated, key=lambda pair: pair[0])
        return last if now - mills < SNOOZE_WINDOW_MS else None

    def sgv_entries(self) -> list[JsonObj]:
        """Stored ``type == "sgv"`` documents sorted by ``date`` (ascending)."""
        with self._lock:
            docs = [copy.deepcopy(d) for d in self._entries if d.get("type") == "sgv"]
        return _sort_docs(docs, [("date", 1)])

    def duplicates(self) -> list[tuple[JsonObj, ...]]:
        """Groups of more than one stored sgv document at the same instant (``date`` ms)."""
        groups: dict[float, list[JsonObj]] = {}
        for doc in self.sgv_entries():
            if _is_num(doc.get("date")):
                groups.setdefault(float(doc["date"]), []).append(doc)
        return [tuple(g) for _, g in sorted(groups.items()) if len(g) > 1]

    def add_entry(self, doc: Mapping[str, Any]) -> JsonObj:
        """Store a document as-is (test set-up); an ``_id`` is added when missing. Returns a copy."""
        stored = copy.deepcopy(dict(doc))
        with self._lock:
            if "_id" not in stored:
                stored = {"_id": self._new_oid(), **stored}
            self._entries.append(stored)
            return copy.deepcopy(stored)

    def clear_entries(self) -> None:
        with self._lock:
            self._entries.clear()
            self._treatments.clear()

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

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._hangs.clear()
            self._unreachable = False

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
            return self._route(req)
        except _V3Error as exc:
            return exc.response

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

    # -- API v1 ---------------------------------------------------------------------------------------

    def _route_v1(self, req: _Req, rest: str) -> _Response:
        if req.body_error and req.method in ("POST", "PUT"):
            return _text(400, f"<pre>{html.escape(req.body_error)}</pre>", "text/html; charset=utf-8")
        parts = [p for p in rest.split("/") if p != ""] if rest != "/" else []
        orig_parts = [unquote(p) for p in req.path[len("/api/v1") :].split("/") if p != ""]
        m = req.method
        if parts[:1] == ["entries"] and len(parts) <= 2:
            auth = self._v1_auth(req)
            if not auth.can("api:entries:read"):  # router-level check [§2.1]
                return _unauthorized()
            if len(parts) == 1:
                if m == "GET":
                    return self._v1_list(req, model=None)
                if m == "POST":
                    if not self.api_enabled:
                        return _cannot(m, req.path)
                    if not auth.can("api:entries:create"):
                        return _unauthorized()
                    return self._v1_create(req)
            elif parts[1] == "preview" and m == "POST":
                if not auth.can("api:entries:create"):
                    return _unauthorized()
                return self._v1_preview(req)
            elif m == "GET":
                if parts[1] == "current":
                    return self._v1_list(req, model=None, current=True)
                spec = orig_parts[1] if len(orig_parts) > 1 else parts[1]
                if _HEX24.match(spec):
                    with self._lock:
                        found = next((d for d in self._entries if d.get("_id") == spec.lower()), None)
                        docs: list[Any] = [copy.deepcopy(found)]
                    return self._format_entries(req, docs)
                return self._v1_list(req, model=spec)
            return _cannot(m, req.path)
        if parts[:2] == ["echo", "entries"] and len(parts) <= 3 and m == "GET":
            auth = self._v1_auth(req)
            if not auth.can("api:entries:read"):
                return _unauthorized()
            model = orig_parts[2] if len(orig_parts) > 2 else None
            return self._v1_echo(req, model)
        if parts == ["status"] and m == "GET":
            return self._v1_status(req)
        if parts == ["verifyauth"] and m == "GET":
            return self._v1_verifyauth(req)
        if parts == ["treatments"] and m in ("GET", "POST"):
            auth = self._v1_auth(req)
            if not auth.can("api:treatments:read"):
                return _unauthorized()
            if m == "GET":
                return self._v1_treatments_list(req)
            if not self.api_enabled:
                return _cannot(m, req.path)
            if not auth.can("api:treatments:create"):
                return _unauthorized()
            return self._v1_treatments_create(req)
        return _cannot(m, req.path)

    def _v1_find(self, query: JsonObj, model: str | None) -> tuple[JsonObj, JsonObj]:
        """(user find with the model type, Mongo query) as ``lib/server/query.js`` builds it [§4]."""
        raw_find = query.get("find")
        find: JsonObj = copy.deepcopy(raw_find) if isinstance(raw_find, dict) else {}
        if model is not None:
            find["type"] = model
        user_find = copy.deepcopy(find)
        for prop in _V1_INT_FIELDS:
            if prop in find and _js_truthy(find[prop]):
                find[prop] = self._walk_int(find[prop])
        if not _js_truthy(find.get("date")) and not _js_truthy(find.get("dateString")):
            find["date"] = {"$gte": self._now_ms() - FOUR_DAYS_MS}
        return user_find, find

    def _walk_int(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self._walk_int(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk_int(v) for v in value]
        return _parse_int(value)

    def _v1_count(self, query: JsonObj) -> int:
        raw = query.get("count")
        if not _js_truthy(raw):
            return ENTRIES_DEFAULT_COUNT
        n = _parse_int(raw)
        if isinstance(n, float):
            return ENTRIES_DEFAULT_COUNT
        return abs(n)

    def _v1_list(self, req: _Req, *, model: str | None, current: bool = False) -> _Response:
        query = {} if current else req.query
        count = 1 if current else self._v1_count(query)
        user_find, mongo = self._v1_find(query, None if current else model)
        now = self._now_ms()
        with self._lock:
            docs = [d for d in self._entries if _matches(d, mongo)]
            docs = _sort_docs(docs, [("date", -1)])
            if count:
                docs = docs[:count]
            docs = copy.deepcopy(docs)
            memory = not current and self._served_from_memory(query, user_find, count, now)
            newest_sgv = max(
                (d["date"] for d in self._entries if d.get("type") == "sgv" and _is_num(d.get("date"))),
                default=None,
            )
        if memory:
            for d in docs:
                if _is_num(d.get("date")):
                    d["mills"] = d["date"]
        headers: list[tuple[str, str]] = []
        if newest_sgv is not None:
            headers.append(("Last-Modified", _http_date(int(newest_sgv))))
            ims = _parse_http_date(req.headers.get("if-modified-since"))
            if ims is not None and (int(newest_sgv) // 1000) * 1000 <= ims:
                return _Response(304, b"", headers)
        resp = self._format_entries(req, docs)
        resp.headers.extend(headers)
        return resp

    def _served_from_memory(self, query: JsonObj, user_find: JsonObj, count: int, now: int) -> bool:
        """Only ``type`` filtered and ``count`` within the 2-day cache: answered from memory [§4]."""
        if any(k not in ("count", "find", "token", "secret") for k in query):
            return False
        if any(k != "type" for k in user_find) or count <= 0:
            return False
        wanted = user_find.get("type")
        cached = [
            d
            for d in self._entries
            if _is_num(d.get("date"))
            and d["date"] >= now - TWO_DAYS_MS
            and (wanted is None or _mongo_eq(d.get("type", _UNDEF), wanted))
        ]
        return len(cached) >= count

    def _v1_echo(self, req: _Req, model: str | None) -> _Response:
        user_find, mongo = self._v1_find(req.query, model)
        input_q = copy.deepcopy(req.query)
        if model is not None:
            input_q["find"] = user_find
        params: JsonObj = {"echo": "entries"}
        if model is not None:
            params["model"] = model
        return _json(200, {"query": mongo, "input": input_q, "params": params, "storage": "entries"})

    def _format_entries(self, req: _Req, docs: list[Any], *, json_only: bool = False) -> _Response:
        choice = "application/json" if json_only else (_negotiate(req.accept, _ENTRY_FORMATS) or "application/json")
        if choice == "application/json":
            return _json(200, docs)
        sep = "," if choice == "text/csv" else "\t"
        rows = []
        for d in docs:
            doc = d if isinstance(d, dict) else {}
            cells = []
            for key in ("dateString", "date", "sgv", "direction", "device"):
                value = doc.get(key, _UNDEF)
                cells.append("" if value is _UNDEF else _dumps("" if value is None else value).decode("utf-8"))
            rows.append(sep.join(cells))
        return _text(200, "\r\n".join(rows), f"{choice}; charset=utf-8")

    def _v1_incoming(self, req: _Req) -> list[Any]:
        body = _purify(req.body)
        if isinstance(body, dict):
            return [body] if "date" in body else []
        if isinstance(body, list):
            return list(body)
        return []

    def _v1_preview(self, req: _Req) -> _Response:
        incoming = self._v1_incoming(req)
        return self._format_entries(req, incoming, json_only=self.merge_upsert)

    def _v1_create(self, req: _Req) -> _Response:
        incoming = self._v1_incoming(req)
        if not incoming:
            if self.merge_upsert:
                return _json(200, [])
            return _Response(0, no_reply=True)  # ≤ 15.0.6: the callback never fires [§2.6]
        merge = self.merge_upsert
        systime_bug = _version_tuple(self.version) < (15, 0, 0)
        results: list[JsonObj] = []
        try:
            with self._lock:
                for raw in incoming:
                    if not isinstance(raw, dict):
                        raise _MongoError("document must be an object")
                    results.append(self._v1_upsert(raw, merge=merge, systime_bug=systime_bug))
        except _MongoError as exc:
            return _json(500, {"status": 500, "message": "Mongo Error", "description": str(exc)})
        if merge:
            return _json(200, results)
        ordered = _sort_docs(results, [("date", -1)])
        return self._format_entries(req, ordered)

    def _v1_upsert(self, doc: JsonObj, *, merge: bool, systime_bug: bool) -> JsonObj:
        now = self._now_ms()
        if merge:  # 15.0.7 _id handling [§2.3]
            oid = doc.get("_id", _UNDEF)
            if isinstance(oid, str) and not _HEX24.match(oid):
                if _UUID_RE.match(oid) and not _js_truthy(doc.get("identifier")):
                    doc["identifier"] = oid
                del doc["_id"]
            elif isinstance(oid, str):
                doc["_id"] = oid.lower()
            elif oid is None:
                del doc["_id"]
        # normalisation [§2.4]
        ds = doc.get("dateString", _UNDEF)
        parsed: tuple[int, int] | None
        if _js_truthy(ds):
            parsed = _parse_zone(ds)
        elif systime_bug:
            parsed = (now, 0)  # < 15.0.0: sysTime = upload time when dateString is missing
        elif _js_truthy(doc.get("date")):
            parsed = _moment_local(doc["date"])
        else:
            parsed = (now, 0)
        sys_time = _iso_utc(parsed[0]) if parsed is not None else None
        doc["utcOffset"] = parsed[1] if parsed is not None and sys_time is not None else None
        doc["sysTime"] = sys_time
        if _js_truthy(ds):
            doc["dateString"] = sys_time
        # upsert [§2.5]
        if _js_truthy(doc.get("sysTime")) and _js_truthy(doc.get("type")):
            key: JsonObj = {"sysTime": doc["sysTime"], "type": doc["type"]}
        else:
            key = dict(doc)
        existing = next((d for d in self._entries if _matches(d, key)), None)
        if existing is not None:
            if "_id" in doc and not _js_strict_eq(doc["_id"], existing.get("_id")):
                raise _MongoError("Performing an update on the path '_id' would modify the immutable field '_id'")
            fields = {k: copy.deepcopy(v) for k, v in doc.items() if k != "_id"}
            if merge:
                existing.update(fields)
            else:
                keep_id = existing.get("_id")
                existing.clear()
                existing["_id"] = keep_id
                existing.update(fields)
            return doc
        oid_new = doc["_id"] if "_id" in doc else self._new_oid()
        self._entries.append({"_id": oid_new, **{k: copy.deepcopy(v) for k, v in doc.items() if k != "_id"}})
        doc["_id"] = oid_new
        return doc

    # -- v1 treatments (kept simple) -----------------------------------------------------------------------

    def _v1_treatments_create(self, req: _Req) -> _Response:
        body = _purify(req.body)
        docs = body if isinstance(body, list) else [body]
        results: list[JsonObj] = []
        now = self._now_ms()
        with self._lock:
            for raw in docs:
                if not isinstance(raw, dict):
                    return _json(500, {"status": 500, "message": "Mongo Error", "description": "bad document"})
                obj = raw
                if self.merge_upsert:
                    oid = obj.get("_id", _UNDEF)
                    if isinstance(oid, str) and not _HEX24.match(oid):
                        if not _js_truthy(obj.get("identifier")):
                            obj["identifier"] = oid
                        del obj["_id"]
                _prepare_treatment(obj, now)
                if self.merge_upsert and _js_truthy(obj.get("identifier")):
                    obj.pop("_id", None)
                    key: JsonObj = {"identifier": obj["identifier"]}
                elif "_id" in obj and obj["_id"] not in (None, ""):
                    key = {"_id": obj["_id"]}
                else:
                    key = {"created_at": obj.get("created_at"), "eventType": obj.get("eventType")}
                existing = next((d for d in self._treatments if _matches(d, key)), None)
                fields = {k: copy.deepcopy(v) for k, v in obj.items() if k != "_id"}
                if existing is not None:
                    keep_id = existing.get("_id")
                    existing.clear()
                    existing["_id"] = keep_id
                    existing.update(fields)
                else:
                    oid_new = obj["_id"] if "_id" in obj else self._new_oid()
                    self._treatments.append({"_id": oid_new, **fields})
                    obj["_id"] = oid_new
                results.append(obj)
        return _json(200, results)

    def _v1_treatments_list(self, req: _Req) -> _Response:
        raw_find = req.query.get("find")
        find: JsonObj = copy.deepcopy(raw_find) if isinstance(raw_find, dict) else {}
        for prop in ("insulin", "carbs", "glucose"):
            if prop in find and _js_truthy(find[prop]):
                find[prop] = self._walk_int(find[prop])
        if not _js_truthy(find.get("created_at")) and not _js_truthy(find.get("dateString")):
            find["created_at"] = {"$gte": _iso_utc(self._now_ms() - FOUR_DAYS_MS)}
        count = _parse_int(req.query["count"]) if _js_truthy(req.query.get("count")) else 0
        with self._lock:
            docs = _sort_docs([d for d in self._treatments if _matches(d, find)], [("created_at", -1)])
            if isinstance(count, int) and count:
                docs = docs[: abs(count)]
            return _json(200, copy.deepcopy(docs))

    # -- status / verifyauth [§3.6] ------------------------------------------------------------------------

    def _settings(self) -> JsonObj:
        return {
            "units": self.units,
            "timeFormat": 12,
            "dayStart": 7,
            "dayEnd": 21,
            "nightMode": False,
            "editMode": True,
            "showRawbg": "never",
            "customTitle": "Nightscout",
            "theme": "default",
            "alarmUrgentHigh": True,
            "alarmHigh": True,
            "alarmLow": True,
            "alarmUrgentLow": True,
            "alarmTimeagoWarn": True,
            "alarmTimeagoWarnMins": 15,
            "alarmTimeagoUrgent": True,
            "alarmTimeagoUrgentMins": 30,
            "language": "en",
            "scaleY": "log",
            "showPlugins": "dbsize delta direction upbat",
            "showForecast": "ar2",
            "focusHours": 3,
            "heartbeat": 60,
            "baseURL": "",
            "authDefaultRoles": " ".join(self.default_roles),
            "thresholds": {"bgHigh": 260, "bgTargetTop": 180, "bgTargetBottom": 80, "bgLow": 55},
            "insecureUseHttp": True,
            "secureHstsHeader": True,
            "secureCsp": False,
            "deNormalizeDates": False,
            "showClockDelta": False,
            "showClockLastTime": False,
            "DEFAULT_FEATURES": [
                "bgnow",
                "delta",
                "direction",
                "timeago",
                "devicestatus",
                "upbat",
                "errorcodes",
                "profile",
                "bolus",
                "dbsize",
                "runtimestate",
                "basal",
                "careportal",
            ],
            "alarmTypes": ["predict"],
            "enable": [
                "careportal",
                "basal",
                "dbsize",
                "rawbg",
                "iob",
                "maker",
                "cob",
                "bwp",
                "cage",
                "iage",
                "sage",
                "boluscalc",
                "pushover",
                "treatmentnotify",
                "loop",
                "pump",
                "profile",
                "food",
                "openaps",
                "bage",
                "alexa",
                "override",
                "cors",
                "bgnow",
                "delta",
                "direction",
                "timeago",
                "devicestatus",
                "upbat",
                "errorcodes",
                "bolus",
                "runtimestate",
                "ar2",
                "simplealarms",
            ],
        }

    def _v1_status(self, req: _Req) -> _Response:
        auth = self._v1_auth(req)
        if not auth.can("api:status:read"):
            return _unauthorized()
        now = self._now_ms()
        token_q = req.query.get("token") or req.query.get("secret") or ""
        info = {
            "status": "ok",
            "name": self.name,
            "version": self.version,
            "serverTime": _iso_utc(now),
            "serverTimeEpoch": now,
            "apiEnabled": self.api_enabled,
            "careportalEnabled": self.api_enabled,
            "boluscalcEnabled": False,
            "settings": self._settings(),
            "extendedSettings": {"devicestatus": {"advanced": True}},
            "authorized": self._authorize(token_q) if token_q else None,
            "runtimeState": "loaded",
        }
        choice = _negotiate(req.accept, _STATUS_FORMATS)
        badge = "http://img.shields.io/badge/Nightscout-OK-green"
        if choice == "text/html":
            return _text(200, "<h1>STATUS OK</h1>", "text/html; charset=utf-8")
        if choice in ("image/png", "image/svg+xml"):
            target = badge + (".png" if choice == "image/png" else ".svg")
            return _Response(302, b"", [("Location", target), ("Content-Type", "text/plain; charset=utf-8")])
        if choice == "application/javascript":
            js = "this.serverSettings = " + _dumps(info).decode("utf-8") + " ;"
            return _text(200, js, "application/javascript; charset=utf-8")
        if choice == "text/plain":
            return _text(200, "STATUS OK")
        if choice == "application/json":
            return _json(200, info)
        return _text(406, "Not Acceptable")

    def _v1_verifyauth(self, req: _Req) -> _Response:
        auth = self._v1_auth(req)
        ok = not auth.failed
        can_read = ok and auth.can("*:*:read")
        can_write = ok and auth.can("*:*:write")
        is_admin = ok and auth.can("*:*:admin")
        authorized = can_read and not auth.defaults
        message = {
            "canRead": can_read,
            "canWrite": can_write,
            "isAdmin": is_admin,
            "message": "OK" if authorized else "UNAUTHORIZED",
            "rolefound": "FOUND" if auth.subject is not None else "NOTFOUND",
            "permissions": "DEFAULT" if auth.defaults else "ROLE",
        }
        return _json(200, {"status": 200, "message": message})

    # -- API v2 authorization [§3.3, §3.7] -------------------------------------------------------------------

    def _route_v2(self, req: _Req, rest: str) -> _Response:
        parts = [p for p in rest.split("/") if p != ""]
        orig = [unquote(p) for p in req.path[len("/api/v2") :].split("/") if p != ""]
        if parts[:1] != ["authorization"]:
            return _cannot(req.method, req.path)
        if len(parts) == 3 and parts[1] == "request" and req.method == "GET":
            authed = self._authorize(orig[2])
            return _json(200, authed) if authed else _unauthorized()
        if len(parts) == 2 and parts[1] in ("roles", "subjects") and req.method in ("GET", "POST"):
            kind = parts[1]
            verb = {"GET": "list" if kind == "roles" else "read", "POST": "create"}[req.method]
            auth = self._v1_auth(req)
            if not auth.can(f"admin:api:{kind}:{verb}"):
                return _unauthorized()
            body = req.body if isinstance(req.body, dict) else {}
            with self._lock:
                if kind == "roles" and req.method == "GET":
                    out = [
                        {**self._role_docs.get(n, {}), "name": n, "permissions": p}
                        for n, p in sorted(self._roles.items())
                    ]
                    return _json(200, out)
                if kind == "roles":
                    self.add_role(str(body.get("name", "")), [str(p) for p in body.get("permissions") or []])
                    name = str(body.get("name", ""))
                    return _json(200, [{**body, **self._role_docs[name]}])
                if req.method == "GET":
                    subjects = sorted(self._subjects, key=lambda s: s.name)
                    return _json(
                        200,
                        [
                            {
                                "_id": s.id,
                                "name": s.name,
                                "accessToken": access_token_for(self.api_secret, s.name, s.id),
                                "roles": s.roles,
                            }
                            for s in subjects
                        ],
                    )
                sid = self._new_oid()
                name = str(body.get("name", ""))
                self.add_subject(name, [str(r) for r in body.get("roles") or []], subject_id=sid)
                return _json(200, [{**body, "created_at": self._subjects[-1].created_at, "_id": sid}])
        return _cannot(req.method, req.path)

    # -- API v3 [§5] -------------------------------------------------------------------------------------------

    def _route_v3(self, req: _Req, rest: str) -> _Response:
        if req.body_error:
            return _v3_status(500, "Internal Server Error")
        parts = [p for p in rest.split("/") if p != ""]
        orig = [unquote(p) for p in req.path[len("/api/v3") :].split("/") if p != ""]
        m = req.method
        if parts == ["version"] and m == "GET":
            return _json(200, {"status": 200, "result": self._v3_version_info()})
        if parts == ["status"] and m == "GET":
            auth = self._v3_auth(req)
            info = self._v3_version_info()
            perms: JsonObj = {}
            for col in ("devicestatus", "entries", "food", "profile", "settings", "treatments"):
                # lib/api3/specific/status.js checks 'api:undefined:<op>' (the bug of §5.7)
                letters = "".join(
                    letter for letter, op in zip("crud", ("create", "read", "update", "delete"), strict=True)
                    if auth.can(f"api:undefined:{op}")
                )  # fmt: skip
                if letters:
                    perms[col] = letters
            info["apiPermissions"] = perms
            return _json(200, {"status": 200, "result": info})
        if parts == ["lastmodified"] and m == "GET":
            auth = self._v3_auth(req)
            cols: JsonObj = {}
            with self._lock:
                for col, (_, date_field) in _V3_COLLECTIONS.items():
                    if auth.can(f"api:{col}:read"):
                        value = self._v3_last_modified(self._collection(col), date_field)
                        if value:
                            cols[col] = value
            return _json(200, {"status": 200, "result": {"srvDate": self._now_ms(), "collections": cols}})
        if parts and parts[0] in _V3_COLLECTIONS:
            col = parts[0]
            if len(parts) == 1 and m == "POST":
                return self._v3_create(req, col)
            if len(parts) == 1 and m == "GET":
                return self._v3_search(req, col)
            if len(parts) == 2 and m == "GET" and parts[1] != "history":
                return self._v3_read(req, col, orig[1])
        return _v3_status(404, "Bad operation or collection")

    def _v3_version_info(self) -> JsonObj:
        return {
            "version": self.version,
            "apiVersion": API3_VERSION,
            "srvDate": self._now_ms(),
            "storage": {"storage": "mongodb", "version": "4.4.29"},
        }

    def _collection(self, col: str) -> list[JsonObj]:
        return self._entries if col == "entries" else self._treatments

    def _v3_last_modified(self, docs: list[JsonObj], date_field: str) -> int | None:
        result: int | None = None
        for d in docs:
            srv = d.get("srvModified")
            if _is_num(srv) and (result is None or srv > result):
                result = int(srv)
        for d in docs:
            parsed = _moment_local(d.get(date_field, _UNDEF))
            if parsed is not None and (result is None or parsed[0] > result):
                result = parsed[0]
        return result

    def _v3_auth(self, req: _Req) -> _Auth:
        token: str | None = None
        header = req.headers.get("authorization", "")
        parts = header.split(" ")
        if len(parts) == 2 and parts[0].lower() == "bearer" and parts[1]:
            token = parts[1]
        if token is None and _version_tuple(self.version) < (15, 0, 0):
            access = req.query.get("token")  # ?token= worked up to 14.2.x [§5.2]
            authed = self._authorize(access) if _js_truthy(access) else None
            token = str(authed["token"]) if authed else None
        if token is None:
            raise _V3Error(_v3_status(401, "Missing or bad access token or JWT"))
        auth = self._resolve(req.client_ip, None, token)
        if auth.failed:
            raise _V3Error(_v3_status(401, "Bad access token or JWT"))
        return auth

    @staticmethod
    def _demand(auth: _Auth, permission: str) -> None:
        if not auth.can(permission):
            raise _V3Error(_v3_status(403, f"Missing permission {permission}"))

    def _v3_create(self, req: _Req, col: str) -> _Response:
        auth = self._v3_auth(req)
        doc = _purify(req.body) if req.is_json else {}
        if not isinstance(doc, dict | list) or len(doc) == 0:
            return _v3_status(400, "Bad or missing request body")
        if isinstance(doc, list):
            # a JS array: no date → computed identifier "undefined_undefined" → insert path → bad date
            self._demand(auth, f"api:{col}:create")
            return _v3_status(400, "Bad or missing date field")
        fallback_fields = _V3_COLLECTIONS[col][0]
        parsed = _v3_parse_date([doc.get("date", _UNDEF), doc.get("created_at", _UNDEF)])
        if parsed is not None:
            doc["date"] = parsed[0]
            if "utcOffset" not in doc:
                doc["utcOffset"] = parsed[1]
            doc["created_at"] = _iso_utc(parsed[0])
        if not _js_truthy(doc.get("identifier")):
            doc["identifier"] = v3_identifier(
                doc.get("device", _UNDEF), doc.get("date", _UNDEF), doc.get("eventType", _UNDEF)
            )
        doc.pop("_id", None)
        with self._lock:
            docs = self._collection(col)
            existing = self._v3_find_existing(docs, doc, fallback_fields)
            if existing is not None:
                return self._v3_replace(req, auth, col, doc, existing)
            self._demand(auth, f"api:{col}:create")
            problem = self._v3_validate_common(doc, identifier=True)
            if problem:
                return _v3_status(400, problem)
            now = self._now_ms()
            doc["srvModified"] = now
            doc["srvCreated"] = now
            if auth.subject is not None:
                doc["subject"] = auth.subject.name
            docs.append({"_id": self._new_oid(), **copy.deepcopy(doc)})
        identifier = str(doc["identifier"])
        return _json(
            201,
            {"status": 201, "identifier": identifier, "lastModified": now},
            [("Last-Modified", _http_date(now)), ("Location", f"/api/v3/{col}/{identifier}")],
        )

    @staticmethod
    def _v3_find_existing(docs: list[JsonObj], doc: JsonObj, fallback: Sequence[str]) -> JsonObj | None:
        ident = doc.get("identifier")
        use_fallback = all(f in doc for f in fallback)
        for stored in docs:
            if _js_truthy(ident):
                if _mongo_eq(stored.get("identifier", _UNDEF), ident):
                    return stored
                if (
                    isinstance(ident, str)
                    and _HEX24.match(ident)
                    and "identifier" not in stored
                    and stored.get("_id") == ident.lower()
                ):
                    return stored
            if (
                use_fallback
                and "identifier" not in stored
                and all(_mongo_eq(stored.get(f, _UNDEF), doc[f]) for f in fallback)
            ):
                return stored
        return None

    @staticmethod
    def _v3_validate_common(doc: JsonObj, *, identifier: bool = False) -> str | None:
        if identifier:
            ident = doc.get("identifier")
            if not isinstance(ident, str) or ident.strip() == "":
                return "Bad or missing identifier field"
        date = doc.get("date")
        if not _is_num(date) or date <= MIN_TIMESTAMP:
            return "Bad or missing date field"
        off = doc.get("utcOffset")
        if not _is_num(off) or off < MIN_UTC_OFFSET or off > MAX_UTC_OFFSET:
            return "Bad or missing utcOffset field"
        app = doc.get("app")
        if not isinstance(app, str) or app.strip() == "":
            return "Bad or missing app field"
        return None

    def _v3_replace(self, req: _Req, auth: _Auth, col: str, doc: JsonObj, stored: JsonObj) -> _Response:
        self._demand(auth, f"api:{col}:update")
        stored_identifier = stored.get("identifier") if _js_truthy(stored.get("identifier")) else stored.get("_id")
        if stored.get("isReadOnly") is True or stored.get("readOnly") is True or stored.get("readonly") is True:
            return _v3_status(422, "Trying to modify read-only document")
        for fld in _V3_IMMUTABLE:
            if fld == "identifier" or stored.get("isValid") is False:
                continue  # identifier may change on de-duplication; deleted docs are unrestricted
            if fld in doc and not _js_strict_eq(doc[fld], stored.get(fld, _UNDEF)):
                return _v3_status(400, f"Field {fld} cannot be modified by the client")
        problem = self._v3_validate_common(doc)
        if problem:
            return _v3_status(400, problem)
        now = self._now_ms()
        doc["srvModified"] = now
        doc["srvCreated"] = stored.get("srvCreated") if _js_truthy(stored.get("srvCreated")) else now
        if auth.subject is not None:
            doc["subject"] = auth.subject.name
        keep_id = stored.get("_id")
        stored.clear()
        stored["_id"] = keep_id
        stored.update(copy.deepcopy(doc))
        fields: JsonObj = {"status": 200, "lastModified": now, "identifier": doc["identifier"], "isDeduplication": True}
        if not _js_strict_eq(stored_identifier, doc["identifier"]):
            fields["deduplicatedIdentifier"] = stored_identifier
        return _json(
            200,
            fields,
            [("Last-Modified", _http_date(now)), ("Location", f"/api/v3/{col}/{doc['identifier']}")],
        )

    def _v3_output(self, col: str, stored: JsonObj) -> JsonObj:
        doc = copy.deepcopy(stored)
        if not _js_truthy(doc.get("identifier")):
            doc["identifier"] = str(doc.get("_id"))
        doc.pop("_id", None)
        if not _js_truthy(doc.get("srvModified")):
            fallback = _moment_local(doc.get(_V3_COLLECTIONS[col][1], _UNDEF))
            if fallback is not None:
                doc["srvModified"] = fallback[0]
        if _js_truthy(doc.get("srvModified")) and not _js_truthy(doc.get("srvCreated")):
            doc["srvCreated"] = doc["srvModified"]
        return doc

    def _v3_search(self, req: _Req, col: str) -> _Response:
        auth = self._v3_auth(req)
        self._demand(auth, f"api:{col}:read")
        q = req.query
        fields_param = q.get("fields")
        specific = str(fields_param).split(",") if _js_truthy(fields_param) and fields_param != "_all" else None
        clauses: list[tuple[str, str, Any]] = []
        for param, raw_value in q.items():
            if param in _V3_RESERVED:
                continue
            fld, op = param, "eq"
            m = re.match(r"^(.*)\$([a-zA-Z]+)", param)
            if m:
                fld, op = m.group(1), m.group(2)
                if op not in _V3_OPERATORS:
                    return _v3_status(400, f"Unsupported filter operator {op}")
            clauses.append((fld, op, _v3_value(fld, raw_value)))
        if _js_truthy(q.get("sort")) and _js_truthy(q.get("sort$desc")):
            return _v3_status(400, "Parameters sort and sort_desc cannot be combined")
        direction = -1 if _js_truthy(q.get("sort$desc")) else 1
        sort: list[tuple[str, int]] = []
        if _js_truthy(q.get("sort$desc")):
            sort.append((str(q["sort$desc"]), -1))
        elif _js_truthy(q.get("sort")):
            sort.append((str(q["sort"]), 1))
        sort += [("identifier", direction), ("created_at", direction), ("date", direction)]
        limit = API3_MAX_LIMIT
        if _js_truthy(q.get("limit")):
            lim = _to_js_number(q["limit"])
            if not (isinstance(lim, int | float) and not math.isnan(lim) and 0 < lim <= API3_MAX_LIMIT):
                return _v3_status(400, "Parameter limit out of tolerance")
            limit = int(_parse_int(q["limit"]))
        skip = 0
        if _js_truthy(q.get("skip")):
            sk = _to_js_number(q["skip"])
            if not (isinstance(sk, int | float) and not math.isnan(sk) and sk >= 0):
                return _v3_status(400, "Parameter skip out of tolerance")
            skip = int(_parse_int(q["skip"]))
        query: JsonObj = {"isValid": {"$ne": False}}
        for fld, op, value in clauses:
            if op == "eq":
                cond: Any = value
            elif op in ("in", "nin"):
                cond = {f"${op}": _js_str(value).split("|")}
            elif op == "re":
                cond = {"$regex": _js_str(value)}
            else:
                cond = {f"${op}": value}
            query[fld] = cond
        with self._lock:
            docs = [d for d in self._collection(col) if _matches(d, query)]
            docs = _sort_docs(docs, sort)[skip : skip + limit]
            out = [self._v3_output(col, d) for d in docs]
        if specific is not None:
            out = [{k: v for k, v in d.items() if k in specific} for d in out]
        return _json(200, {"status": 200, "result": out})

    def _v3_read(self, req: _Req, col: str, identifier: str) -> _Response:
        auth = self._v3_auth(req)
        self._demand(auth, f"api:{col}:read")
        with self._lock:
            found = next(
                (
                    d
                    for d in self._collection(col)
                    if _mongo_eq(d.get("identifier", _UNDEF), identifier)
                    or (_HEX24.match(identifier) and d.get("_id") == identifier.lower())
                ),
                None,
            )
            doc = self._v3_output(col, found) if found is not None else None
        if doc is None:
            return _Response(404)
        if doc.get("isValid") is False:
            return _Response(410)
        headers: list[tuple[str, str]] = []
        modified = doc.get("srvModified")
        if _is_num(modified):
            headers.append(("Last-Modified", _http_date(int(modified))))
            ims = _parse_http_date(req.headers.get("if-modified-since"))
            if ims is not None and (int(modified) // 1000) * 1000 <= ims:
                return _Response(304, b"", headers)
        fields_param = req.query.get("fields")
        if _js_truthy(fields_param) and fields_param != "_all":
            keep = str(fields_param).split(",")
            doc = {k: v for k, v in doc.items() if k in keep}
        return _json(200, {"status": 200, "result": doc}, headers)


def _v3_value(fld: str, value: Any) -> Any:
    """``parseValue`` of the v3 search input."""
    if _is_number_in_string(value):
        value = _num(float(value))
    if value == "true":
        value = True
    elif value == "false":
        value = False
    if isinstance(value, str) and len(value) >= 2 and value.startswith("'") and value.endswith("'"):
        value = value[1:-1]
    if fld in ("date", "srvModified", "srvCreated"):
        parsed = _v3_parse_date(value)
        if parsed is not None:
            value = parsed[0]
    if fld == "created_at":
        parsed = _v3_parse_date(value)
        if parsed is not None:
            value = _iso_utc(parsed[0])
    return value


def _prepare_treatment(obj: JsonObj, now_ms: int) -> None:
    """``prepareData`` of ``lib/server/treatments.js`` (without the preBolus companion record)."""
    created = obj.get("created_at", _UNDEF)
    parsed = (now_ms, 0) if created is _UNDEF else (_parse_zone(created) or (now_ms, 0))
    obj["created_at"] = _iso_utc(parsed[0])
    obj["utcOffset"] = parsed[1]
    for fld in ("glucose", "targetTop", "targetBottom", "carbs", "insulin", "duration", "percent",
                "absolute", "relative", "preBolus"):  # fmt: skip
        obj[fld] = _to_js_number(obj.get(fld, _UNDEF))
    if _js_truthy(obj.get("eventTime")):
        event = _moment_local(obj["eventTime"])
        if event is not None:
            obj["created_at"] = _iso_utc(event[0])
    if obj.get("eventType") == "Announcement":
        obj["isAnnouncement"] = True
    obj.pop("eventTime", None)
    for fld in ("targetTop", "targetBottom", "carbs", "insulin", "percent", "relative", "notes", "preBolus"):
        if fld in obj and not _js_truthy(obj[fld]):
            del obj[fld]
    for fld in ("absolute", "duration"):
        value = obj.get(fld)
        if isinstance(value, float) and math.isnan(value):
            del obj[fld]
    glucose = obj.get("glucose")
    if glucose == 0 or (isinstance(glucose, float) and math.isnan(glucose)):
        for fld in ("glucose", "glucoseType", "units"):
            obj.pop(fld, None)


# --------------------------------------------------------------------------------------------------
# HTTP handler
# --------------------------------------------------------------------------------------------------


def _make_handler(standin: NightscoutStandIn) -> type[BaseHTTPRequestHandler]:
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

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_PATCH(self) -> None:
            self._serve("PATCH")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def _read_body(self) -> bytes | None:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                chunks: list[bytes] = []
                total = 0
                while True:
                    line = self.rfile.readline(1024)
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    total += size
                    if total > MAX_BODY:
                        return None
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline(8)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                return None
            return self.rfile.read(length) if length > 0 else b""

        def _serve(self, method: str) -> None:
            # the raw request target: http.server collapses a leading "//", Express does not
            parts = self.requestline.split(" ")
            target = parts[1] if len(parts) >= 2 else self.path
            if not target.startswith("/"):
                target = urlsplit(target).path or "/"  # absolute-form target
            raw_path, _, raw_query = target.partition("?")
            raw_path = raw_path.split("#", 1)[0]
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                raw = self._read_body()
            except (OSError, ValueError):
                self.close_connection = True
                return
            rec = standin._record(method, raw_path, raw_query, headers, raw or b"")
            with standin._lock:
                unreachable = standin._unreachable
            if unreachable:
                rec.fault = "unreachable"
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            if raw is None:
                self.close_connection = True
                resp = _text(
                    413, "<pre>PayloadTooLargeError: request entity too large</pre>", "text/html; charset=utf-8"
                )
                self._send(rec, resp)
                return
            hold = standin._take_hang(raw_path)
            if hold > 0:
                rec.fault = "hang_next"
                standin._stop_event.wait(hold)
            fault = standin._take_fault(raw_path, method)
            if fault is not None:
                resp = _Response(fault.status, fault.body, fault=("fail_next"))
                if fault.content_type:
                    resp.headers.append(("Content-Type", fault.content_type))
                resp.headers.extend(fault.headers.items())
            else:
                req = standin._build_request(method, raw_path, raw_query, headers, raw, self.client_address[0])
                try:
                    resp = standin._handle(req)
                except Exception as exc:  # keep the stand-in alive; surface as a server error
                    resp = _json(500, {"status": 500, "message": "Stand-in error", "description": repr(exc)})
            if resp.no_reply:
                rec.fault = "no-reply"
                standin._stop_event.wait(MAX_HANG_S)
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            if resp.fault and rec.fault is None:
                rec.fault = resp.fault
            self._send(rec, resp)

        def _send(self, rec: RecordedRequest, resp: _Response) -> None:
            rec.status = resp.status
            try:
                self.send_response(resp.status, _REASONS.get(resp.status))
                for name, value in resp.headers:
                    self.send_header(name, value)
                if not any(n.lower() == "x-powered-by" for n, _ in resp.headers):
                    self.send_header("X-Powered-By", "Express")
                self.send_header("Content-Length", str(len(resp.body)))
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                if resp.body and resp.status not in (204, 304):
                    self.wfile.write(resp.body)
                self.wfile.flush()
            except OSError:
                self.close_connection = True

    return _Handler
