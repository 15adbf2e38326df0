"""Nightscout API v1 uploader (implements ports.NightscoutSink; docs/nightscout-api.md §2, §3, §10)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import urllib3

from ..errors import NightscoutError, NightscoutPartialUpload, NightscoutUnauthorized
from ..http import Deadline, make_pool
from ..model import Existing
from ..readings import Reading
from .auth import api_secret_header
from .transport import (
    JSON_HEADERS,
    READ_BACK,
    NightscoutTransport,
    entry_dates,
    existing_from,
    json_or_none,
    readback_limit,
)
from .treatments import announcement_v1, sensor_start_v1

MAX_BATCH = 288  # one day at 5-minute spacing; keeps bodies far below Nightscout's limits
READ_COUNT = 1000  # entries per read-back: 12 h of one-minute readings fit with room to spare
_ENTRIES_PATH = "/api/v1/entries.json"
_SGV_READ_PATH = "/api/v1/entries/sgv.json"  # the path's type segment becomes find[type]=sgv (spec §4)
_TREATMENTS_PATH = "/api/v1/treatments.json"
_TREATMENTS_UNAUTHORIZED = (
    "Nightscout answered 401 Unauthorized to the Sensor Start treatment. Treatments need more than "
    "readings: the role of the token in NIGHTSCOUT_API_TOKEN must also have api:treatments:create and "
    "api:treatments:read (add them in Admin Tools), or use the site's API_SECRET."
)


class NightscoutV1(NightscoutTransport):
    """Uploads readings with `POST /api/v1/entries.json` (bulk, idempotent upsert on date+type)."""

    _NOT_NIGHTSCOUT = (
        "the answer was not a list of entries, so NIGHTSCOUT_URL probably does not point to a Nightscout site "
        "(or a proxy/login page is in front of it). Open {url}/api/v1/status.json in a browser to check"
    )
    _TOO_LARGE = (
        "the site refused the upload as too large (HTTP 413). This happens when SECURE_CSP=true "
        "limits request bodies to 100 kB; the bridge sends at most 288 readings per request."
    )

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        pool: urllib3.PoolManager | None = None,
        deadline: Deadline | None = None,
        device: str = "linkup-sync",
        allow_http: bool = False,
    ) -> None:
        super().__init__(base_url=base_url, deadline=deadline, device=device, allow_http=allow_http)
        self._secret = api_secret_header(token)
        self._raw_token = token.strip()
        self.pool = pool if pool is not None else make_pool()

    def __repr__(self) -> str:
        return f"NightscoutV1(base_url={self.base_url!r}, device={self.device!r})"

    def entry_for(self, reading: Reading) -> dict[str, Any]:
        """One v1 sgv entry; `date` and `dateString` are the same instant (the reading's identity)."""
        return {
            "type": "sgv",
            "sgv": int(reading.sgv),
            "date": int(reading.epoch_ms),
            "dateString": reading.iso_utc,
            "direction": reading.direction,
            "device": self.device,
        }

    def upload(self, readings: Sequence[Reading]) -> int:
        """POST the readings oldest first in batches of at most 288; returns how many were sent.

        Never sends an empty array (Nightscout ≤ 15.0.6 would hang). Raises a NightscoutError on the
        first batch that is not accepted; earlier batches stay stored (re-sending them is harmless). When
        earlier batches were accepted, the error is a NightscoutPartialUpload (also an instance of the
        failure's own class) whose `accepted` lists their epoch ms.
        """
        if not readings:
            return 0
        ordered = sorted(readings, key=lambda r: r.epoch_ms)
        sent = 0
        accepted: list[int] = []
        for start in range(0, len(ordered), MAX_BATCH):
            chunk = ordered[start : start + MAX_BATCH]
            batch = [self.entry_for(r) for r in chunk]
            try:
                self._post(batch)
            except NightscoutError as exc:
                if accepted:
                    raise NightscoutPartialUpload(exc, accepted) from None
                raise
            sent += len(batch)
            accepted.extend(r.epoch_ms for r in chunk)
        return sent

    def post_sensor_start(self, *, serial: str, activated_at: int) -> None:
        """Record a sensor start (activated_at in Unix seconds) as a "Sensor Start" treatment.

        Idempotent: Nightscout upserts v1 treatments on created_at + eventType, so posting the same start
        again updates the one document. Needs api:treatments:create and api:treatments:read (or API_SECRET).
        Raises NightscoutUnauthorized / NightscoutRejected / NightscoutUnreachable like upload().
        """
        doc = sensor_start_v1(serial=serial, activated_at=activated_at, device=self.device)
        self._post([doc], path=_TREATMENTS_PATH, kind="treatments")

    def post_announcement(self, *, text: str, at_ms: int) -> None:
        """One Announcement treatment (shown on Nightscout's main screen, pushed while under 10 minutes
        old). Needs api:treatments:create and api:treatments:read (or API_SECRET)."""
        doc = announcement_v1(text=text, at_ms=at_ms, device=self.device)
        self._post([doc], path=_TREATMENTS_PATH, kind="announcement")

    def existing_sgv(self, since_ms: int) -> Existing:
        """``GET /api/v1/entries/sgv.json?find[date][$gte]=<ms>&count=1000`` (spec §4): every device's sgv
        entries in the window, newest first. `date` is sent as epoch ms: the server parses it as an integer."""
        docs = self._read_sgv(f"find%5Bdate%5D%5B%24gte%5D={int(since_ms)}")
        return existing_from(docs, since_ms, READ_COUNT, what=READ_BACK)

    def sgv_dates_page(self, from_ms: int, before_ms: int) -> tuple[list[int], bool]:
        """One page of a read over a longer span (the CSV import): the `date` (epoch ms) of every device's sgv
        entries with from_ms <= date < before_ms, newest first, at most READ_COUNT, and whether the page was
        full (then the caller asks again before the oldest date it got)."""
        docs = self._read_sgv(f"find%5Bdate%5D%5B%24gte%5D={int(from_ms)}&find%5Bdate%5D%5B%24lt%5D={int(before_ms)}")
        return entry_dates(docs, what=READ_BACK), len(docs) >= READ_COUNT

    def _read_sgv(self, dates: str) -> list[Any]:
        """One read of the sgv entries whose `date` matches `dates` (URL-encoded find), newest first."""
        query = f"?{dates}&count={READ_COUNT}"
        headers = {"Accept": "application/json", "api-secret": self._secret}
        result = self._send("GET", _SGV_READ_PATH + query, None, headers, max_body=readback_limit(READ_COUNT))
        what = READ_BACK
        if result.status == 401:
            raise NightscoutUnauthorized()
        if result.status != 200:
            raise self._failure(result, what, _SGV_READ_PATH)
        docs = json_or_none(result.data)
        if not isinstance(docs, list):  # a TSV answer, a proxy page: not Nightscout's JSON
            raise self._not_nightscout(what)
        return docs

    # --- transport -------------------------------------------------------------------------------

    def _secrets(self) -> tuple[str | None, ...]:
        return (self._secret, self._raw_token)

    def _post(self, entries: list[dict[str, Any]], *, path: str = _ENTRIES_PATH, kind: str = "entries") -> None:
        what = {"treatments": "the Sensor Start treatment", "announcement": "the announcement"}.get(
            kind, "the readings"
        )
        headers = {**JSON_HEADERS, "api-secret": self._secret}
        body = json.dumps(entries, separators=(",", ":")).encode("utf-8")
        result = self._send("POST", path, body, headers)
        status = result.status
        if status == 200:
            if isinstance(json_or_none(result.data), list):
                return
            raise self._not_nightscout(what)
        if status == 401:
            if kind == "announcement":
                raise NightscoutUnauthorized(_TREATMENTS_UNAUTHORIZED.replace("Sensor Start treatment", "announcement"))
            raise NightscoutUnauthorized(_TREATMENTS_UNAUTHORIZED if kind == "treatments" else None)
        raise self._failure(result, what, path)
