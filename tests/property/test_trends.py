"""Properties of the derived directions (issue 24) over arbitrary series: a reading's arrow depends only
on the readings before it, rises and falls are mirror images, and the arrows of the remembered readings
round-trip through the stored form."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkup_sync.readings import NOT_COMPUTABLE
from linkup_sync.trends import derive_directions, pack_recent, remember, unpack_recent

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = 1_800_000_000
MIRROR = {
    "DoubleUp": "DoubleDown",
    "SingleUp": "SingleDown",
    "FortyFiveUp": "FortyFiveDown",
    "Flat": "Flat",
    NOT_COMPUTABLE: NOT_COMPUTABLE,
}
MIRROR |= {down: up for up, down in MIRROR.items()}


def series() -> st.SearchStrategy[list[tuple[int, int]]]:
    """Readings 0 to 20 minutes apart (the same instant twice too), values 40 to 500 mg/dL."""
    steps = st.lists(st.tuples(st.integers(0, 1200), st.integers(40, 500)), max_size=40)
    return steps.map(lambda pairs: _cumulative(pairs))


def _cumulative(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, t = [], T0
    for step, sgv in pairs:
        t += step
        out.append((t, sgv))
    return out


@FAST
@given(series(), st.data())
def test_later_readings_never_change_an_earlier_arrow(points: list[tuple[int, int]], data: st.DataObject) -> None:
    """Whichever run uploads a reading, later readings it happens to know cannot change its arrow."""
    cut = data.draw(st.integers(0, len(points)))
    assert derive_directions(points[:cut]) == derive_directions(points)[:cut]


@FAST
@given(series())
def test_a_fall_is_the_mirror_of_a_rise(points: list[tuple[int, int]]) -> None:
    mirrored = [(t, 540 - sgv) for t, sgv in points]
    assert derive_directions(mirrored) == [MIRROR[d] for d in derive_directions(points)]


@FAST
@given(series())
def test_not_computable_exactly_when_nothing_lies_in_the_15_minutes_before(points: list[tuple[int, int]]) -> None:
    for (t, _), direction in zip(points, derive_directions(points), strict=True):
        earlier = [u for u, _ in points if 0 < t - u <= 15 * 60 + 30]
        assert (direction == NOT_COMPUTABLE) == (not earlier)


@FAST
@given(series(), series())
def test_remembered_readings_round_trip_and_merge_in_either_order(
    a: list[tuple[int, int]], b: list[tuple[int, int]]
) -> None:
    kept = remember(a, [])
    assert unpack_recent(pack_recent(kept)) == kept
    if not {t for t, _ in a} & {t for t, _ in b}:  # at a shared instant the later write wins by design
        assert remember(remember((), a), b) == remember(remember((), b), a)
