"""API v1 (and the v2 authorization) routes of the Nightscout stand-in (``docs/nightscout-api.md``).

Upload ``POST /api/v1/entries`` (§2), read-back with its implicit 4-day window and content
negotiation (§4), ``/api/v1/status`` and ``/api/v1/verifyauth`` (§3.6), ``/api/v2/authorization/*``
(§3.3, §3.7).
"""

from __future__ import annotations

import copy
import html
from typing import Any
from urllib.parse import unquote

from tools.simulators.nightscout.auth import _Auth, access_token_for
from tools.simulators.nightscout.constants import _ENTRY_FORMATS, _HEX24, _STATUS_FORMATS, _UNDEF, TWO_DAYS_MS, JsonObj
from tools.simulators.nightscout.plumbing import (
    _cannot,
    _json,
    _MongoError,
    _negotiate,
    _purify,
    _Req,
    _Response,
    _text,
    _unauthorized,
)
from tools.simulators.nightscout.store import _matches, _mongo_eq, _sort_docs
from tools.simulators.nightscout.treatments import Treatments
from tools.simulators.nightscout.values import _dumps, _http_date, _is_num, _iso_utc, _parse_http_date, _version_tuple


class V1Routes(Treatments):
    """The v1 and v2 routes."""

    # -- API v1 ---------------------------------------------------------------------------------------

    def _route_v1(self, req: _Req, rest: str) -> _Response:
        if req.body_error and req.method in ("POST", "PUT"):
            return _text(400, f"<pre>{html.escape(req.body_error)}</pre>", "text/html; charset=utf-8")
        parts = [p for p in rest.split("/") if p != ""] if rest != "/" else []
        orig_parts = [unquote(p) for p in req.path[len("/api/v1") :].split("/") if p != ""]
        if parts[:1] == ["entries"] and len(parts) <= 2:
            return self._v1_entries_route(req, parts, orig_parts)
        if parts[:2] == ["echo", "entries"] and len(parts) <= 3 and req.method == "GET":
            auth = self._v1_auth(req)
            if not auth.can("api:entries:read"):
                return _unauthorized()
            model = orig_parts[2] if len(orig_parts) > 2 else None
            return self._v1_echo(req, model)
        return self._v1_other_route(req, parts)

    def _v1_other_route(self, req: _Req, parts: list[str]) -> _Response:
        """/status, /verifyauth and /treatments."""
        m = req.method
        if parts == ["status"] and m == "GET":
            return self._v1_status(req)
        if parts == ["verifyauth"] and m == "GET":
            return self._v1_verifyauth(req)
        if parts == ["treatments"] and m in ("GET", "POST"):
            return self._v1_treatments_route(req)
        return _cannot(m, req.path)

    def _v1_entries_route(self, req: _Req, parts: list[str], orig_parts: list[str]) -> _Response:
        """/entries and /entries/<spec>: the router checks the read permission first [§2.1]."""
        auth = self._v1_auth(req)
        if not auth.can("api:entries:read"):
            return _unauthorized()
        m = req.method
        if len(parts) == 1:
            return self._v1_entries_root(req, auth)
        if parts[1] == "preview" and m == "POST":
            if not auth.can("api:entries:create"):
                return _unauthorized()
            return self._v1_preview(req)
        if m == "GET":
            return self._v1_entries_spec(req, parts, orig_parts)
        return _cannot(m, req.path)

    def _v1_entries_root(self, req: _Req, auth: _Auth) -> _Response:
        m = req.method
        if m == "GET":
            return self._v1_list(req, model=None)
        if m == "POST":
            if not self.api_enabled:
                return _cannot(m, req.path)
            if not auth.can("api:entries:create"):
                return _unauthorized()
            return self._v1_create(req)
        return _cannot(m, req.path)

    def _v1_entries_spec(self, req: _Req, parts: list[str], orig_parts: list[str]) -> _Response:
        """GET /entries/current, /entries/<_id> or /entries/<type>."""
        if parts[1] == "current":
            return self._v1_list(req, model=None, current=True)
        spec = orig_parts[1] if len(orig_parts) > 1 else parts[1]
        if _HEX24.match(spec):
            with self._lock:
                found = next((d for d in self._entries if d.get("_id") == spec.lower()), None)
                docs: list[Any] = [copy.deepcopy(found)]
            return self._format_entries(req, docs)
        return self._v1_list(req, model=spec)

    def _v1_treatments_route(self, req: _Req) -> _Response:
        auth = self._v1_auth(req)
        if not auth.can("api:treatments:read"):
            return _unauthorized()
        if req.method == "GET":
            return self._v1_treatments_list(req)
        if not self.api_enabled:
            return _cannot(req.method, req.path)
        if not auth.can("api:treatments:create"):
            return _unauthorized()
        return self._v1_treatments_create(req)

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
