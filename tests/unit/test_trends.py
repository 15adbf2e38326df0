"""Issue 24: the derived directions (trends.py): the band table with its edges, which reading the rate is
measured against, the double arrows on current readings, TREND_ARROWS=libre, and what is remembered."""

from __future__ import annotations

from fractions import Fraction

import pytest

from linkup_sync.model import Graph
from linkup_sync.readings import NOT_COMPUTABLE, Reading
from linkup_sync.trends import (
    MAX_RECENT,
    MAX_SPAN_S,
    MIN_SPAN_S,
    band,
    derive_directions,
    direction_for_change,
    pack_recent,
    remember,
    unpack_recent,
    with_directions,
    with_double_arrow,
)

T0 = 1_800_000_000

# The band table with its edges: each edge belongs to the calmer band (Nightscout's bands, issue 24).
BAND_TABLE = [
    (Fraction(100), "DoubleUp"),
    (Fraction(3) + Fraction(1, 1000), "DoubleUp"),
    (Fraction(3), "SingleUp"),
    (Fraction(2) + Fraction(1, 1000), "SingleUp"),
    (Fraction(2), "FortyFiveUp"),
    (Fraction(1) + Fraction(1, 1000), "FortyFiveUp"),
    (Fraction(1), "Flat"),
    (Fraction(0), "Flat"),
    (Fraction(-1), "Flat"),
    (Fraction(-1) - Fraction(1, 1000), "FortyFiveDown"),
    (Fraction(-2), "FortyFiveDown"),
    (Fraction(-2) - Fraction(1, 1000), "SingleDown"),
    (Fraction(-3), "SingleDown"),
    (Fraction(-3) - Fraction(1, 1000), "DoubleDown"),
    (Fraction(-100), "DoubleDown"),
]


@pytest.mark.parametrize(("rate", "direction"), BAND_TABLE)
def test_band_table_with_its_edges(rate: Fraction, direction: str) -> None:
    assert band(rate) == direction


@pytest.mark.parametrize(
    ("change", "span_s", "direction"),
    [
        (15, 300, "SingleUp"),  # exactly 3 mg/dL/min over 5 minutes: the edge, the calmer band
        (16, 300, "DoubleUp"),
        (15, 299, "DoubleUp"),  # 3.01 mg/dL/min: a second less is a faster rise
        (45, 900, "SingleUp"),
        (46, 900, "DoubleUp"),
        (10, 300, "FortyFiveUp"),  # exactly 2
        (5, 300, "Flat"),  # exactly 1
        (-5, 300, "Flat"),
        (-6, 300, "FortyFiveDown"),
        (-10, 300, "FortyFiveDown"),
        (-11, 300, "SingleDown"),
        (-15, 300, "SingleDown"),
        (-16, 300, "DoubleDown"),
    ],
)
def test_a_change_over_a_span_is_banded_exactly(change: int, span_s: int, direction: str) -> None:
    assert direction_for_change(change, span_s) == direction


def test_a_span_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        direction_for_change(5, 0)


def test_the_reading_about_five_minutes_before_is_the_reference() -> None:
    # One-minute readings: flat until 5 minutes before, then a fast rise over the last 5 minutes.
    series = [(T0 + 60 * i, 100) for i in range(11)] + [(T0 + 60 * i, 100 + 4 * (i - 10)) for i in range(11, 16)]
    directions = derive_directions(series)
    assert directions[-1] == "DoubleUp"  # 20 mg/dL over the last 5 minutes: 4 mg/dL/min
    assert directions[0] == NOT_COMPUTABLE  # nothing before the first reading
    assert directions[5] == "Flat"


def test_five_minute_points_use_the_one_before_and_the_seconds_may_wander() -> None:
    series = [(T0, 100), (T0 + 299, 112), (T0 + 601, 124)]
    assert derive_directions(series) == [NOT_COMPUTABLE, "SingleUp", "SingleUp"]


def test_up_to_fifteen_minutes_back_and_no_further() -> None:
    assert derive_directions([(T0, 100), (T0 + 900, 160)]) == [NOT_COMPUTABLE, "DoubleUp"]
    assert derive_directions([(T0, 100), (T0 + MAX_SPAN_S, 160)])[1] == "DoubleUp"
    assert derive_directions([(T0, 100), (T0 + MAX_SPAN_S + 1, 160)])[1] == NOT_COMPUTABLE


