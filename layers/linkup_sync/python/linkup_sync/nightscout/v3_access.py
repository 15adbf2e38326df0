"""Who may do what with Nightscout API v3 (docs/nightscout-api.md §3.3, §3.7): the access token, what a
refusal tells the person to add to the token's role, and the JWT the token is exchanged for.

`V3Access` is the transport of NightscoutV3: every request carries the JWT as a bearer. The JWT is reused
through a JwtCache (the caller keeps it in its state so it survives cold starts) until 10 minutes before
it expires; on a 401 a new one is fetched once and the request retried once.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from urllib.parse import quote

from ..errors import NightscoutUnauthorized
from ..http import Deadline, HttpResult
from ..ports import JwtCache
from .transport import JSON_HEADERS, MAX_ANSWER_BYTES, NightscoutTransport, json_or_none

log = logging.getLogger("linkup_sync")

JWT_RENEW_MARGIN_S = 600  # use a JWT only while it has more than 10 minutes left
_JWT_FALLBACK_LIFETIME_S = 3600  # when the exchange answer lacks a usable `exp`
_JWT_MAX_LIFETIME_S = 24 * 3600  # Nightscout's JWTs live 8 hours: a later `exp` is not believed
_JWT_PATH = "/api/v2/authorization/request/"
# spec §3.3: "<abbrev>-<16 hex>", abbrev = up to 10 characters of the subject's name. Nightscout strips
# non-word characters; "_" is kept by some versions, so it is allowed here.
_ACCESS_TOKEN = re.compile(r"^[a-z0-9_]{0,10}-[0-9a-f]{16}$")

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


class V3Access(NightscoutTransport):
    """NightscoutTransport with API v3's authentication: the access token, exchanged for a JWT."""

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        deadline: Deadline | None,
        device: str,
        jwt_cache: JwtCache | None,
        clock: Callable[[], float],
        allow_http: bool,
    ) -> None:
        super().__init__(base_url=base_url, deadline=deadline, device=device, allow_http=allow_http)
        if not isinstance(token, str) or not token.strip():
            raise ValueError("NIGHTSCOUT_API_TOKEN is empty; " + NEEDS_SUBJECT_TEXT + ".")
        if not is_access_token(token):
            raise ValueError(needs_subject_text(token) + ".")
        self._token = token.strip().lower()
        self.jwt_cache = jwt_cache
        self.clock = clock
        self._jwt: str | None = None
        self._jwt_exp = 0
        self._jwt_lock = threading.Lock()  # one JWT exchange at a time

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

    def _authorized(self, request: Callable[[str], HttpResult]) -> HttpResult:
        """`request` sent with a JWT; after a 401 (a stale JWT) once more with a new one. A second 401 is the
        access token's own: NightscoutUnauthorized."""
        jwt = self._bearer()
        result = request(jwt)
        if result.status == 401:
            result = request(self._renew(jwt))
            if result.status == 401:
                raise NightscoutUnauthorized(UNKNOWN_SUBJECT_TEXT)
        return result

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
