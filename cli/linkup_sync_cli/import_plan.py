"""From an export's historic rows to the readings worth importing: local time to UTC in the person's zone
(across both DST changes), the bridge's plausibility rules, and no reading within GAP_S of another one,
whether it is already in Nightscout (from any uploader) or earlier in the file. Pure: the rows, the zone,
the clock's "now" and the instants Nightscout holds come in; nothing is read or sent here.

The readings are kept in compact arrays (epoch seconds, mg/dL, UTC offset), not as objects, so a 90-day
Libre 3 export (about 26,000 rows) costs a few hundred kilobytes.
"""

from __future__ import annotations

import bisect
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from linkup_sync.plausibility import SGV_MAX, SGV_MIN
from linkup_sync.readings import Reading
from linkup_sync.selection import GAP_S
from linkup_sync.trends import Point, direction_before

from .libreview_export import HISTORIC, MMOL_L, RECORD_TYPES, LocalStamp, Row, glucose_mg_dl, parse_stamp

# The bridge's value range for a reading (mg/dL): the same constants screen LibreLink Up's readings.
MIN_MG_DL = SGV_MIN
MAX_MG_DL = SGV_MAX
# mmol/L has one decimal: LibreView's ceiling of 500 mg/dL is written 27.8, which is 501 mg/dL again.
_MMOL_CEILING_MG_DL = 501
_EXAMPLES = 5  # how many of each kind of problem the summary names
_T = TypeVar("_T")


@dataclass
class Plan:
    """What the export holds and what of it is worth importing."""

    zone: str
    epochs: array[int] = field(default_factory=lambda: array("q"))  # epoch seconds, in the file's order
    values: array[int] = field(default_factory=lambda: array("H"))  # mg/dL
    offsets: array[int] = field(default_factory=lambda: array("h"))  # the zone's UTC offset, minutes
    historic_rows: int = 0
    other_types: Counter[str] = field(default_factory=Counter)  # record type -> rows not imported
    unreadable: int = 0
    unreadable_lines: list[int] = field(default_factory=list)
    out_of_range: int = 0
    in_future: int = 0
    outside_dates: int = 0  # before --since or after --until
    nonexistent: int = 0  # in the hour the clocks skip in spring
    nonexistent_examples: list[str] = field(default_factory=list)
    unplaceable: int = 0  # in the repeated autumn hour with no earlier row of that sensor to tell which
    unplaceable_examples: list[str] = field(default_factory=list)

    @property
    def implausible(self) -> int:
        return self.out_of_range + self.in_future

    def add(self, epoch_s: int, mg_dl: int, offset_min: int) -> None:
        self.epochs.append(epoch_s)
        self.values.append(mg_dl)
        self.offsets.append(offset_min)

    def count_unreadable(self, line: int) -> None:
        self.unreadable += 1
        _keep_example(self.unreadable_lines, line)

    def count_not_historic(self, row: Row) -> None:
        """A row of another record type (scans, food, insulin...), or one whose type cannot be read."""
        if row.record_type == "?":
            self.count_unreadable(row.line)
        else:
            self.other_types[row.record_type or "(empty)"] += 1

    def not_imported_text(self) -> str:
        parts = []
        for kind, count in sorted(self.other_types.items(), key=lambda kv: (kv[0] not in RECORD_TYPES, kv[0])):
            name = RECORD_TYPES.get(kind, f"record type {kind}")
            parts.append(f"{count} {name} row{'s' if count != 1 else ''}")
        return ", ".join(parts)


def _keep_example(examples: list[_T], example: _T) -> None:
    if len(examples) < _EXAMPLES:
        examples.append(example)


def _local_text(stamp: LocalStamp) -> str:
    return f"{stamp.year:04d}-{stamp.month:02d}-{stamp.day:02d} {stamp.hour:02d}:{stamp.minute:02d}"


