"""Hostile read-backs of the Nightscout stand-in: entries whose ``date`` is no time at all.

A real Nightscout stores every sgv entry with ``date`` in epoch milliseconds and its JSON never holds
``NaN`` or ``Infinity`` (JavaScript's JSON.stringify writes them as null). A broken proxy, a fork or a
hostile server can send them anyway; issue 21 found that they crashed a run as "internal". The switch
:meth:`~tools.simulators.nightscout.app.NightscoutStandIn.hostile_read_back` adds one sgv entry per
given date to the next read-back answers (API v1 lists and API v3 search results), written raw: a float
NaN or infinity becomes the bare ``NaN`` / ``Infinity`` token Python's json module emits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass
class _HostileRead:
    count: int
    dates: tuple[Any, ...]


def _entry(date: Any) -> dict[str, Any]:
    return {"type": "sgv", "sgv": 120, "date": date, "direction": "Flat", "device": "hostile-proxy"}


def with_hostile_dates(body: bytes, dates: tuple[Any, ...]) -> bytes | None:
    """The answer ``body`` (a v1 list or a v3 ``{"result": [...]}``) with one entry per date added first,
    as a newest-first answer would list them; None when the body is neither."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    added = [_entry(d) for d in dates]
    if isinstance(parsed, list):
        parsed = added + parsed
    elif isinstance(parsed, dict) and isinstance(parsed.get("result"), list):
        parsed["result"] = added + parsed["result"]
    else:
        return None
    return json.dumps(parsed, separators=(",", ":"), allow_nan=True).encode("utf-8")


def is_read_back(method: str, lpath: str) -> bool:
    """A GET of sgv entries, API v1 or v3: what the bridge asks before it fills gaps."""
    return method == "GET" and lpath.startswith(("/api/v1/entries", "/api/v3/entries"))
