"""The stand-in's document store: Mongo-like matching and sorting, the v1 entries upsert and query.

Section numbers refer to ``docs/nightscout-api.md``: upsert on ``{sysTime, type}`` with ``$set`` merge (15.0.7) or
full replacement (≤ 15.0.6) (§2.5), date normalisation (§2.4), the ``find[...]`` query walker (§4).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from tools.simulators.nightscout.constants import (
    _HEX24,
    _UNDEF,
    _UUID_RE,
    _V1_INT_FIELDS,
    ENTRIES_DEFAULT_COUNT,
    FOUR_DAYS_MS,
    JsonObj,
)
from tools.simulators.nightscout.plumbing import _MongoError
from tools.simulators.nightscout.values import (
    _is_num,
    _iso_utc,
    _js_strict_eq,
    _js_truthy,
    _moment_local,
    _parse_int,
    _parse_zone,
    _plain,
    _version_tuple,
)
from tools.simulators.server import LoopbackServer

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


class EntryStore(LoopbackServer):
    """The stored documents and the entries upsert/query; the state is set by NightscoutStandIn."""

    # The state this concern and those built on it read, declared so each module type-checks on its own;
    # NightscoutStandIn.__init__ (app.py) assigns it.
    clock: Callable[[], float]
    version: str
    units: str
    name: str
    _entries: list[JsonObj]
    _treatments: list[JsonObj]
    _oid_counter: int

    # -- version-dependent behaviour ---------------------------------------------------------------

    @property
    def merge_upsert(self) -> bool:
        """15.0.7+: ``$set`` merge and JSON reply in input order; older: replacement, sorted, negotiated."""
        return _version_tuple(self.version) >= (15, 0, 7)

    def _now_ms(self) -> int:
        return round(self.clock() * 1000)

    def _new_oid(self) -> str:
        with self._lock:
            self._oid_counter = (self._oid_counter + 1) & 0xFFFFFF
            counter = self._oid_counter
        return f"{int(self.clock()) & 0xFFFFFFFF:08x}c51b992e71{counter:06x}"

    # -- store access (copies) ---------------------------------------------------------------------

    @property
    def entries(self) -> list[JsonObj]:
        """Copies of every stored entries document (v1 and v3), in storage order."""
        with self._lock:
            return copy.deepcopy(self._entries)

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

    def _v1_upsert(self, doc: JsonObj, *, merge: bool, systime_bug: bool) -> JsonObj:
        now = self._now_ms()
        if merge:
            _v1_fix_id(doc)
        _v1_normalise(doc, now, systime_bug=systime_bug)
        # upsert [§2.5]
        if _js_truthy(doc.get("sysTime")) and _js_truthy(doc.get("type")):
            key: JsonObj = {"sysTime": doc["sysTime"], "type": doc["type"]}
        else:
            key = dict(doc)
        existing = self._v1_upsert_target(key)
        if existing is not None:
            _v1_update(existing, doc, merge=merge)
            return doc
        oid_new = doc["_id"] if "_id" in doc else self._new_oid()
        self._entries.append({"_id": oid_new, **{k: copy.deepcopy(v) for k, v in doc.items() if k != "_id"}})
        doc["_id"] = oid_new
        return doc

    def _v1_upsert_target(self, key: JsonObj) -> JsonObj | None:
        """The first stored entry the upsert's key matches."""
        if "sysTime" in key and isinstance(key["sysTime"], str):
            # A stored entry can only match with that sysTime or an array holding it: skip the others
            # without the generic matcher (an upload of 12 hours into a site of days is quadratic).
            wanted = key["sysTime"]
            found: Iterator[JsonObj] = (
                d for d in self._entries if (s := d.get("sysTime")) == wanted or isinstance(s, list)
            )
        else:
            found = iter(self._entries)
        return next((d for d in found if _matches(d, key)), None)

    def _collection(self, col: str) -> list[JsonObj]:
        return self._entries if col == "entries" else self._treatments


def _v1_fix_id(doc: JsonObj) -> None:
    """15.0.7's _id handling of a merge [§2.3]: a UUID becomes the identifier, other non-ObjectIds go."""
    oid = doc.get("_id", _UNDEF)
    if isinstance(oid, str) and not _HEX24.match(oid):
        if _UUID_RE.match(oid) and not _js_truthy(doc.get("identifier")):
            doc["identifier"] = oid
        del doc["_id"]
    elif isinstance(oid, str):
        doc["_id"] = oid.lower()
    elif oid is None:
        del doc["_id"]


def _v1_normalise(doc: JsonObj, now: int, *, systime_bug: bool) -> None:
    """sysTime, utcOffset and dateString as the server writes them [§2.4]."""
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


def _v1_update(existing: JsonObj, doc: JsonObj, *, merge: bool) -> None:
    """An upsert that found its entry: merged ($set) or replaced, the _id kept [§2.5]."""
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
