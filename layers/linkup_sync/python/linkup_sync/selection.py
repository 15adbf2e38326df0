"""Which readings are new: the heart of "nothing lost, nothing duplicated, no double density".

Rules (decided once, kept stable because Nightscout de-duplicates on the exact instant):
- A current reading (the per-minute value with a trend) is new unless that exact instant was uploaded.
- A history point (5-minute graph data) is new only if it fills a gap: no uploaded reading within
  GAP_S seconds of it. So a site fed every run gets the current readings and nothing more, and a site
  that missed runs gets the holes filled from the 12-hour graph.
- Readings another uploader already put into Nightscout (read back only on runs that would fill gaps)
  count as covered for history points: none is added within GAP_S seconds of one. The current reading
  is still taken by the ledger alone (Nightscout's upsert on the exact instant keeps it single).
- The ledger of uploaded instants keeps KEEP_S seconds before the newest upload. LibreLink Up's history
  covers 12 hours, so older entries can never matter again; readings older than that are ignored.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

from .model import Graph
from .readings import Reading

GAP_S = 150
KEEP_S = 13 * 3600


def _near(sorted_instants: Sequence[int], t: int, within: int) -> bool:
    i = bisect.bisect_left(sorted_instants, t - within)
    return i < len(sorted_instants) and sorted_instants[i] <= t + within


def select_new(
    graph: Graph, uploaded: Sequence[int], *, covered: Sequence[int] = (), covered_before: int | None = None
) -> list[Reading]:
    """Readings to upload, oldest first. `uploaded` is the sorted ledger of uploaded epoch seconds.

    `covered` (sorted epoch seconds) are entries Nightscout already holds from anyone: no history point
    is taken within GAP_S of one. History points before `covered_before` are treated as covered too
    (the read-back could not see that far).
    """
    taken = list(uploaded)
    floor = taken[-1] - KEEP_S if taken else None
    chosen: dict[int, Reading] = {}

    current = graph.current
    if current is not None and (floor is None or current.epoch_s >= floor):
        i = bisect.bisect_left(taken, current.epoch_s)
        if not (i < len(taken) and taken[i] == current.epoch_s):
            chosen[current.epoch_s] = current
            taken.insert(i, current.epoch_s)

    for point in sorted(graph.history, key=lambda r: r.epoch_ms):
        t = point.epoch_s
        if floor is not None and t < floor:
            continue
        if (covered_before is not None and t < covered_before) or _near(covered, t, GAP_S):
            continue
        if _near(taken, t, GAP_S):
            continue
        chosen[t] = point
        bisect.insort(taken, t)

    return [chosen[t] for t in sorted(chosen)]


def merge_ledger(uploaded: Iterable[int], added: Iterable[int]) -> tuple[int, ...]:
    """Union of two ledgers, pruned to KEEP_S before the newest instant. Never loses a newer entry."""
    merged = sorted(set(uploaded) | set(added))
    if not merged:
        return ()
    horizon = merged[-1] - KEEP_S
    start = bisect.bisect_left(merged, horizon)
    return tuple(merged[start:])
