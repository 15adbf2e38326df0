"""What the Nightscout API v1 and v3 uploaders share: one request within the run's deadline, the texts for
redirects and failed answers, and a body excerpt with anything secret-looking removed."""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import urllib3

from ..errors import NightscoutError, NightscoutRejected, NightscoutTooLarge, NightscoutUnreachable
from ..http import Deadline, HttpResult, TransportError, request_timeout
from ..http_request import send
from ..model import Existing
from .url import normalize_nightscout_url

JSON_HEADERS: Mapping[str, str] = {"Content-Type": "application/json", "Accept": "application/json"}
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_TAG = re.compile(r"<[^>]*>")
_JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
_HEX_RUN = re.compile(r"[0-9a-fA-F]{16,}")  # hashes, token digests, ids: never shown
_SPACE = re.compile(r"\s+")
# The most of an answer the bridge reads, decoded: uploads, status, JWT and treatment answers are small.
MAX_ANSWER_BYTES = 1024 * 1024
# A read-back answer holds at most the query's count of entries; this much per entry is generous (the
# bridge's own entries are ~300 bytes, other uploaders add a few fields).
READBACK_ENTRY_BYTES = 2048


def readback_limit(count: int) -> int:
    """The most a read-back of `count` entries may send: what the query can return, and a margin."""
    return count * READBACK_ENTRY_BYTES + 64 * 1024


READ_BACK = "the request for the readings already there"


def entry_dates(docs: list[Any], *, what: str) -> list[int]:
    """The `date` (epoch ms) of each entry of a read-back answer.

    Every sgv entry Nightscout stores has a date in epoch ms; an entry whose date is no finite number (NaN,
    Infinity, text, missing) means the answer cannot be trusted: a NightscoutRejected, which the run
    treats like any failed read-back (it uploads the current reading and fills the gap later).
    """
    dates: list[int] = []
    for doc in docs:
        date = doc.get("date") if isinstance(doc, dict) else None
        if isinstance(date, bool) or not isinstance(date, int | float) or not math.isfinite(date):
            shown = "no date" if date is None else f"the date {str(date)[:20]!r}"
            raise NightscoutRejected(f"an entry in the answer has {shown}, not a time in epoch milliseconds", what=what)
        dates.append(int(date))
    return dates


