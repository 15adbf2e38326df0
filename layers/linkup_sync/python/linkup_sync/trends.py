"""A direction (trend arrow) for every reading, derived from the readings before it (issue 24).

LibreLink Up sends an arrow only with the current reading, and only five of Nightscout's seven: history
points come without one and a rise of 6 mg/dL per minute shows the same SingleUp as 2 mg/dL per minute.
Here the direction is the rate of change over the preceding 5 to 15 minutes, in Nightscout's bands:

    rate (mg/dL/min)      direction
    above 3               DoubleUp
    above 2, up to 3      SingleUp
    above 1, up to 2      FortyFiveUp
    -1 to 1               Flat
    below -1, down to -2  FortyFiveDown
    below -2, down to -3  SingleDown
    below -3              DoubleDown

Each edge belongs to the calmer band (exactly 3 mg/dL/min is SingleUp): an arrow never claims more than
the readings show. The comparison is exact (whole numbers, no floating point), so a reading on an edge
gets the same arrow on every machine.

The reference reading: the newest one at least MIN_SPAN_S older (about 5 minutes), else, when every
reading of the last MAX_SPAN_S is younger than that, the oldest of them, with the change taken 1 mg/dL
smaller (the whole numbers LibreLink Up sends can be off by that much between two readings, which over
a minute or two is a whole band). No reading in the MAX_SPAN_S before: NOT COMPUTABLE.

Pure: no I/O, no clock. `derive_directions` serves any sorted series (the CSV import); `with_directions`
is the one place the sync applies it to a graph reply.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import replace
from fractions import Fraction

from .model import Graph
from .readings import NOT_COMPUTABLE, Reading

# 5 and 15 minutes, each widened by half a minute: the readings' seconds wander (history points are
# 5 minutes apart give or take a second or two), and a reading 301 s back is still "5 minutes before".
MIN_SPAN_S = 5 * 60 - 30
MAX_SPAN_S = 15 * 60 + 30

TREND_MODES = ("derived", "libre")  # TREND_ARROWS: the default first
DEFAULT_TREND_MODE = "derived"

_UP = ("Flat", "FortyFiveUp", "SingleUp", "DoubleUp")
_DOWN = ("Flat", "FortyFiveDown", "SingleDown", "DoubleDown")
_DOUBLE_OF = {"SingleUp": "DoubleUp", "SingleDown": "DoubleDown"}

Point = tuple[int, int]  # (epoch seconds, mg/dL)


def band(rate: Fraction | float) -> str:
    """Nightscout's direction for a rate in mg/dL per minute; each edge belongs to the calmer band."""
    magnitude = rate if rate >= 0 else -rate
    level = 0 if magnitude <= 1 else 1 if magnitude <= 2 else 2 if magnitude <= 3 else 3
    return (_UP if rate > 0 else _DOWN)[level]


def direction_for_change(change_mg: int, span_s: int) -> str:
    """The band of a change of `change_mg` mg/dL over `span_s` seconds, exactly."""
    if span_s <= 0:
        raise ValueError("the span must be positive")
    return band(Fraction(change_mg * 60, span_s))


def direction_before(t: int, sgv: int, earlier: Sequence[Point]) -> str:
    """The direction of the reading (t, sgv) from `earlier`, readings sorted by time (later ones ignored)."""
    short: Point | None = None
    for j in range(bisect.bisect_left(earlier, t, key=lambda point: point[0]) - 1, -1, -1):
        tj, sj = earlier[j]
        age = t - tj
        if age > MAX_SPAN_S:
            break
        if age >= MIN_SPAN_S:
            return direction_for_change(sgv - sj, age)
        short = (sgv - sj, age)  # keep looking back: the oldest of the short spans is the steadiest
    if short is None:
        return NOT_COMPUTABLE
    change, age = short
    calm = max(0, abs(change) - 1)
    return direction_for_change(calm if change >= 0 else -calm, age)


def derive_directions(series: Sequence[Point]) -> list[str]:
    """The direction of every (epoch seconds, mg/dL) of a series sorted by time, from the ones before it.

    For any importer of readings (the CSV import): the same readings always give the same directions.
    """
    points = [(int(t), int(sgv)) for t, sgv in series]
    if any(b[0] < a[0] for a, b in itertools.pairwise(points)):
        raise ValueError("the series must be sorted by time, oldest first")
    return [direction_before(t, sgv, points) for t, sgv in points]


