"""Follower accounts and their tokens in the LibreLink Up simulator (``docs/librelinkup-api.md``).

Accounts, patients they follow, HS256-shaped tokens with a fresh ``ticket`` (§5.2, §12), the login
reply, steps (§5.4) and the lockout state (§5.6).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tools.simulators.clock import VirtualClock
from tools.simulators.librelinkup.constants import (
    _REGION_COUNTRY,
    _REGION_LANG,
    REGIONS,
    STEP_TICKET_DURATION_S,
    TICKET_DURATION_S,
    JsonObj,
)
from tools.simulators.librelinkup.glucose import SimPatient
from tools.simulators.librelinkup.plumbing import _det_uuid, _dumps, _mix64
from tools.simulators.server import LoopbackServer

# --------------------------------------------------------------------------------------------------
# Small pure helpers (also used by the tests)
# --------------------------------------------------------------------------------------------------


def account_id_hash(user_id: str) -> str:
    """``Account-Id`` header value: lower-case hex SHA-256 of ``user.id`` as received [§3.3]."""
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


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


class Accounts(LoopbackServer):
    """Accounts, patients and tokens; the state is set by LinkUpSimulator."""

    # The state this concern and those built on it read, declared so each module type-checks on its own;
    # LinkUpSimulator.__init__ (app.py) assigns it.
    clock: VirtualClock | Callable[[], float]
    seed: int
    accounts: dict[str, SimAccount]
    patients: dict[str, SimPatient]
    _key_generation: int
    _patient_counter: int

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
        profile: str = "steady",
    ) -> SimPatient:
        """Let the account ``email`` follow a patient (an existing ``patient_id`` is shared as is).

        ``start`` (default: ~24 h before now) is the time of the first per-minute sample; ``profile``
        "fast" makes a patient whose glucose often changes by more than 3 mg/dL a minute.
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
                    profile=profile,
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
