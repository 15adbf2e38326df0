"""API v3 routes of the Nightscout stand-in (``docs/nightscout-api.md`` §5).

Bearer-JWT only, one document per POST, the identifier rule (§5.4), de-duplication, immutable fields,
search, read, version, status and lastModified, for entries and treatments.
"""

from __future__ import annotations

import copy
import math
import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote

from tools.simulators.nightscout.auth import _Auth
from tools.simulators.nightscout.constants import (
    _HEX24,
    _UNDEF,
    _V3_COLLECTIONS,
    _V3_IMMUTABLE,
    _V3_OPERATORS,
    _V3_RESERVED,
    API3_MAX_LIMIT,
    API3_VERSION,
    MAX_UTC_OFFSET,
    MIN_TIMESTAMP,
    MIN_UTC_OFFSET,
    NS_UUID_NAMESPACE,
    JsonObj,
)
from tools.simulators.nightscout.plumbing import _json, _purify, _Req, _Response, _v3_status, _V3Error
from tools.simulators.nightscout.store import _matches, _mongo_eq, _sort_docs
from tools.simulators.nightscout.treatments import Treatments
from tools.simulators.nightscout.values import (
    _http_date,
    _is_num,
    _is_number_in_string,
    _iso_utc,
    _js_str,
    _js_strict_eq,
    _js_truthy,
    _moment_local,
    _num,
    _parse_http_date,
    _parse_int,
    _to_js_number,
    _v3_parse_date,
    _version_tuple,
)


def v3_identifier(device: Any, date: Any, event_type: Any = None) -> str:
    """The v3 identifier rule [§5.4]: ``uuid5("<device>_<date>[_<eventType>]", "NightscoutRocks!")``.

    Pass ``None`` for a JSON ``null`` device; a missing device is spelled ``"undefined"`` by the
    server, which this helper does when ``device`` is the string ``"undefined"``.
    """
    key = f"{_js_str(device)}_{_js_str(date)}"
    if _js_truthy(event_type):
        key += f"_{_js_str(event_type)}"
    return str(uuid.uuid5(NS_UUID_NAMESPACE, key))


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


def _v3_clauses(q: JsonObj) -> list[tuple[str, str, Any]]:
    """(field, operator, value) of each filter parameter (``date$gte=...``); an unknown operator is a 400."""
    clauses: list[tuple[str, str, Any]] = []
    for param, raw_value in q.items():
        if param in _V3_RESERVED:
            continue
        fld, op = param, "eq"
        m = re.match(r"^(.*)\$([a-zA-Z]+)", param)
        if m:
            fld, op = m.group(1), m.group(2)
            if op not in _V3_OPERATORS:
                raise _V3Error(_v3_status(400, f"Unsupported filter operator {op}"))
        clauses.append((fld, op, _v3_value(fld, raw_value)))
    return clauses


def _v3_sort(q: JsonObj) -> list[tuple[str, int]]:
    """The sort field asked for, then identifier, created_at and date in the same direction."""
    if _js_truthy(q.get("sort")) and _js_truthy(q.get("sort$desc")):
        raise _V3Error(_v3_status(400, "Parameters sort and sort_desc cannot be combined"))
    direction = -1 if _js_truthy(q.get("sort$desc")) else 1
    sort: list[tuple[str, int]] = []
    if _js_truthy(q.get("sort$desc")):
        sort.append((str(q["sort$desc"]), -1))
    elif _js_truthy(q.get("sort")):
        sort.append((str(q["sort"]), 1))
    return [*sort, ("identifier", direction), ("created_at", direction), ("date", direction)]


def _v3_bounded(q: JsonObj, name: str, within: Callable[[float], bool], default: int) -> int:
    """The integer parameter ``name`` (limit, skip), ``default`` when absent; a 400 when out of tolerance."""
    if not _js_truthy(q.get(name)):
        return default
    number = _to_js_number(q[name])
    if not (isinstance(number, int | float) and not math.isnan(number) and within(number)):
        raise _V3Error(_v3_status(400, f"Parameter {name} out of tolerance"))
    return int(_parse_int(q[name]))


def _v3_condition(op: str, value: Any) -> Any:
    if op == "eq":
        return value
    if op in ("in", "nin"):
        return {f"${op}": _js_str(value).split("|")}
    if op == "re":
        return {"$regex": _js_str(value)}
    return {f"${op}": value}


class V3Routes(Treatments):
    """The v3 routes."""

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
            return self._v3_status_info(req)
        if parts == ["lastmodified"] and m == "GET":
            return self._v3_last_modified_all(req)
        if parts and parts[0] in _V3_COLLECTIONS:
            return self._v3_collection_route(req, parts, orig)
        return _v3_status(404, "Bad operation or collection")

    def _v3_collection_route(self, req: _Req, parts: list[str], orig: list[str]) -> _Response:
        col, m = parts[0], req.method
        if len(parts) == 1 and m == "POST":
            return self._v3_create(req, col)
        if len(parts) == 1 and m == "GET":
            return self._v3_search(req, col)
        if len(parts) == 2 and m == "GET" and parts[1] != "history":
            return self._v3_read(req, col, orig[1])
        return _v3_status(404, "Bad operation or collection")

    def _v3_status_info(self, req: _Req) -> _Response:
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

    def _v3_last_modified_all(self, req: _Req) -> _Response:
        auth = self._v3_auth(req)
        cols: JsonObj = {}
        with self._lock:
            for col, (_, date_field) in _V3_COLLECTIONS.items():
                if auth.can(f"api:{col}:read"):
                    value = self._v3_last_modified(self._collection(col), date_field)
                    if value:
                        cols[col] = value
        return _json(200, {"status": 200, "result": {"srvDate": self._now_ms(), "collections": cols}})

    def _v3_version_info(self) -> JsonObj:
        return {
            "version": self.version,
            "apiVersion": API3_VERSION,
            "srvDate": self._now_ms(),
            "storage": {"storage": "mongodb", "version": "4.4.29"},
        }

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
        clauses = _v3_clauses(q)
        sort = _v3_sort(q)
        limit = _v3_bounded(q, "limit", lambda n: 0 < n <= API3_MAX_LIMIT, API3_MAX_LIMIT)
        skip = _v3_bounded(q, "skip", lambda n: n >= 0, 0)
        query: JsonObj = {"isValid": {"$ne": False}}
        for fld, op, value in clauses:
            query[fld] = _v3_condition(op, value)
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