def test_only_short_spans_take_the_calmest_rate_the_whole_numbers_allow() -> None:
    """Within 4.5 minutes a difference of 1 mg/dL is rounding, not a trend."""
    assert derive_directions([(T0, 100), (T0 + 60, 101)])[1] == "Flat"  # 1 mg/dL/min measured, 0 proven
    assert derive_directions([(T0, 100), (T0 + 60, 103)])[1] == "FortyFiveUp"  # 3 measured, 2 proven
    assert derive_directions([(T0, 100), (T0 + 60, 97)])[1] == "FortyFiveDown"
    assert derive_directions([(T0, 100), (T0 + 120, 109)])[1] == "DoubleUp"  # 8 mg/dL proven in 2 minutes
    # the oldest of several short spans: 9 mg/dL over 3 minutes (8 proven), not 1 over 1 minute (0 proven)
    assert derive_directions([(T0, 100), (T0 + 120, 108), (T0 + 180, 109)])[2] == "SingleUp"
    # a span of at least MIN_SPAN_S is taken as measured
    assert derive_directions([(T0, 100), (T0 + MIN_SPAN_S, 105)])[1] == "FortyFiveUp"


def test_the_same_instant_twice_is_no_rate_and_the_series_must_be_sorted() -> None:
    assert derive_directions([(T0, 100), (T0, 140)]) == [NOT_COMPUTABLE, NOT_COMPUTABLE]
    with pytest.raises(ValueError, match="sorted"):
        derive_directions([(T0 + 300, 100), (T0, 100)])


def test_derive_directions_is_a_pure_function_of_the_series() -> None:
    series = [(T0 + 300 * i + (i % 3) - 1, 100 + 7 * i) for i in range(50)]
    assert derive_directions(series) == derive_directions(list(series))
    assert set(derive_directions(series)[1:]) == {"FortyFiveUp"}


@pytest.mark.parametrize(
    ("abbott", "derived", "sent"),
    [
        ("SingleUp", "DoubleUp", "DoubleUp"),
        ("SingleDown", "DoubleDown", "DoubleDown"),
        ("SingleUp", "SingleUp", "SingleUp"),
        ("SingleUp", NOT_COMPUTABLE, "SingleUp"),
        ("SingleUp", "DoubleDown", "SingleUp"),  # contradicts Abbott: Abbott's arrow stays
        ("SingleDown", "DoubleUp", "SingleDown"),
        ("FortyFiveUp", "DoubleUp", "FortyFiveUp"),  # only single arrows become double
        ("Flat", "FortyFiveUp", "Flat"),
        (NOT_COMPUTABLE, "FortyFiveDown", "FortyFiveDown"),  # Abbott gave none: the derived one
        (NOT_COMPUTABLE, NOT_COMPUTABLE, NOT_COMPUTABLE),
    ],
)
def test_current_readings_keep_abbotts_arrow_but_single_may_become_double(abbott: str, derived: str, sent: str) -> None:
    assert with_double_arrow(abbott, derived) == sent


def _graph(current: tuple[int, int, str] | None, history: list[tuple[int, int]]) -> Graph:
    return Graph(
        patient_id="p1",
        current=None if current is None else Reading(current[0] * 1000, current[1], current[2], "current"),
        history=tuple(Reading(t * 1000, sgv, NOT_COMPUTABLE, "graph") for t, sgv in history),
    )


def test_a_graph_gets_a_direction_on_every_history_point_and_a_double_arrow_when_fast() -> None:
    history = [(T0 + 300 * i, 100 + 12 * i) for i in range(10)]  # 2.4 mg/dL/min
    now = T0 + 300 * 9 + 17 * 60
    recent = [(now - 300, 230)]  # the previous run's current reading: 20 mg/dL in 5 minutes before now
    graph = with_directions(_graph((now, 250, "SingleUp"), history), recent)
    assert [r.direction for r in graph.history] == [NOT_COMPUTABLE] + ["SingleUp"] * 9
    assert graph.current is not None and graph.current.direction == "DoubleUp"
    assert [(r.epoch_ms, r.sgv, r.source) for r in graph.history] == [(t * 1000, s, "graph") for t, s in history]


