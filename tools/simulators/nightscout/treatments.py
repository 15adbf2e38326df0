"""Treatments of the Nightscout stand-in, announcements and the alarm snooze rule (``docs/nightscout-api.md`` §11).

v1 upserts on ``created_at + eventType`` and adds ``isAnnouncement`` to announcements; v3 stores
what was sent. A recent non-announcement treatment snoozes urgent alarms for 10 minutes.
"""

from __future__ import annotations

import copy
import math

from tools.simulators.nightscout.auth import Auth
from tools.simulators.nightscout.constants import _HEX24, _UNDEF, FOUR_DAYS_MS, SNOOZE_WINDOW_MS, JsonObj
from tools.simulators.nightscout.plumbing import _json, _purify, _Req, _Response
from tools.simulators.nightscout.store import _matches, _sort_docs
from tools.simulators.nightscout.values import (
    _is_num,
    _iso_utc,
    _js_truthy,
    _moment_local,
    _parse_int,
    _parse_zone,
    _to_js_number,
)


def _prepare_treatment(obj: JsonObj, now_ms: int) -> None:
    """``prepareData`` of ``lib/server/treatments.js`` (without the preBolus companion record)."""
    created = obj.get("created_at", _UNDEF)
    parsed = (now_ms, 0) if created is _UNDEF else (_parse_zone(created) or (now_ms, 0))
    obj["created_at"] = _iso_utc(parsed[0])
    obj["utcOffset"] = parsed[1]
    for fld in ("glucose", "targetTop", "targetBottom", "carbs", "insulin", "duration", "percent",
                "absolute", "relative", "preBolus"):  # fmt: skip
        obj[fld] = _to_js_number(obj.get(fld, _UNDEF))
    if _js_truthy(obj.get("eventTime")):
        event = _moment_local(obj["eventTime"])
        if event is not None:
            obj["created_at"] = _iso_utc(event[0])
    if obj.get("eventType") == "Announcement":
        obj["isAnnouncement"] = True
    obj.pop("eventTime", None)
    for fld in ("targetTop", "targetBottom", "carbs", "insulin", "percent", "relative", "notes", "preBolus"):
        if fld in obj and not _js_truthy(obj[fld]):
            del obj[fld]
    for fld in ("absolute", "duration"):
        value = obj.get(fld)
        if isinstance(value, float) and math.isnan(value):
            del obj[fld]
    glucose = obj.get("glucose")
    if glucose == 0 or (isinstance(glucose, float) and math.isnan(glucose)):
        for fld in ("glucose", "glucoseType", "units"):
            obj.pop(fld, None)


class Treatments(Auth):
    """Stored treatments, the snooze rule, the v1 treatments upsert and list."""

    @property
    def treatments(self) -> list[JsonObj]:
        with self._lock:
            return copy.deepcopy(self._treatments)

    def announcements(self) -> list[JsonObj]:
        """Stored treatments Nightscout treats as announcements: those marked ``isAnnouncement`` [§11].

        v1 adds the mark to every ``eventType: "Announcement"`` itself; v3 stores only what was sent.
        """
        return [d for d in self.treatments if d.get("isAnnouncement") is True]

    def urgent_alarms_snoozed(self) -> bool:
        """Whether Nightscout would now snooze URGENT alarms because of a recent treatment [§11].

        ``autoSnoozeAlarms`` in lib/plugins/treatmentnotify.js: the newest treatment not in the future
        (automated ``openaps://`` / ``loop://`` ones left out unless manual) that is less than 10 minutes
        old snoozes urgent alarms for ``snoozeMins`` (10) unless it is an announcement.
        """
        last = self._last_current_treatment()
        return last is not None and not last.get("isAnnouncement")

    def pushed_announcement(self) -> JsonObj | None:
        """The announcement Nightscout would push now (the newest treatment, under 10 minutes old) [§11]."""
        last = self._last_current_treatment()
        return last if last is not None and last.get("isAnnouncement") else None

    def _last_current_treatment(self) -> JsonObj | None:
        now = self._now_ms()
        dated: list[tuple[int, JsonObj]] = []
        for doc in self.treatments:
            entered = str(doc.get("enteredBy") or "")
            manual = doc.get("eventType") in ("BG Check", "Meal Bolus", "Carb Correction", "Correction Bolus")
            if entered.startswith(("openaps://", "loop://")) and not manual:
                continue
            parsed = _parse_zone(doc["created_at"]) if isinstance(doc.get("created_at"), str) else None
            mills = parsed[0] if parsed else doc.get("date")
            if _is_num(mills) and mills <= now:
                dated.append((int(mills), doc))
        if not dated:
            return None
        mills, last = max(dated, key=lambda pair: pair[0])
        return last if now - mills < SNOOZE_WINDOW_MS else None

    # -- v1 treatments (kept simple) -----------------------------------------------------------------------

    def _v1_treatments_create(self, req: _Req) -> _Response:
        body = _purify(req.body)
        docs = body if isinstance(body, list) else [body]
        results: list[JsonObj] = []
        now = self._now_ms()
        with self._lock:
            for raw in docs:
                if not isinstance(raw, dict):
                    return _json(500, {"status": 500, "message": "Mongo Error", "description": "bad document"})
                obj = raw
                if self.merge_upsert:
                    oid = obj.get("_id", _UNDEF)
                    if isinstance(oid, str) and not _HEX24.match(oid):
                        if not _js_truthy(obj.get("identifier")):
                            obj["identifier"] = oid
                        del obj["_id"]
                _prepare_treatment(obj, now)
                if self.merge_upsert and _js_truthy(obj.get("identifier")):
                    obj.pop("_id", None)
                    key: JsonObj = {"identifier": obj["identifier"]}
                elif "_id" in obj and obj["_id"] not in (None, ""):
                    key = {"_id": obj["_id"]}
                else:
                    key = {"created_at": obj.get("created_at"), "eventType": obj.get("eventType")}
                existing = next((d for d in self._treatments if _matches(d, key)), None)
                fields = {k: copy.deepcopy(v) for k, v in obj.items() if k != "_id"}
                if existing is not None:
                    keep_id = existing.get("_id")
                    existing.clear()
                    existing["_id"] = keep_id
                    existing.update(fields)
                else:
                    oid_new = obj["_id"] if "_id" in obj else self._new_oid()
                    self._treatments.append({"_id": oid_new, **fields})
                    obj["_id"] = oid_new
                results.append(obj)
        return _json(200, results)

    def _v1_treatments_list(self, req: _Req) -> _Response:
        raw_find = req.query.get("find")
        find: JsonObj = copy.deepcopy(raw_find) if isinstance(raw_find, dict) else {}
        for prop in ("insulin", "carbs", "glucose"):
            if prop in find and _js_truthy(find[prop]):
                find[prop] = self._walk_int(find[prop])
        if not _js_truthy(find.get("created_at")) and not _js_truthy(find.get("dateString")):
            find["created_at"] = {"$gte": _iso_utc(self._now_ms() - FOUR_DAYS_MS)}
        count = _parse_int(req.query["count"]) if _js_truthy(req.query.get("count")) else 0
        with self._lock:
            docs = _sort_docs([d for d in self._treatments if _matches(d, find)], [("created_at", -1)])
            if isinstance(count, int) and count:
                docs = docs[: abs(count)]
            return _json(200, copy.deepcopy(docs))