class _SensorClock:
    """Local times of one serial number's historic rows to UTC. The rows of a group are in time order, so
    the repeated autumn hour is placed by what came before: a time in it is the first candidate after the
    previous reading of the same sensor."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self.previous: int | None = None

    def to_utc(self, stamp: LocalStamp) -> tuple[int, int] | str:
        """(epoch seconds, UTC offset in minutes), or "nonexistent" / "unplaceable"."""
        naive = datetime(stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute)
        early = naive.replace(tzinfo=self.zone, fold=0)
        late = naive.replace(tzinfo=self.zone, fold=1)
        if early.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None) != naive:
            return "nonexistent"  # the clocks jumped over this time
        first, second = int(early.timestamp()), int(late.timestamp())
        if first == second:
            chosen, aware = first, early
        elif self.previous is None:
            return "unplaceable"
        else:
            chosen, aware = (first, early) if first > self.previous else (second, late)
        self.previous = chosen
        offset = aware.utcoffset() or timedelta(0)
        return chosen, int(offset.total_seconds() // 60)


def _place(plan: Plan, row: Row, stamp: LocalStamp, clock: _SensorClock) -> tuple[int, int] | None:
    """(epoch seconds, UTC offset in minutes), or None for a local time that cannot be placed (counted)."""
    placed = clock.to_utc(stamp)
    if placed == "nonexistent":
        plan.nonexistent += 1
        _keep_example(plan.nonexistent_examples, f"{_local_text(stamp)} (line {row.line})")
        return None
    if placed == "unplaceable":
        plan.unplaceable += 1
        _keep_example(plan.unplaceable_examples, f"{_local_text(stamp)} (line {row.line})")
        return None
    assert isinstance(placed, tuple)
    return placed


def _within_dates(stamp: LocalStamp, since: date | None, until: date | None) -> bool:
    local_day = date(stamp.year, stamp.month, stamp.day)
    return not ((since is not None and local_day < since) or (until is not None and local_day > until))


def _whole_mg_dl(value: float, unit: str) -> int:
    mg_dl = round(value)
    if unit == MMOL_L and MAX_MG_DL < mg_dl <= _MMOL_CEILING_MG_DL:
        mg_dl = MAX_MG_DL
    return mg_dl


def build_plan(
    rows: Iterable[Row],
    *,
    unit: str,
    date_format: str,
    zone: ZoneInfo,
    zone_name: str,
    now_s: float,
    since: date | None = None,
    until: date | None = None,
) -> Plan:
    """Every historic row checked and converted; the others counted by record type."""
    plan = Plan(zone=zone_name)
    clocks: dict[str, _SensorClock] = {}
    for row in rows:
        if row.record_type != HISTORIC:
            plan.count_not_historic(row)
            continue
        plan.historic_rows += 1
        stamp = parse_stamp(row.stamp, date_format)
        value = glucose_mg_dl(row.glucose, unit)
        if stamp is None or value is None:
            plan.count_unreadable(row.line)
            continue
        placed = _place(plan, row, stamp, clocks.setdefault(row.serial, _SensorClock(zone)))
        if placed is None:
            continue
        epoch_s, offset_min = placed
        if not _within_dates(stamp, since, until):
            plan.outside_dates += 1
            continue
        mg_dl = _whole_mg_dl(value, unit)
        if not MIN_MG_DL <= mg_dl <= MAX_MG_DL:
            plan.out_of_range += 1
            continue
        if epoch_s > now_s:
            plan.in_future += 1
            continue
        plan.add(epoch_s, mg_dl, offset_min)
    return plan


# --- choosing ----------------------------------------------------------------------------------------


@dataclass
class Choice:
    """The readings to import (indexes into the plan's arrays, oldest first) and why the others are not."""

    chosen: array[int]
    already_there: int  # within GAP_S of an entry Nightscout holds
    repeated_in_file: int  # within GAP_S of an earlier reading of the file (another device, the same time)


def _near(sorted_instants: Sequence[int], t: int) -> bool:
    i = bisect.bisect_left(sorted_instants, t - GAP_S)
    return i < len(sorted_instants) and sorted_instants[i] <= t + GAP_S


def choose(plan: Plan, existing: Sequence[int]) -> Choice:
    """Oldest first, each reading unless Nightscout holds an entry within GAP_S of it (`existing`: sorted
    epoch seconds from any uploader) or an earlier chosen reading of the file is that close."""
    order = sorted(range(len(plan.epochs)), key=plan.epochs.__getitem__)
    chosen: array[int] = array("q")
    already = repeated = 0
    last: int | None = None
    for i in order:
        t = plan.epochs[i]
        if _near(existing, t):
            already += 1
        elif last is not None and t - last <= GAP_S:
            repeated += 1
        else:
            chosen.append(i)
            last = t
    return Choice(chosen=chosen, already_there=already, repeated_in_file=repeated)


def span_ms(plan: Plan) -> tuple[int, int] | None:
    """The window to read Nightscout over: the file's first and last reading, widened by GAP_S."""
    if not plan.epochs:
        return None
    return (min(plan.epochs) - GAP_S) * 1000, (max(plan.epochs) + GAP_S) * 1000


# --- readings ----------------------------------------------------------------------------------------


def set_directions(batch: list[Reading], series: Sequence[Point]) -> list[Reading]:
    """THE place where imported readings get their direction. An export has no trend arrows: each one is
    derived from the file's readings before it (`series`: every plausible historic reading of the file,
    sorted), by the same rule and bands the sync uses for LibreLink Up's history points (trends.py), so a
    reading gets the same arrow whether the import or the bridge uploads it from the same neighbours."""
    return [replace(r, direction=direction_before(r.epoch_s, r.sgv, series)) for r in batch]


def reading_batches(plan: Plan, indexes: Sequence[int], size: int) -> Iterator[list[Reading]]:
    """The chosen readings, oldest first, `size` at a time, as the uploaders take them (the same instant
    always gives the same identity). Made a batch at a time; the series the directions come from holds two
    numbers per reading of the file, whatever was chosen."""
    series: list[Point] = sorted(zip(plan.epochs, plan.values, strict=True))
    for start in range(0, len(indexes), size):
        batch = [
            Reading(
                epoch_ms=plan.epochs[i] * 1000,
                sgv=plan.values[i],
                direction="",  # set_directions decides
                source="graph",
                utc_offset_min=plan.offsets[i],
            )
            for i in indexes[start : start + size]
        ]
        yield set_directions(batch, series)


def local_days(plan: Plan, indexes: Iterable[int]) -> Counter[date]:
    """Readings per local calendar day (the day the person saw them on)."""
    days: Counter[date] = Counter()
    for i in indexes:
        days[datetime.fromtimestamp(plan.epochs[i] + plan.offsets[i] * 60, tz=UTC).date()] += 1
    return days
