"""The HTTP routes of the LibreLink Up simulator (``docs/librelinkup-api.md``).

Login with redirects, steps, bad credentials and lockout; the authenticated-endpoint checks
(911 → 920 → 401 → 400 → foreign host / unknown patient); connections, graph, logbook, notifications,
user and account.
"""

from __future__ import annotations

import hmac
import json
import random
from collections.abc import Callable
from typing import Self
from urllib.parse import parse_qs

from tools.simulators.librelinkup.accounts import SimAccount
from tools.simulators.librelinkup.constants import (
    _COUNTRY_REGION,
    LOCK_FAILURES,
    LOCK_INTERVAL_S,
    LOCKOUT_S,
    REGIONS,
    JsonObj,
)
from tools.simulators.librelinkup.faults import Faults
from tools.simulators.librelinkup.glucose import SimPatient
from tools.simulators.librelinkup.plumbing import ServedGraph, _json, _mix64, _Response, compare_versions
from tools.simulators.librelinkup.tampering import apply_rules

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


class Routes(Faults):
    """The LLU endpoints, one path prefix per region standing for its host."""

    # The state of this concern (assigned by LinkUpSimulator.__init__, app.py).
    served: list[ServedGraph]
    served_connections: list[ServedGraph]
    bad_credentials_message: str
    foreign_host_blocks_all: bool
    url_template: str
    _shuffle_counter: int

    def start(self) -> Self:
        super().start()
        self.url_template = self.base_url + "/{region}"
        return self

    def url(self, region: str) -> str:
        """Base URL standing for the host of ``region`` (no trailing slash)."""
        return self.url_template.format(region=region)

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
        current_changed, history_changed = apply_rules(pat.tampers, data)
        real = tuple(t for i, (t, _) in enumerate(hist) if i not in history_changed)  # ground truth: real items only
        self.served.append(ServedGraph(now, pat.id, None if current_changed else cur, real, region, "graph"))
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
