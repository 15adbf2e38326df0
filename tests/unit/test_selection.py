from __future__ import annotations

from itertools import pairwise

from linkup_sync.model import Graph
from linkup_sync.readings import Reading
from linkup_sync.selection import GAP_S, KEEP_S, merge_ledger, select_new

T0 = 1_800_000_000


def cur(t: int, sgv: int = 100) -> Reading:
    return Reading(epoch_ms=t * 1000, sgv=sgv, direction="Flat", source="current")


def hist(t: int, sgv: int = 100) -> Reading:
    return Reading(epoch_ms=t * 1000, sgv=sgv, direction="NOT COMPUTABLE", source="graph")


def graph(current: Reading | None, history: list[Reading]) -> Graph:
    return Graph(patient_id="p", current=current, history=tuple(history))


def test_first_run_takes_current_and_all_history_that_does_not_crowd_it() -> None:
    history = [hist(T0 + 300 * i) for i in range(10)]
    current = cur(T0 + 300 * 9 + 17 * 60)
    new = select_new(graph(current, history), ())
    assert [r.epoch_s for r in new] == [r.epoch_s for r in history] + [current.epoch_s]
    assert new == sorted(new, key=lambda r: r.epoch_ms)


def test_current_reading_uploaded_once() -> None:
    current = cur(T0)
    assert select_new(graph(current, []), (T0,)) == []
    assert select_new(graph(current, []), (T0 - 1,)) == [current]


def test_history_point_near_an_uploaded_reading_is_not_new() -> None:
    uploaded = (T0,)
    assert select_new(graph(None, [hist(T0 + GAP_S)]), uploaded) == []
    assert select_new(graph(None, [hist(T0 - GAP_S)]), uploaded) == []
    assert [r.epoch_s for r in select_new(graph(None, [hist(T0 + GAP_S + 1)]), uploaded)] == [T0 + GAP_S + 1]


def test_history_fills_a_gap_without_double_density() -> None:
    # current readings every 5 minutes, then a 30-minute hole, then current readings again
    uploaded = tuple(T0 + 300 * i for i in range(6)) + tuple(T0 + 300 * i for i in range(12, 15))
    history = [hist(T0 + 60 + 300 * i) for i in range(15)]  # graph points 1 minute after each slot
    new = select_new(graph(None, history), uploaded)
    assert [r.epoch_s for r in new] == [T0 + 60 + 300 * i for i in range(6, 12)][0:6]
    # no two uploaded readings closer than GAP_S after the fill
    everything = sorted(set(uploaded) | {r.epoch_s for r in new})
    assert all(b - a > 60 for a, b in pairwise(everything))


def test_history_points_one_minute_apart_fill_once() -> None:
    history = [hist(T0 + 60 * i) for i in range(5)]
    new = select_new(graph(None, history), ())
    assert [r.epoch_s for r in new] == [T0, T0 + 180]


def test_readings_older_than_the_ledger_horizon_are_ignored() -> None:
    uploaded = (T0 + KEEP_S,)
    assert select_new(graph(cur(T0 - 10), [hist(T0 - 1000)]), uploaded) == []


def test_merge_ledger_is_a_pruned_union() -> None:
    assert merge_ledger((1, 5), (3, 5)) == (1, 3, 5)
    newest = T0 + KEEP_S + 10
    assert merge_ledger((T0, T0 + 20), (newest,)) == (T0 + 20, newest)
    assert merge_ledger((), ()) == ()
