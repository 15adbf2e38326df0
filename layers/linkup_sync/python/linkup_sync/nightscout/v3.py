"""Nightscout API v3 uploader (implements ports.NightscoutSink; docs/nightscout-api.md §3.7, §5).

API v3 takes one document per POST and authenticates only with a JWT obtained for an access token
(``GET /api/v2/authorization/request/<token>``, valid 8 h). The JWT is reused through a JwtCache (the
caller keeps it in its state so it survives cold starts) until 10 minutes before it expires; on a 401 a
new one is fetched once and the request retried once.

Immutable fields (§5.6): `app`, `device` and the `utcOffset` rule of a deployment must never change, or
re-uploads fail with 400 (counted here as "already there", with a warning) or, for `device`, create
duplicates.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import urllib3

from ..errors import (
    NightscoutError,
    NightscoutPartialUpload,
    NightscoutRejected,
    NightscoutUnauthorized,
)
from ..http import Deadline, HttpResult, make_pool
from ..model import Existing
from ..ports import JwtCache
from ..readings import Reading
from .transport import (
    JSON_HEADERS,
    MAX_ANSWER_BYTES,
    READ_BACK,
    NightscoutTransport,
    entry_dates,
    existing_from,
    json_or_none,
    readback_limit,
)
from .treatments import announcement_v3, sensor_start_v3, v3_identifier

log = logging.getLogger("linkup_sync")

JWT_RENEW_MARGIN_S = 600  # use a JWT only while it has more than 10 minutes left
_JWT_FALLBACK_LIFETIME_S = 3600  # when the exchange answer lacks a usable `exp`
_JWT_MAX_LIFETIME_S = 24 * 3600  # Nightscout's JWTs live 8 hours: a later `exp` is not believed
_ENTRIES_PATH = "/api/v3/entries"
READ_LIMIT = 1000  # API3_MAX_LIMIT's default: a larger limit is "400 Parameter limit out of tolerance"
_TREATMENTS_PATH = "/api/v3/treatments"
_JWT_PATH = "/api/v2/authorization/request/"
# spec §3.3: "<abbrev>-<16 hex>", abbrev = up to 10 characters of the subject's name. Nightscout strips
# non-word characters; "_" is kept by some versions, so it is allowed here.
_ACCESS_TOKEN = re.compile(r"^[a-z0-9_]{0,10}-[0-9a-f]{16}$")
_IMMUTABLE = re.compile(r"Field (\w+) cannot be modified by the client")
_MISSING_PERMISSION = re.compile(r"Missing permission ((?:api:)?[a-z0-9*]+:[a-z*]+)")

NEEDS_SUBJECT_TEXT = (
    "API v3 needs an access token from Nightscout's Admin Tools, not the API_SECRET; make a subject with a "
    "role that has api:entries:create, api:entries:read and api:entries:update, then put its token in "
    "NIGHTSCOUT_API_TOKEN, or set NIGHTSCOUT_API_V3=false"
)
UNKNOWN_SUBJECT_TEXT = (
    "Nightscout does not accept the access token in NIGHTSCOUT_API_TOKEN for API v3 (HTTP 401): the token "
    "is unknown to Nightscout, or the site's API_SECRET was changed, which changes every access token. Copy "
    "the subject's current token from Admin Tools into the secret."
)
ENTRIES_ROLE = (
    "for API v3 the token's role needs api:entries:create, api:entries:read AND api:entries:update "
    "(re-sending a reading that is already there counts as an update in API v3). Add them to the role in "
    "Admin Tools, or set NIGHTSCOUT_API_V3=false"
)
TREATMENTS_ROLE = (
    "for the Sensor Start treatment the token's role needs api:treatments:create and "
    "api:treatments:update. Add them to the role in Admin Tools, or turn the Sensor Start posting off"
)

ANNOUNCE_ROLE = (
    "for announcements the token's role needs api:treatments:create and api:treatments:update. Add them to "
    "the role in Admin Tools, or set NIGHTSCOUT_ANNOUNCE=false"
)


_SHA1 = re.compile(r"^[0-9a-fA-F]{40}$")


def needs_subject_text(token: str) -> str:
    """Why this NIGHTSCOUT_API_TOKEN cannot be used with API v3, for a value that is no access token."""
    if isinstance(token, str) and _SHA1.match(token.strip()):
        # nightscout-librelink-up's v1 form: the SHA-1 of the token cannot be turned back into the token
        return (
            "NIGHTSCOUT_API_TOKEN looks like a SHA-1 (40 hex digits), which only API v1 accepts; API v3 needs the "
            "access token itself: paste the subject's token from Nightscout's Admin Tools (it looks like "
            "bridge-0123456789abcdef), or set NIGHTSCOUT_API_V3=false"
        )
    return NEEDS_SUBJECT_TEXT


def is_access_token(token: str) -> bool:
    """True for a Nightscout access token such as ``bridge-0123456789abcdef`` (not a secret or a hash)."""
    return isinstance(token, str) and bool(_ACCESS_TOKEN.match(token.strip().lower()))


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    conflict: str | None = None  # immutable field named in a 400: the document is already there
    error: NightscoutError | None = None
    per_document: bool = False  # the error concerns this document only; the others are worth sending


class NightscoutV3(NightscoutTransport):
    """Uploads readings with one ``POST /api/v3/entries`` per reading, at most `parallel` in flight."""

    _NOT_NIGHTSCOUT = (
        "the answer was not what Nightscout's API v3 sends, so NIGHTSCOUT_URL probably does not point to a "
        "Nightscout site (or a proxy/login page is in front of it). Open {url}/api/v3/version in a browser to "
        "check"
    )
    _TOO_LARGE = "the site refused the request as too large (HTTP 413)"

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        pool: urllib3.PoolManager | None = None,
        deadline: Deadline | None = None,
        device: str = "linkup-sync",
        app: str = "linkup-sync",
        jwt_cache: JwtCache | None = None,
        clock: Callable[[], float] = time.time,
        parallel: int = 4,
        allow_http: bool = False,
    ) -> None:
        super().__init__(base_url=base_url, deadline=deadline, device=device, allow_http=allow_http)
        if not isinstance(token, str) or not token.strip():
            raise ValueError("NIGHTSCOUT_API_TOKEN is empty; " + NEEDS_SUBJECT_TEXT + ".")
        if not is_access_token(token):
            raise ValueError(needs_subject_text(token) + ".")
        if not isinstance(device, str) or not device.strip() or not isinstance(app, str) or not app.strip():
            raise ValueError("device and app must be non-empty (Nightscout API v3 requires app)")
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        self._token = token.strip().lower()
        self.pool = pool if pool is not None else make_pool(maxsize=parallel)
        self.app = app
        self.jwt_cache = jwt_cache
        self.clock = clock
        self.parallel = parallel
        self._jwt: str | None = None
        self._jwt_exp = 0
        self._jwt_lock = threading.Lock()  # one JWT exchange at a time

    def __repr__(self) -> str:
        return f"NightscoutV3(base_url={self.base_url!r}, device={self.device!r}, app={self.app!r})"

    # --- documents -------------------------------------------------------------------------------

    def identifier_for(self, epoch_ms: int) -> str:
        """The server's own rule for entries (§5.4): uuid5("<device>_<date ms>", "NightscoutRocks!")."""
        return v3_identifier(f"{self.device}_{int(epoch_ms)}")

    def entry_for(self, reading: Reading) -> dict[str, Any]:
        """One v3 sgv entry. `app`, `device` and the utcOffset rule are immutable on the server: keep them."""
        return {
            "identifier": self.identifier_for(reading.epoch_ms),
            "app": self.app,
            "device": self.device,
            "date": int(reading.epoch_ms),
            "utcOffset": reading.utc_offset_min if reading.utc_offset_min is not None else 0,
            "type": "sgv",
            "sgv": int(reading.sgv),
            "direction": reading.direction,
            "dateString": reading.iso_utc,
        }

    # --- upload ----------------------------------------------------------------------------------

    def upload(self, readings: Sequence[Reading]) -> int:
        """POST every reading (one request each, oldest first, `parallel` at a time).

        Returns how many distinct readings Nightscout acknowledged: 201 (new), 200 isDeduplication (already
        there) or 400 "Field … cannot be modified" (already there from another writer; one warning per
        call). When some were acknowledged and others failed, raises NightscoutPartialUpload (also an
        instance of the first failure's class) with their epoch ms; when none were, the first failure.
        After a failure that concerns the whole site (unreachable, 401, 403), readings not yet sent are
        not sent.
        """
        if not readings:
            return 0
        unique: dict[int, Reading] = {}
        for r in sorted(readings, key=lambda r: r.epoch_ms):
            unique.setdefault(r.epoch_ms, r)
        ordered = list(unique.values())
        self._bearer()  # one exchange up front instead of `parallel` racing ones
        stop = threading.Event()

        def one(reading: Reading) -> _Outcome:
            if stop.is_set():
                return _Outcome(ok=False)
            outcome = self._create(_ENTRIES_PATH, self.entry_for(reading), ENTRIES_ROLE, "the readings")
            if outcome.error is not None and not outcome.per_document:
                stop.set()
            return outcome

        workers = min(self.parallel, len(ordered))
        if workers == 1:
            outcomes = [one(r) for r in ordered]
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ns-v3") as executor:
                outcomes = list(executor.map(one, ordered))

        accepted = [r.epoch_ms for r, o in zip(ordered, outcomes, strict=True) if o.ok]
        conflicts = sorted({o.conflict for o in outcomes if o.conflict})
        if conflicts:
            count = sum(1 for o in outcomes if o.conflict)
            log.warning(
                "Nightscout already had %d of these readings from another uploader or with a different "
                "%s (API v3 answered 'cannot be modified'); they are counted as uploaded. Don't mix API v1 "
                "and v3 on one site, and never change the device or app name.",
                count,
                "/".join(conflicts),
            )
        first = next((o.error for o in outcomes if o.error is not None), None)
        if first is not None:
            if accepted:
                raise NightscoutPartialUpload(first, accepted)
            raise first
        return len(accepted)

    # --- read-back ---------------------------------------------------------------------------------

    def existing_sgv(self, since_ms: int) -> Existing:
        """``GET /api/v3/entries?type$eq=sgv&date$gte=<ms>&sort$desc=date&limit=1000&fields=date`` (spec §5.7):
        every device's sgv entries in the window (v1 documents too; one collection), newest first.
        Needs api:entries:read, which the upload needs as well."""
        docs = self._search_sgv(f"date$gte={int(since_ms)}")
        return existing_from(docs, since_ms, READ_LIMIT, what=READ_BACK)

    def sgv_dates_page(self, from_ms: int, before_ms: int) -> tuple[list[int], bool]:
        """One page of a read over a longer span (the CSV import): the `date` (epoch ms) of every device's sgv
        entries with from_ms <= date < before_ms, newest first, at most READ_LIMIT (API3_MAX_LIMIT), and
        whether the page was full (then the caller asks again before the oldest date it got)."""
        docs = self._search_sgv(f"date$gte={int(from_ms)}&date$lt={int(before_ms)}")
        return entry_dates(docs, what=READ_BACK), len(docs) >= READ_LIMIT

    def _search_sgv(self, dates: str) -> list[Any]:
        """One SEARCH of the sgv entries whose `date` matches `dates`, newest first, at most READ_LIMIT."""
        query = f"?type$eq=sgv&{dates}&sort$desc=date&limit={READ_LIMIT}&fields=date"
        what = READ_BACK
        jwt = self._bearer()
        limit = readback_limit(READ_LIMIT)
        result = self._send_get(_ENTRIES_PATH + query, jwt, max_body=limit)
        if result.status == 401:  # a stale JWT: one new one, one retry (as for uploads)
            result = self._send_get(_ENTRIES_PATH + query, self._renew(jwt), max_body=limit)
            if result.status == 401:
                raise NightscoutUnauthorized(UNKNOWN_SUBJECT_TEXT)
        parsed = json_or_none(result.data)
        if result.status == 403:
            message = str(parsed.get("message", "")) if isinstance(parsed, dict) else ""
            missing = _MISSING_PERMISSION.search(message)
            lacks = f"the token lacks the permission {missing.group(1)}" if missing else "access denied"
            raise NightscoutRejected(f"HTTP 403, {lacks}; {ENTRIES_ROLE}.", what=what)
        if result.status != 200:
            raise self._failure(result, what)
        docs = parsed.get("result") if isinstance(parsed, dict) else None
        if not isinstance(docs, list):
            raise self._not_nightscout(what)
        return docs

    # --- treatments --------------------------------------------------------------------------------

    def post_sensor_start(self, *, serial: str, activated_at: int) -> None:
        """Record a sensor start (activated_at in Unix seconds) as a "Sensor Start" treatment.

        Idempotent: the identifier is uuid5("<device>_<date ms>_Sensor Start"), so a repeat is a
        de-duplication (200). A 400 "cannot be modified" (a Sensor Start at that instant written by someone
        else) and a 403 for api:treatments:update (only asked when the document exists) both mean the
        treatment is already there, which is success.
        """
        doc = sensor_start_v3(serial=serial, activated_at=activated_at, device=self.device, app=self.app)
        outcome = self._create(
            _TREATMENTS_PATH, doc, TREATMENTS_ROLE, "the Sensor Start treatment", update_means_present=True
        )
        if outcome.error is not None:
            raise outcome.error

    def post_announcement(self, *, text: str, at_ms: int) -> None:
        """One Announcement treatment with `isAnnouncement: true` (v3 does not add it; without it the
        treatment would snooze urgent alarms). Needs api:treatments:create (and :update for a repeat)."""
        doc = announcement_v3(text=text, at_ms=at_ms, device=self.device, app=self.app)
        outcome = self._create(_TREATMENTS_PATH, doc, ANNOUNCE_ROLE, "the announcement", update_means_present=True)
        if outcome.error is not None:
            raise outcome.error

    # --- one document ------------------------------------------------------------------------------

    def _create(
        self,
        path: str,
        doc: Mapping[str, Any],
        role_text: str,
        what: str,
        *,
        update_means_present: bool = False,
    ) -> _Outcome:
        body = json.dumps(doc, separators=(",", ":")).encode("utf-8")
        try:
            jwt = self._bearer()
            result = self._send_json("POST", path, body, jwt)
            if result.status == 401:
                jwt = self._renew(jwt)
                result = self._send_json("POST", path, body, jwt)
                if result.status == 401:
                    raise NightscoutUnauthorized(UNKNOWN_SUBJECT_TEXT)
            return self._outcome(result, role_text, what, update_means_present)
        except NightscoutError as exc:
            return _Outcome(ok=False, error=exc)

    def _outcome(self, result: HttpResult, role_text: str, what: str, update_means_present: bool) -> _Outcome:
        status = result.status
        parsed = json_or_none(result.data)
        message = str(parsed.get("message", "")) if isinstance(parsed, dict) else ""
        if status == 201:
            return _Outcome(ok=True)
        if status == 200:
            if isinstance(parsed, dict) and parsed.get("isDeduplication"):
                return _Outcome(ok=True)
            return _Outcome(ok=False, error=self._not_nightscout(what))
        if status == 400:
            immutable = _IMMUTABLE.search(message)
            if immutable:
                return _Outcome(ok=True, conflict=immutable.group(1))
            rejected = NightscoutRejected(f"HTTP 400: {self._excerpt(result.data)}", what=what)
            return _Outcome(ok=False, error=rejected, per_document=True)
        if status == 422:  # "Trying to modify read-only document": it is there and stays as it is
            return _Outcome(ok=True, conflict="read-only document")
        if status == 403:
            missing = _MISSING_PERMISSION.search(message)
            if missing and update_means_present and missing.group(1).endswith(":update"):
                return _Outcome(ok=True)
            lacks = f"the token lacks the permission {missing.group(1)}" if missing else "access denied"
            return _Outcome(ok=False, error=NightscoutRejected(f"HTTP 403, {lacks}; {role_text}.", what=what))
        return _Outcome(ok=False, error=self._failure(result, what))

    def _failure(self, result: HttpResult, what: str, path: str = "") -> NightscoutError:
        if result.status == 404:
            return NightscoutRejected(
                f"HTTP 404 ({self._excerpt(result.data)}): this site does not offer API v3 (Nightscout 13.0 or "
                "newer, with API v3 enabled); set NIGHTSCOUT_API_V3=false",
                what=what,
            )
        return super()._failure(result, what, path)

    # --- JWT -------------------------------------------------------------------------------------------

    def _usable(self, exp: int) -> bool:
        return exp - JWT_RENEW_MARGIN_S > self.clock()

    def _bearer(self) -> str:
        """A JWT with more than 10 minutes left: this client's, the cache's, or a new one."""
        with self._jwt_lock:
            if self._jwt is not None and self._usable(self._jwt_exp):
                return self._jwt
            cached = self._cache_get()
            if cached is not None and self._usable(cached[1]):
                self._jwt, self._jwt_exp = cached
                return cached[0]
            return self._exchange()

    def _renew(self, stale: str) -> str:
        """After a 401 with `stale`: a new JWT, unless another request already fetched one."""
        with self._jwt_lock:
            if self._jwt is not None and self._jwt != stale and self._usable(self._jwt_exp):
                return self._jwt
            return self._exchange()

    def _exchange(self) -> str:
        """GET /api/v2/authorization/request/<token> (§3.7). Caller holds _jwt_lock."""
        result = self._send("GET", _JWT_PATH + quote(self._token, safe=""), None, {"Accept": "application/json"})
        if result.status == 401:
            raise NightscoutUnauthorized(UNKNOWN_SUBJECT_TEXT)
        if result.status != 200:
            raise self._failure(result, "the access token")
        parsed = json_or_none(result.data)
        jwt = parsed.get("token") if isinstance(parsed, dict) else None
        if not isinstance(jwt, str) or not jwt:
            raise self._not_nightscout("the access token")
        raw_exp = parsed.get("exp") if isinstance(parsed, dict) else None
        now = int(self.clock())
        if (
            isinstance(raw_exp, int | float)
            and not isinstance(raw_exp, bool)
            and 0 < raw_exp <= now + _JWT_MAX_LIFETIME_S
        ):
            exp = int(raw_exp)
        else:
            exp = now + _JWT_FALLBACK_LIFETIME_S
        self._jwt, self._jwt_exp = jwt, exp
        self._cache_put(jwt, exp)
        return jwt

    def _cache_get(self) -> tuple[str, int] | None:
        if self.jwt_cache is None:
            return None
        try:
            value = self.jwt_cache.get()
        except Exception as exc:  # a broken cache must not stop the upload
            log.warning("Reading the cached Nightscout JWT failed (%s); requesting a new one", type(exc).__name__)
            return None
        if not value or not isinstance(value[0], str) or not value[0]:
            return None
        try:
            return value[0], int(value[1])
        except (TypeError, ValueError):
            return None

    def _cache_put(self, jwt: str, exp: int) -> None:
        if self.jwt_cache is None:
            return
        try:
            self.jwt_cache.put(jwt, exp)
        except Exception as exc:  # the JWT still works for this run
            log.warning("Storing the Nightscout JWT failed (%s); the next run requests a new one", type(exc).__name__)

    # --- transport -----------------------------------------------------------------------------------

    def _secrets(self) -> tuple[str | None, ...]:
        return (self._token, self._jwt)

    def _send_get(self, path: str, jwt: str, *, max_body: int = MAX_ANSWER_BYTES) -> HttpResult:
        headers = {"Accept": "application/json", "Authorization": f"Bearer {jwt}"}
        return self._send("GET", path, None, headers, max_body=max_body)

    def _send_json(self, method: str, path: str, body: bytes, jwt: str) -> HttpResult:
        return self._send(method, path, body, {**JSON_HEADERS, "Authorization": f"Bearer {jwt}"})
