"""Which readings are plausible enough to send: people dose insulin on what Nightscout shows.

A reading is dropped (never uploaded, never in the ledger, never moving a cut-off) when
- its value is not a whole number of mg/dL between 40 and 500: the range a FreeStyle Libre sensor can
  report (LibreLink Up reports LO and HI at these two ends, so they stay valid); NaN, Infinity, a
  fraction, text, a boolean or a missing value are the same;
- it is dated more than 5 minutes after the run's clock (no sensor measures the future; a reading dated
  a year ahead once froze the ledger's cut-off there and stopped every later upload), or more than
  24 hours before it (LibreLink Up's history covers 12 hours; anything older is a wrong clock).

Dropped readings are counted (`implausible` in the run summary) and logged as a warning. A stored
state that an earlier version let a future instant into is healed here too (see `heal`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

from .model import Graph
from .readings import Reading
from .state.model import TargetState

log = logging.getLogger("linkup_sync")

SGV_MIN = 40  # LibreLink Up's LO
SGV_MAX = 500  # LibreLink Up's HI
FUTURE_S = 5 * 60  # tolerance for a phone clock a little ahead of ours
PAST_S = 24 * 3600


class ImplausibleValue(ValueError):
    """A glucose value no sensor can produce (or not a number at all)."""


def sgv_value(value: object) -> int:
    """ValueInMgPerDl as an int in 40..500; ImplausibleValue for anything else."""
    if isinstance(value, bool):
        raise ImplausibleValue("ValueInMgPerDl is a boolean")
    if isinstance(value, int):
        sgv = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ImplausibleValue(f"ValueInMgPerDl {value!r} is not a whole number")
        sgv = int(value)
    else:
        got = "missing" if value is None else type(value).__name__
        raise ImplausibleValue(f"ValueInMgPerDl is {got}, not a number")
    if not SGV_MIN <= sgv <= SGV_MAX:
        raise ImplausibleValue(f"ValueInMgPerDl {sgv} is outside the sensor's range {SGV_MIN}..{SGV_MAX} mg/dL")
    return sgv


def latest_plausible_s(now: float) -> int:
    """The newest instant (epoch s) a reading, a ledger entry or a read-back horizon may have."""
    return int(now) + FUTURE_S


def plausible_at(reading: Reading, now: float) -> bool:
    return int(now) - PAST_S <= reading.epoch_s <= latest_plausible_s(now)


@dataclass(frozen=True)
class Screened:
    graph: Graph  # only plausible readings; `implausible_items` counts every reading dropped
    dropped_in_time: int  # of those, dropped here for their date


def screen(graph: Graph, now: float) -> Screened:
    """The graph without readings dated outside [now - 24 h, now + 5 min]; one warning names them."""
    current = graph.current if graph.current is not None and plausible_at(graph.current, now) else None
    history = tuple(r for r in graph.history if plausible_at(r, now))
    dropped = [r for r in ([graph.current] if graph.current else []) + list(graph.history) if not plausible_at(r, now)]
    if not dropped:
        return Screened(graph, 0)
    ahead = [r for r in dropped if r.epoch_s > latest_plausible_s(now)]
    log.warning(
        "LibreLink Up sent %d reading(s) dated outside the plausible window (%d after this run's clock plus "
        "%d minutes, %d older than %d hours); they were not sent to Nightscout. A clock that is far off "
        "causes this: check the date and time of the patient's phone (and of this computer, when the "
        "command line runs the bridge).",
        len(dropped),
        len(ahead),
        FUTURE_S // 60,
        len(dropped) - len(ahead),
        PAST_S // 3600,
        extra={"reason": "implausible"},
    )
    kept = replace(graph, current=current, history=history, implausible_items=graph.implausible_items + len(dropped))
    return Screened(kept, len(dropped))


def heal(stored: TargetState, now: float) -> TargetState:
    """The stored target without ledger instants or a read-back horizon after now + 5 minutes.

    Earlier versions let a future-dated reading into the ledger: its newest instant then set the
    cut-off below which every real reading counted as old, so nothing more was uploaded (and with API
    v3 every JWT renewal wrote the item again, renewing its 30-day expiry). Forgetting those instants
    costs at most one read-back of what Nightscout holds; keeping them stops the bridge.
    """
    limit = latest_plausible_s(now)
    uploaded = tuple(t for t in stored.uploaded if t <= limit)
    checked = stored.checked_until if stored.checked_until is None or stored.checked_until <= limit else None
    if uploaded == stored.uploaded and checked == stored.checked_until:
        return stored
    log.warning(
        "The stored upload state held %d instant(s) dated in the future (written by an earlier version from a "
        "reading with a wrong date); they are forgotten so the current readings flow again",
        len(stored.uploaded) - len(uploaded) + (0 if checked == stored.checked_until else 1),
        extra={"reason": "state_healed"},
    )
    return replace(stored, uploaded=uploaded, checked_until=checked)
