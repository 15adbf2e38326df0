"""Issue 21: only plausible readings are sent; an earlier version's future instants are forgotten.

The rules themselves (plausibility.py) and what the sync service does with them, with the fakes: a
reading dated in the future or older than a day, or with a value no sensor gives, is never uploaded,
never enters the ledger, never moves a cut-off, and is counted as `implausible`.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest
from tools.simulators.clock import VirtualClock

from linkup_sync.model import Credentials, Graph, Target
from linkup_sync.plausibility import (
    FUTURE_S,
    PAST_S,
    SGV_MAX,
    SGV_MIN,
    ImplausibleValue,
    heal,
    screen,
    sgv_value,
)
from linkup_sync.readings import Reading
from linkup_sync.state.model import TargetState, account_key, target_id
from linkup_sync.sync import SyncService
from tests.fakes import FakeLinkUp, FakeNightscout, MemoryStateStore

NOW = 1_800_000_000
YEAR = 365 * 24 * 3600
CREDS = Credentials(
    username="f@example.invalid",
    password="pw-123",
    targets=(Target(patient_id=None, nightscout_url="https://ns", nightscout_token="t"),),
)
TID = target_id("p1", "https://ns")
KEY = account_key(CREDS.username)


def cur(t: int, sgv: int = 120) -> Reading:
    return Reading(t * 1000, sgv, "Flat", "current")


def hist(*ts: int) -> tuple[Reading, ...]:
    return tuple(Reading(t * 1000, 110, "NOT COMPUTABLE", "graph") for t in ts)


# --- the rules ------------------------------------------------------------------------------------------


def test_the_sensor_range_is_40_to_500() -> None:
    assert (SGV_MIN, SGV_MAX, FUTURE_S, PAST_S) == (40, 500, 300, 86400)
    assert [sgv_value(v) for v in (40, 41, 152, 499, 500, 40.0, 500.0)] == [40, 41, 152, 499, 500, 40, 500]


@pytest.mark.parametrize(
    "value", [39, 12, 1, 0, -40, 501, 1000, 10**30, 152.5, math.nan, math.inf, -math.inf, "152", None, True, [120]]
)
def test_anything_else_is_implausible(value: Any) -> None:
    with pytest.raises(ImplausibleValue):
        sgv_value(value)


def test_screen_keeps_the_window_and_counts_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    inside = hist(NOW - PAST_S, NOW - 3600, NOW + FUTURE_S)
    outside = hist(NOW - PAST_S - 1, NOW + FUTURE_S + 1)
    graph = Graph("p1", cur(NOW + YEAR), inside + outside, implausible_items=2)
    with caplog.at_level(logging.WARNING, logger="linkup_sync"):
        screened = screen(graph, NOW)
    assert screened.graph.current is None and screened.graph.history == inside
    assert screened.dropped_in_time == 3 and screened.graph.implausible_items == 5
    [record] = caplog.records
    assert record.reason == "implausible"  # type: ignore[attr-defined]
    assert "3 reading(s)" in record.getMessage() and "2 after" in record.getMessage()


def test_screen_leaves_a_plausible_graph_alone(caplog: pytest.LogCaptureFixture) -> None:
    graph = Graph("p1", cur(NOW - 60), hist(NOW - 3600))
    with caplog.at_level(logging.WARNING, logger="linkup_sync"):
        assert screen(graph, NOW).graph is graph
    assert not caplog.records


def test_heal_forgets_future_instants_and_a_future_read_back_horizon() -> None:
    old = TargetState(TID, uploaded=(NOW - 600, NOW - 60, NOW + 200, NOW + YEAR), checked_until=NOW + YEAR, rev=4)
    healed = heal(old, NOW)
    assert healed.uploaded == (NOW - 600, NOW - 60, NOW + 200) and healed.checked_until is None
    assert healed.rev == 4  # the write that stores it is an ordinary conditional one
    fine = TargetState(TID, uploaded=(NOW - 60,), checked_until=NOW)
    assert heal(fine, NOW) is fine


# --- the sync service ------------------------------------------------------------------------------------


def run(llu: FakeLinkUp, ns: FakeNightscout, store: MemoryStateStore, clock: VirtualClock) -> Any:
    return SyncService(source=llu, sinks=lambda t, s: ns, store=store, clock=clock, region="eu").run(CREDS)


def test_a_reading_a_year_ahead_then_13_real_ones_all_arrive() -> None:
    """The finding: one current reading a year ahead used to stop 12 of the next 13 uploads silently."""
    clock = VirtualClock(NOW)
    history = [NOW - 3600 + 300 * i for i in range(12)]
    llu = FakeLinkUp(connection_ids=["p1"], graphs={"p1": Graph("p1", cur(NOW + YEAR), hist(*history))})
    ns, store = FakeNightscout(), MemoryStateStore()
    first = run(llu, ns, store, clock)
    assert first.implausible == 1 and first.as_dict()["implausible"] == 1
    assert NOW + YEAR not in {ms // 1000 for ms in ns.entries}
    assert max(store.targets[(KEY, TID)].uploaded) < NOW
    assert first.newest_reading_age_s == NOW - history[-1]  # the newest plausible reading decides
    real = []
    for _ in range(13):
        clock.advance(60)
        t = int(clock()) - 30
        real.append(t)
        llu.graphs["p1"] = Graph("p1", cur(t), hist(*history))
        report = run(llu, ns, store, clock)
        assert report.uploaded == 1 and report.implausible == 0 and report.newest_reading_age_s == 30
    assert set(real) <= {ms // 1000 for ms in ns.entries}
    assert max(ms // 1000 for ms in ns.entries) == real[-1]


def test_absurd_values_counted_by_the_parser_reach_the_report() -> None:
    clock = VirtualClock(NOW)
    llu = FakeLinkUp(connection_ids=["p1"], graphs={"p1": Graph("p1", cur(NOW - 60), (), implausible_items=3)})
    report = run(llu, FakeNightscout(), MemoryStateStore(), clock)
    assert report.implausible == 3 and report.targets[0].as_dict()["implausible"] == 3
    assert report.uploaded == 1


def test_only_implausible_readings_upload_nothing_and_keep_the_state() -> None:
    clock = VirtualClock(NOW)
    llu = FakeLinkUp(connection_ids=["p1"], graphs={"p1": Graph("p1", cur(NOW + YEAR), hist(NOW - 2 * PAST_S))})
    ns, store = FakeNightscout(), MemoryStateStore()
    report = run(llu, ns, store, clock)
    assert report.uploaded == 0 and report.implausible == 2 and ns.requests_made == 0
    assert report.newest_reading_age_s is None and store.targets == {}


def test_a_state_with_a_future_cut_off_heals_on_the_next_run() -> None:
    """A target item as an earlier version wrote it: the ledger pruned to 13 h before a year-ahead instant
    (only that instant left) and a read-back horizon a year ahead too."""
    clock = VirtualClock(NOW)
    store = MemoryStateStore()
    store.targets[(KEY, TID)] = TargetState(TID, uploaded=(NOW + YEAR,), checked_until=NOW + YEAR, rev=7)
    history = [NOW - 3600 + 300 * i for i in range(12)]
    llu = FakeLinkUp(connection_ids=["p1"], graphs={"p1": Graph("p1", cur(NOW - 30), hist(*history))})
    ns = FakeNightscout(foreign={(NOW + YEAR) * 1000})  # the future entry the old version uploaded
    report = run(llu, ns, store, clock)
    assert report.uploaded == 13 and report.gap_filled == 12  # the gap filled after one read-back
    assert len(ns.reads) == 1
    stored = store.targets[(KEY, TID)]
    assert max(stored.uploaded) == NOW - 30 and stored.checked_until == NOW and stored.rev == 8
    clock.advance(60)
    llu.graphs["p1"] = Graph("p1", cur(NOW + 30), hist(*history))
    assert run(llu, ns, store, clock).uploaded == 1


def test_healing_alone_is_stored(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing new to upload, a JWT unchanged: the healed ledger is still written (else every run heals
    again in memory only, and a v3 JWT renewal would write the future instant back)."""
    clock = VirtualClock(NOW)
    store = MemoryStateStore()
    store.targets[(KEY, TID)] = TargetState(TID, uploaded=(NOW - 60, NOW + YEAR), rev=2)
    llu = FakeLinkUp(connection_ids=["p1"], graphs={"p1": Graph("p1", cur(NOW - 60), ())})
    ns = FakeNightscout()
    with caplog.at_level(logging.WARNING, logger="linkup_sync"):
        report = run(llu, ns, store, clock)
    assert report.uploaded == 0 and ns.requests_made == 0
    assert store.targets[(KEY, TID)].uploaded == (NOW - 60,)
    assert [r.reason for r in caplog.records] == ["state_healed"]  # type: ignore[attr-defined]


def test_future_entries_read_back_from_nightscout_never_enter_the_ledger() -> None:
    clock = VirtualClock(NOW)
    llu = FakeLinkUp(connection_ids=["p1"], graphs={"p1": Graph("p1", cur(NOW + 200), hist(NOW - 3600))})
    ns = FakeNightscout(foreign={(NOW + 200 + 100) * 1000, (NOW + FUTURE_S + 60) * 1000})
    store = MemoryStateStore()
    run(llu, ns, store, clock)
    # newest reading + 150 s would reach NOW + 350; the plausible window ends at NOW + 300
    assert max(store.targets[(KEY, TID)].uploaded) <= NOW + FUTURE_S


def test_a_run_report_with_two_people_sums_implausible() -> None:
    from linkup_sync.report import RunReport, TargetReport

    report = RunReport(targets=[TargetReport(patient="a", implausible=2), TargetReport(patient="b", implausible=1)])
    summary = report.as_dict()
    assert summary["implausible"] == 3 and [t["implausible"] for t in summary["targets"]] == [2, 1]


def test_a_graph_without_readings_is_left_alone() -> None:
    empty = Graph("p1", None, ())
    assert screen(empty, NOW).graph is empty and heal(TargetState(TID), NOW) == TargetState(TID)
