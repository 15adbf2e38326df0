"""Moving over from another bridge (issue #10): the first run fills only the holes in what Nightscout holds.

The real handler against the simulators: the Nightscout stand-in is pre-filled with another bridge's
5-minute entries (device "nightscout-librelink-up") for 10 of the last 12 hours; the 2-hour hole must be
filled from LibreLink Up's history, no new entry may land within 150 s of an old one, the gap-filling run
reads back exactly once, and later runs do not read back at all.
"""

from __future__ import annotations

import bisect
from typing import Any

import pytest
from tools.simulators.nightscout import NightscoutStandIn

from tests.integration.checks import offered
from tests.integration.harness import EMAIL, Harness

GAP_S = 150
OTHER = "nightscout-librelink-up"
HOLE = (8 * 3600, 6 * 3600)  # seconds before now: the other bridge was down from -8 h to -6 h


def prefill_other_bridge(ns: NightscoutStandIn, now: int) -> list[int]:
    """Its readings every 5 minutes from -12 h to -5 min, except the hole; on seconds of its own."""
    dates = []
    for t in range(now - 12 * 3600 + 97, now - 300, 300):
        if now - HOLE[0] <= t < now - HOLE[1]:
            continue
        ns.add_entry(
            {"type": "sgv", "sgv": 120, "date": t * 1000, "dateString": "", "device": OTHER, "direction": "Flat"}
        )
        dates.append(t)
    return dates


def ours(ns: NightscoutStandIn) -> list[int]:
    return sorted(int(e["date"]) // 1000 for e in ns.sgv_entries() if e.get("device") == "linkup-sync")


def near(sorted_instants: list[int], t: int) -> bool:
    i = bisect.bisect_left(sorted_instants, t - GAP_S)
    return i < len(sorted_instants) and sorted_instants[i] <= t + GAP_S


def entry_reads(ns: NightscoutStandIn) -> list[Any]:
    return [r for r in ns.requests if r.method == "GET" and r.path in ("/api/v1/entries/sgv.json", "/api/v3/entries")]


def v3_token(ns: NightscoutStandIn) -> str:
    ns.add_role("cgm-v3", ["api:entries:create", "api:entries:read", "api:entries:update", "api:treatments:*"])
    return ns.add_subject("bridge-v3", ["cgm-v3"])


@pytest.mark.parametrize("api", ["v1", "v3"])
def test_moving_over_fills_the_hole_and_adds_nothing_next_to_the_other_bridge(harness: Harness, api: str) -> None:
    harness.llu.add_patient(EMAIL)
    if api == "v3":
        harness.provision(ns_token=v3_token(harness.ns), NIGHTSCOUT_API_V3="true")
    else:
        harness.provision()
    now = int(harness.clock())
    old = prefill_other_bridge(harness.ns, now)
    assert len(old) > 100
    harness.ns.clear_requests()

    result = harness.run()

    new = ours(harness.ns)
    assert result["uploaded"] == len(new) and result["gap_filled"] == len(new) - 1
    crowded = [t for t in new if near(old, t)]
    assert not crowded, f"new entries within {GAP_S} s of the other bridge's: {crowded[:5]}"
    _current, history = offered(harness.llu)
    in_hole = [h for h in history if now - HOLE[0] + GAP_S < h < now - HOLE[1] - GAP_S]
    assert len(in_hole) >= 20  # the graph covers the hole at 5-minute spacing
    assert all(near(new, h) for h in in_hole), "the 2-hour hole is not filled"
    everything = sorted(old + new)
    assert all(near(everything, h) for h in history), "a history point has no entry near it"
    assert len(entry_reads(harness.ns)) == 1  # exactly one read-back, on this gap-filling run

    # The graph lags 15-20 minutes: within the next half hour it shows the few minutes between the other
    # bridge's last entry and this bridge's first one, and one run fills them (reading back once more).
    later_reads = 0
    for _ in range(6):
        harness.tick(300)
        harness.ns.clear_requests()
        result = harness.run()
        later_reads += len(entry_reads(harness.ns))
        assert result["gap_filled"] <= 2
    assert later_reads <= 1
    for _ in range(6):  # then the steady state: no read-back, one request per run
        harness.tick(300)
        harness.ns.clear_requests()
        result = harness.run()
        assert entry_reads(harness.ns) == []
        assert result["uploaded"] == 1 and result["gap_filled"] == 0
        assert result["nightscout_requests"] == 1
    new = ours(harness.ns)
    assert not [t for t in new if near(old, t)]
    _current, history = offered(harness.llu)
    everything = sorted(old + new)
    assert all(near(everything, h) for h in history), "a history point has no entry near it"
    assert harness.ns.duplicates() == []


def test_failed_read_back_uploads_the_current_reading_and_fills_next_run(harness: Harness) -> None:
    harness.llu.add_patient(EMAIL)
    harness.provision()
    now = int(harness.clock())
    old = prefill_other_bridge(harness.ns, now)
    harness.ns.fail_next(1, status=500, body="Database error", path="/api/v1/entries/sgv.json")

    result = harness.run()

    assert result["uploaded"] == 1 and result["gap_filled"] == 0  # the current reading only
    assert len(ours(harness.ns)) == 1
    harness.tick(300)
    result = harness.run()
    new = ours(harness.ns)
    assert result["gap_filled"] > 20 and not [t for t in new if near(old, t)]
    _current, history = offered(harness.llu)
    in_hole = [h for h in history if now - HOLE[0] + GAP_S < h < now - HOLE[1] - GAP_S]
    assert all(near(new, h) for h in in_hole)


def test_first_run_on_an_empty_site_still_fills_the_whole_window(harness: Harness) -> None:
    harness.llu.add_patient(EMAIL)
    harness.provision()
    result = harness.run()
    assert result["gap_filled"] > 100 and len(entry_reads(harness.ns)) == 1
    assert result["nightscout_requests"] == 3  # the read-back, the POST, the Sensor Start
