"""What a clean series in Nightscout means, checked against what LibreLink Up offered."""

from __future__ import annotations

import bisect

from tools.simulators.librelinkup import LinkUpSimulator
from tools.simulators.nightscout import NightscoutStandIn

GAP_S = 150


def ns_instants(ns: NightscoutStandIn) -> list[int]:
    return sorted(int(e["date"]) // 1000 for e in ns.sgv_entries())


def offered(llu: LinkUpSimulator) -> tuple[set[int], set[int]]:
    """(current readings, history points) that LibreLink Up served at any poll, in epoch seconds."""
    current: set[int] = set()
    history: set[int] = set()
    for served in llu.served:
        if served.current_epoch_s is not None:
            current.add(served.current_epoch_s)
        history.update(served.history_epoch_s)
    return current, history


def assert_clean_series(llu: LinkUpSimulator, ns: NightscoutStandIn, *, since: int | None = None) -> None:
    """Every current reading exactly once, no duplicates, no holes, graph points only where they fill gaps."""
    assert ns.duplicates() == [], f"duplicates in Nightscout: {ns.duplicates()[:3]}"
    stored = ns_instants(ns)
    assert len(stored) == len(set(stored)), "two entries at the same instant"
    current, history = offered(llu)
    if since is not None:
        current = {t for t in current if t >= since}
        history = {t for t in history if t >= since}
    stored_set = set(stored)
    missing_current = sorted(current - stored_set)
    assert not missing_current, f"current readings missing from Nightscout: {missing_current[:5]}"
    for t in sorted(history):
        i = bisect.bisect_left(stored, t - GAP_S)
        assert i < len(stored) and stored[i] <= t + GAP_S, f"hole: history point {t} has no entry within {GAP_S}s"
    # a gap-filling point never crowds another entry: no double density
    for t in stored:
        if t in current:
            continue
        neighbours = [
            u
            for u in stored[max(0, bisect.bisect_left(stored, t) - 1) : bisect.bisect_left(stored, t) + 2]
            if u != t and abs(u - t) <= GAP_S
        ]
        assert not neighbours, f"history point {t} uploaded next to {neighbours}"
    values = {int(e["date"]) // 1000: e for e in ns.sgv_entries()}
    for t in stored:
        entry = values[t]
        assert isinstance(entry["sgv"], int) and 39 <= entry["sgv"] <= 401
        assert entry["type"] == "sgv" and entry["device"] == "linkup-sync"
