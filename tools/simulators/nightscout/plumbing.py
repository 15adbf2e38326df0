"""Records, replies and request plumbing of the Nightscout stand-in (``docs/nightscout-api.md``).

Recorded requests, canned faults and holds, the parsed request and its credentials, reply builders,
HTML purification (DOMPurify, approximated) and content negotiation (Express ``req.accepts``).
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tools.simulators.nightscout.constants import UNAUTHORIZED_BODY, JsonObj
from tools.simulators.nightscout.values import _dumps, _to_js_number

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


_Spec = tuple[str, str, float, int]  # type, subtype, q, position in the header


def _accept_spec(index: int, part: str) -> _Spec:
    """One media range of an Accept header; a bad q counts as 0."""
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
    return (t, s, q, index)


def _best_match(offer: str, specs: list[_Spec]) -> tuple[int, float, int] | None:
    """(specificity, q, position) of the most specific range that matches `offer` (then the highest q, then
    the first), or None."""
    ot, os_ = offer.split("/", 1)
    best: tuple[int, float, int] | None = None
    for t, s, q, index in specs:
        if t not in ("*", ot) or s not in ("*", os_):
            continue
        spec = (4 * (t == ot) + 2 * (s == os_), q, index)
        if best is None or (spec[0], spec[1], -spec[2]) > (best[0], best[1], -best[2]):
            best = spec
    return best


def _negotiate(accept: str | None, offers: Sequence[str]) -> str | None:
    if accept is None or accept.strip() == "":
        return offers[0]
    specs = [_accept_spec(index, part) for index, part in enumerate(accept.split(","))]
    ranked: list[tuple[float, int, int, int, str]] = []
    for offer_index, offer in enumerate(offers):
        best = _best_match(offer, specs)
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