def test_libre_keeps_the_current_reading_exactly_and_still_derives_the_history() -> None:
    history = [(T0 + 300 * i, 100 + 12 * i) for i in range(4)]
    now = T0 + 300 * 3 + 17 * 60
    for abbott in ("SingleUp", NOT_COMPUTABLE):
        graph = with_directions(_graph((now, 250, abbott), history), [(now - 300, 230)], "libre")
        assert graph.current is not None and graph.current.direction == abbott
        assert [r.direction for r in graph.history] == [NOT_COMPUTABLE, "SingleUp", "SingleUp", "SingleUp"]


def test_a_current_reading_without_an_arrow_gets_the_derived_one() -> None:
    now = T0 + 3600
    graph = with_directions(_graph((now, 100, NOT_COMPUTABLE), []), [(now - 300, 110)])
    assert graph.current is not None and graph.current.direction == "FortyFiveDown"


def test_a_history_point_gets_the_same_direction_whatever_the_bridge_remembers() -> None:
    """The same readings always get the same direction, whichever run uploads them."""
    history = [(T0 + 300 * i, 100 + (7 * i * i) % 40) for i in range(30)]
    now = T0 + 300 * 29 + 17 * 60
    plain = with_directions(_graph((now, 120, "Flat"), history), [])
    for recent in ([(T0 + 300 * 5 + 60, 300)], [(T0 + 300 * i + 120, 40) for i in range(30)]):
        other = with_directions(_graph((now, 120, "Flat"), history), recent)
        assert [r.direction for r in other.history[1:]] == [r.direction for r in plain.history[1:]]


def test_remembered_readings_fill_in_only_where_the_reply_has_no_point_before() -> None:
    history = [(T0, 100), (T0 + 1800, 130)]  # a hole of half an hour in the history
    graph = with_directions(_graph(None, history), [(T0 + 1500, 121)])
    assert [r.direction for r in graph.history] == [NOT_COMPUTABLE, "FortyFiveUp"]  # 9 mg/dL in 5 minutes
    assert with_directions(_graph(None, history), []).history[1].direction == NOT_COMPUTABLE


def test_an_arrow_that_came_with_a_history_point_is_kept() -> None:
    graph = Graph(patient_id="p1", current=None, history=(Reading(T0 * 1000, 100, "Flat", "graph"),))
    assert with_directions(graph, [(T0 - 300, 10)]).history[0].direction == "Flat"


def test_recent_readings_are_kept_for_fifteen_minutes_and_bounded() -> None:
    kept = remember([(T0 + 60 * i, 100 + i) for i in range(30)], [(T0 + 60 * 30, 200)])
    assert kept[-1] == (T0 + 1800, 200)
    assert kept[0][0] >= T0 + 1800 - MAX_SPAN_S
    assert kept == tuple(sorted(kept))
    flood = remember([], [(T0 + i, 100) for i in range(500)])  # whatever comes in, the item stays small
    assert len(flood) == MAX_RECENT and flood[-1] == (T0 + 499, 100)
    assert remember([(T0, 100)], [(T0, 101)]) == ((T0, 101),)
    assert remember([], []) == ()


def test_recent_readings_pack_small_and_unpack_the_same() -> None:
    recent = tuple((T0 + 60 * i + (i % 3) - 1, 40 + 31 * i) for i in range(16))
    packed = pack_recent(recent)
    assert unpack_recent(packed) == recent
    assert len(packed) <= 3 * len(recent) + 8  # ~3 bytes a reading: the target item stays in one write unit
    assert unpack_recent(b"") == () and unpack_recent(pack_recent([])) == ()


@pytest.mark.parametrize("damaged", [b"\x02\x01\x02", b"\x01\x85", b"\x01\x05", b"\x01" + b"\xff" * 12])
def test_damaged_recent_readings_are_refused(damaged: bytes) -> None:
    with pytest.raises(ValueError):
        unpack_recent(damaged)
