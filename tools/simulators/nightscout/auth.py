"""Authentication and authorization of the Nightscout stand-in (``docs/nightscout-api.md``).

API secret (§3.1/§3.2), access tokens and roles (§3.3, §3.4), the ``AUTH_FAIL_DELAY`` per client IP
(§3.5) and the JWT of ``/api/v2/authorization/request`` (§3.7). Permissions are Shiro-style.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tools.simulators.nightscout.constants import JWT_LIFETIME_S, MAX_AUTH_DELAY_S, MIN_PASSPHRASE_LENGTH, JsonObj
from tools.simulators.nightscout.plumbing import _b64url, _b64url_decode, _Req
from tools.simulators.nightscout.store import EntryStore
from tools.simulators.nightscout.values import _dumps, _is_num, _iso_utc, _js_truthy

BUILTIN_ROLES: dict[str, list[str]] = {  # lib/authorization/storage.js [§3.4]
    "admin": ["*"],
    "denied": [],
    "status-only": ["api:status:read"],
    "readable": ["*:*:read"],
    "careportal": ["api:treatments:create"],
    "devicestatus-upload": ["api:devicestatus:create"],
    "activity": ["api:activity:create"],
}


# --------------------------------------------------------------------------------------------------
# Public helpers
# --------------------------------------------------------------------------------------------------


def access_token_for(api_secret: str, subject_name: str, subject_id: str) -> str:
    """Access token of a subject [§3.3]: ``abbrev-<16 hex of sha1(sha1_hex(API_SECRET) + _id)>``."""
    abbrev = re.sub(r"[^A-Za-z0-9_]", "", subject_name.lower())[:10]
    return f"{abbrev}-{_subject_digest(api_secret, subject_id)[:16]}"


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()  # noqa: S324 - protocol-mandated digest


def _subject_digest(api_secret: str, subject_id: str) -> str:
    return _sha1(_sha1(api_secret) + subject_id)


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


class Auth(EntryStore):
    """Roles, subjects, tokens and credential resolution."""

    # The state of this concern (assigned by NightscoutStandIn.__init__, app.py).
    api_secret: str
    auth_fail_delay_ms: int
    default_roles: list[str]
    auth_failures: int
    _roles: dict[str, list[str]]
    _role_docs: dict[str, JsonObj]
    _subjects: list[_Subject]
    _delay_until: dict[str, float]
    _jwt_generation: int

    @property
    def api_enabled(self) -> bool:
        return len(self.api_secret) >= MIN_PASSPHRASE_LENGTH

    @property
    def api_secret_sha1(self) -> str:
        return _sha1(self.api_secret)

    @property
    def api_secret_sha512(self) -> str:
        return hashlib.sha512(self.api_secret.encode("utf-8")).hexdigest()

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