def existing_from(docs: list[Any], since_ms: int, limit: int, *, what: str) -> Existing:
    """The instants of a read-back answer. A full page may have left older entries out: then the answer
    is complete only from its oldest entry on."""
    dates = sorted(entry_dates(docs, what=what))
    complete = dates[0] if len(docs) >= limit and dates else since_ms
    return Existing(
        instants=tuple(sorted({ms // 1000 for ms in dates if ms >= since_ms})),
        complete_since_ms=max(complete, since_ms),
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 is read as Infinity
        raise ValueError(f"{text[:20]} is not a finite number")
    return value


def json_or_none(data: bytes) -> Any:
    """The JSON of an answer; None when it is none. NaN and Infinity are not JSON (Python's parser would
    accept them): an answer holding them is not Nightscout's, so the callers' fallback applies."""
    try:
        return json.loads(data, parse_constant=_no_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def not_found_text(path: str) -> str:
    """HTTP 404 where Nightscout answers: the address is not a Nightscout (shared with doctor's check)."""
    return (
        f"no Nightscout at this address (HTTP 404 for {path}). NIGHTSCOUT_URL must be the address that shows "
        "the glucose chart in a browser."
    )


class NightscoutTransport:
    """Base of NightscoutV1 and NightscoutV3: the request and the answers both treat alike.

    A subclass sets `pool` and names its texts in `_NOT_NIGHTSCOUT` (with ``{url}``) and `_TOO_LARGE`, and
    the secrets it knows in `_secrets()`.
    """

    _NOT_NIGHTSCOUT: ClassVar[str]
    _TOO_LARGE: ClassVar[str]
    pool: urllib3.PoolManager

    def __init__(self, *, base_url: str, deadline: Deadline | None, device: str, allow_http: bool = False) -> None:
        self.base_url = normalize_nightscout_url(base_url, allow_http=allow_http)
        self.deadline = deadline
        self.device = device
        self.requests_made = 0
        self._lock = threading.Lock()  # requests_made

    def _secrets(self) -> tuple[str | None, ...]:
        """The secret values this client knows, each removed from any text taken from an answer."""
        raise NotImplementedError

    def _send(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        *,
        max_body: int = MAX_ANSWER_BYTES,
    ) -> HttpResult:
        """One request, whole within the deadline, its answer at most `max_body` bytes decoded; any failure
        to get a usable answer is a NightscoutUnreachable (NightscoutTooLarge for too much)."""
        timeout = request_timeout(self.deadline, expired=NightscoutUnreachable("the run's time budget is used up"))
        with self._lock:
            self.requests_made += 1
        try:
            return send(
                self.pool, method, self.base_url + path, headers=headers, body=body, timeout=timeout, max_body=max_body
            )
        except TransportError as exc:
            if exc.kind == "too_large":
                raise NightscoutTooLarge(exc.detail) from None
            detail = "no answer in time" if exc.kind == "timeout" else exc.detail
            raise NightscoutUnreachable(detail) from None

    def _not_nightscout(self, what: str) -> NightscoutRejected:
        return NightscoutRejected(self._NOT_NIGHTSCOUT.format(url=self.base_url), what=what)

    def _failure(self, result: HttpResult, what: str, path: str = "") -> NightscoutError:
        """The error for an answer neither API version treats on its own: redirects, 413, other 4xx, 5xx."""
        status = result.status
        if status == 404 and path:  # the diagnosis doctor gives, not the server's "Cannot POST ..."
            return NightscoutRejected(not_found_text(path.split("?")[0]), what=what)
        if status in REDIRECT_STATUSES:
            return NightscoutRejected(self._redirect_text(result.headers.get("location", "")), what=what)
        if status == 413:
            return NightscoutRejected(self._TOO_LARGE, what=what)
        if 500 <= status <= 599:
            return NightscoutUnreachable(f"HTTP {status}: {self._excerpt(result.data)}")
        if 400 <= status <= 499:
            return NightscoutRejected(f"HTTP {status}: {self._excerpt(result.data)}", what=what)
        return NightscoutRejected(
            f"unexpected HTTP {status}; " + self._NOT_NIGHTSCOUT.format(url=self.base_url), what=what
        )

    def _redirect_text(self, location: str) -> str:
        target = urlsplit(location)
        if target.scheme.lower() == "https" and self.base_url.startswith("http://"):
            return "the site redirects to https: fix NIGHTSCOUT_URL to start with https://."
        where = f" ({target.scheme}://{target.hostname})" if target.scheme and target.hostname else ""
        return (
            f"the site redirects to another address{where}: fix NIGHTSCOUT_URL (it redirects to https or "
            "another host; use the final https:// address of the site)."
        )

    def _excerpt(self, data: bytes, limit: int = 160) -> str:
        """A short, single-line, tag-free piece of the body with anything secret-looking removed.

        Removed: the client's own secrets, JWT-shaped strings and runs of 16 or more hex digits (hashes,
        token digests), in that order.
        """
        text = data[:4096].decode("utf-8", errors="replace")
        text = _TAG.sub(" ", text)
        for secret in self._secrets():
            if secret:
                text = text.replace(secret, "[redacted]")
        text = _JWT_SHAPE.sub("[redacted]", text)
        text = _HEX_RUN.sub("[redacted]", text)
        text = "".join(ch if ch.isprintable() else " " for ch in text)
        text = _SPACE.sub(" ", text).strip()
        if not text:
            return "empty body"
        return text if len(text) <= limit else text[: limit - 1] + "…"
