"""Nightscout API v3 uploader (implements ports.NightscoutSink; docs/nightscout-api.md §3.7, §5).

API v3 takes one document per POST and authenticates only with a JWT obtained for an access token
(``GET /api/v2/authorization/request/<token>``, valid 8 h): v3_access.py holds the token, the JWT and the
texts that say which permission a refusal lacks.

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

import urllib3

from ..errors import (
    NightscoutError,
    NightscoutPartialUpload,
    NightscoutRejected,
)
from ..http import Deadline, HttpResult, make_pool
from ..model import Existing
from ..ports import JwtCache
from ..readings import Reading
from .transport import (
    READ_BACK,
    entry_dates,
    existing_from,
    json_or_none,
    readback_limit,
)
from .treatments import announcement_v3, sensor_start_v3, v3_identifier
from .v3_access import ANNOUNCE_ROLE, ENTRIES_ROLE, TREATMENTS_ROLE, V3Access

log = logging.getLogger("linkup_sync")

_ENTRIES_PATH = "/api/v3/entries"
READ_LIMIT = 1000  # API3_MAX_LIMIT's default: a larger limit is "400 Parameter limit out of tolerance"
_TREATMENTS_PATH = "/api/v3/treatments"
_IMMUTABLE = re.compile(r"Field (\w+) cannot be modified by the client")
_MISSING_PERMISSION = re.compile(r"Missing permission ((?:api:)?[a-z0-9*]+:[a-z*]+)")


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    conflict: str | None = None  # immutable field named in a 400: the document is already there
    error: NightscoutError | None = None
    per_document: bool = False  # the error concerns this document only; the others are worth sending


class NightscoutV3(V3Access):
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
        super().__init__(
            base_url=base_url,
            token=token,
            deadline=deadline,
            device=device,
            jwt_cache=jwt_cache,
            clock=clock,
            allow_http=allow_http,
        )
        if not isinstance(device, str) or not device.strip() or not isinstance(app, str) or not app.strip():
            raise ValueError("device and app must be non-empty (Nightscout API v3 requires app)")
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        self.pool = pool if pool is not None else make_pool(maxsize=parallel)
        self.app = app
        self.parallel = parallel

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
        limit = readback_limit(READ_LIMIT)
        result = self._authorized(lambda jwt: self._send_get(_ENTRIES_PATH + query, jwt, max_body=limit))
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
            result = self._authorized(lambda jwt: self._send_json("POST", path, body, jwt))
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