def with_double_arrow(abbott: str, derived: str) -> str:
    """Abbott's arrow, except SingleUp/SingleDown become double when the measured rate is beyond 3
    mg/dL/min in the same direction; a derived direction stands in where Abbott gave none."""
    if abbott == NOT_COMPUTABLE:
        return derived
    return derived if _DOUBLE_OF.get(abbott) == derived else abbott


def with_directions(graph: Graph, recent: Iterable[Point], mode: str = DEFAULT_TREND_MODE) -> Graph:
    """The graph with a direction on every reading, from the readings the bridge has.

    A history point's direction comes from the history points before it in the same reply (the same
    points on every run that sees it, so it gets the same arrow whichever run uploads it); only where
    none lies in the 15 minutes before do the remembered current readings (`recent`) help. The current
    reading keeps Abbott's arrow (mode "libre": exactly; "derived": a single arrow may become double).
    """
    history = sorted(graph.history, key=lambda r: r.epoch_ms)
    own = [(r.epoch_s, r.sgv) for r in history]
    everything = sorted({*own, *recent})
    dated: list[Reading] = []
    for r in history:
        direction = r.direction
        if direction == NOT_COMPUTABLE:
            direction = direction_before(r.epoch_s, r.sgv, own)
        if direction == NOT_COMPUTABLE:
            direction = direction_before(r.epoch_s, r.sgv, everything)
        dated.append(r if direction == r.direction else replace(r, direction=direction))
    current = graph.current
    if current is not None and mode != "libre":
        derived = direction_before(current.epoch_s, current.sgv, everything)
        direction = with_double_arrow(current.direction, derived)
        if direction != current.direction:
            current = replace(current, direction=direction)
    return replace(graph, history=tuple(dated), current=current)


# --- what is remembered: the recent current readings --------------------------------------------------

MAX_RECENT = 32  # more than 15 minutes of one-minute readings; bounds the stored item whatever comes in
_RECENT_FORMAT = b"\x01"


def remember(recent: Iterable[Point], added: Iterable[Point]) -> tuple[Point, ...]:
    """The recent readings with `added`, only those within MAX_SPAN_S of the newest (at most MAX_RECENT).

    A union, so two runs that both wrote keep each other's readings; at one instant the later value wins.
    """
    merged = dict(recent)
    merged.update(added)
    if not merged:
        return ()
    horizon = max(merged) - MAX_SPAN_S
    kept = sorted((t, sgv) for t, sgv in merged.items() if t >= horizon)
    return tuple(kept[-MAX_RECENT:])


def _varint(value: int, out: bytearray) -> None:
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return


def pack_recent(recent: Iterable[Point]) -> bytes:
    """(instant, mg/dL) pairs as varints, each instant as the step from the one before: ~3 bytes each."""
    out = bytearray(_RECENT_FORMAT)
    previous = 0
    for t, sgv in sorted(dict(recent).items()):
        if t < previous or sgv < 0:
            raise ValueError("recent readings need positive instants and values")
        _varint(t - previous, out)
        _varint(sgv, out)
        previous = t
    return bytes(out)


def unpack_recent(data: bytes) -> tuple[Point, ...]:
    """The pairs of pack_recent; a ValueError for anything else (the caller then forgets them)."""
    if not data:
        return ()
    if not data.startswith(_RECENT_FORMAT):
        raise ValueError("not a packed list of recent readings")
    numbers: list[int] = []
    value = shift = 0
    for byte in data[len(_RECENT_FORMAT) :]:
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            if shift > 63:
                raise ValueError("a number in the recent readings is too long")
            continue
        numbers.append(value)
        value = shift = 0
    if shift or len(numbers) % 2:
        raise ValueError("the recent readings end inside a number")
    pairs: list[Point] = []
    t = 0
    for step, sgv in zip(numbers[::2], numbers[1::2], strict=True):
        t += step
        pairs.append((t, sgv))
    return remember((), pairs)
