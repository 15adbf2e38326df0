"""One person's readings into one Nightscout site: what a run sends, and what it then remembers.

From the graph LibreLink Up returned to the state stored after Nightscout accepted it:
- only plausible readings go on (plausibility.py: a value no sensor gives or a date outside the run's
  window is dropped and counted), each with the trend direction decided here (trends.py);
- only readings Nightscout does not hold yet are chosen (selection.py); a run that would fill gaps from
  the history first reads back what Nightscout holds in that window, from any device;
- a "Sensor Start" treatment is posted once per sensor;
- the accepted instants are recorded in the state store only after Nightscout accepted them, so a crash
  anywhere means the next run sends the same readings again (harmless: Nightscout upserts on the instant).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from .errors import NightscoutError, NightscoutPartialUpload, NightscoutRejected, NightscoutUnauthorized
from .model import Graph
from .plausibility import heal, latest_plausible_s, screen
from .ports import Clock, HoldsJwt, NightscoutSink, StateStore
from .readings import Reading
from .report import TargetReport
from .selection import GAP_S, select_new
from .state.model import TargetState
from .trends import with_directions

log = logging.getLogger("linkup_sync")

# Nightscout snoozes urgent alarms while its newest treatment is younger than 10 minutes and not an
# announcement (docs/nightscout-api.md §11): a Sensor Start is posted only once its time is at least
# this far in the past.
SENSOR_START_MIN_AGE_S = 600


@dataclass(frozen=True)
class Prepared:
    """A graph made ready to send, with the target's state it is chosen against."""

    graph: Graph  # plausible readings only, each with its direction
    stored: TargetState  # healed, with the current reading remembered for the next arrow
    healing: bool  # an earlier version's future instants were forgotten: worth storing even with nothing new


@dataclass(frozen=True)
class Selection:
    """What to upload, the instants found in Nightscout to remember as covered, and when it was read."""

    new: list[Reading]
    found: list[int] = field(default_factory=list)
    checked: int | None = None  # when the read-back saw what Nightscout holds (None: no read-back)
    deferred: tuple[str, int] | None = None  # the read-back failed: (why, gap readings left for later)


def jwt_of(sink: NightscoutSink) -> tuple[str | None, int | None]:
    """The JWT an API v3 sink holds now (to store it back), or (None, None)."""
    cache = sink.jwt_cache if isinstance(sink, HoldsJwt) else None
    value = cache.get() if cache is not None else None
    return (value[0], value[1]) if value else (None, None)


class Uploader:
    def __init__(self, *, store: StateStore, clock: Clock, trend_arrows: str, sensor_start: bool) -> None:
        self.store = store
        self.clock = clock
        self.trend_arrows = trend_arrows
        self.sensor_start = sensor_start

    def prepare(self, graph: Graph, stored: TargetState, report: TargetReport) -> Prepared:
        """Screen, heal and give directions; count what LibreLink Up sent and how old its newest reading is."""
        report.readings_seen = len(graph.history) + (1 if graph.current else 0)
        report.skipped_items = graph.skipped_items
        # From here on only plausible readings exist: no other one is uploaded, enters the ledger, moves a
        # cut-off, serves as another reading's trend reference or decides whether the data is stale. An
        # earlier version's future instants are forgotten.
        graph = screen(graph, self.clock()).graph
        report.implausible = graph.implausible_items
        healed = heal(stored, self.clock())
        healing, stored = healed is not stored, healed
        # Every entry's direction is decided here, before anything is chosen or sent (trends.py); the
        # current reading is remembered with the next write, for the arrow of the next one.
        graph = with_directions(graph, stored.recent, self.trend_arrows)
        if graph.current is not None:
            stored = stored.with_recent([(graph.current.epoch_s, graph.current.sgv)])
        newest = max(
            [r.epoch_ms for r in graph.history] + ([graph.current.epoch_ms] if graph.current else []), default=None
        )
        if newest is not None:
            report.newest_reading_age_s = round(self.clock() - newest / 1000, 1)
        return Prepared(graph=graph, stored=stored, healing=healing)

    def send(self, key: str, prepared: Prepared, sink: NightscoutSink, report: TargetReport) -> None:
        """Upload what is new, post a new sensor's start, then record what Nightscout accepted."""
        graph = prepared.graph
        chosen = self._select(graph, prepared.stored, sink)
        stored = prepared.stored.checked_at_least(chosen.checked)
        accepted = self._post(key, stored, chosen, sink, report)
        if chosen.deferred is not None:
            # Said only when the upload worked: if Nightscout is down, the upload's error says it all.
            log.warning(
                "Could not read which readings Nightscout already holds (%s). This run uploaded only the "
                "current reading; the %d gap readings from LibreLink Up's history follow on a later run.",
                *chosen.deferred,
                extra={"reason": "gap_fill_deferred"},
            )
        sensor = self._sensor_start(graph, stored, sink, report)
        changed = sensor != stored.sensor or jwt_of(sink) != (stored.jwt, stored.jwt_exp)
        if accepted or chosen.found or changed or chosen.checked or prepared.healing:
            # Only now, after Nightscout accepted them, does the state move forward.
            self._record(key, replace(stored, sensor=sensor), accepted + chosen.found, sink)

    def _post(
        self, key: str, stored: TargetState, chosen: Selection, sink: NightscoutSink, report: TargetReport
    ) -> list[int]:
        """The instants Nightscout accepted; on a partial upload exactly those are recorded, then it is raised."""
        if not chosen.new:
            return []
        try:
            report.uploaded = sink.upload(chosen.new)
        except NightscoutPartialUpload as partial:
            # record exactly what Nightscout acknowledged; the rest is retried next run
            accepted = [ms // 1000 for ms in partial.accepted]
            report.uploaded = len(accepted)
            self._record(key, stored, accepted + chosen.found, sink)
            raise
        report.gap_filled = sum(1 for r in chosen.new if r.source == "graph")
        return [r.epoch_s for r in chosen.new]

    def _select(self, graph: Graph, stored: TargetState, sink: NightscoutSink) -> Selection:
        """What to upload, and the instants found in Nightscout to remember as covered.

        Only a run that would fill gaps from the history (first run, after an outage, a cold state) reads
        back what Nightscout already holds in that window, from any device, in one request; the steady
        state stays at one request or none. The instants found go into the ledger, so the next run does
        not read again for the same window. When the read fails, only the current reading is uploaded:
        the ledger then does not cover the gap, and the next run fills it.
        """
        new = select_new(graph, stored.uploaded)
        history = [r for r in new if r.source == "graph"]
        checked = stored.checked_until
        if not history or (checked is not None and all(r.epoch_s + GAP_S <= checked for r in history)):
            # Nothing to fill, or only gaps an earlier read-back already saw (they were empty then).
            return Selection(new)
        since_ms = (min(r.epoch_s for r in history) - GAP_S) * 1000
        try:
            existing = sink.existing_sgv(since_ms)
        except NightscoutError as exc:
            # told once the current reading is in (see send)
            return Selection([r for r in new if r.source == "current"], deferred=(exc.message, len(history)))
        complete_s = existing.complete_since_ms // 1000
        covered_before = complete_s if complete_s > since_ms // 1000 else None
        chosen = select_new(graph, stored.uploaded, covered=existing.instants, covered_before=covered_before)
        # Only instants inside the graph's window: a future-dated entry (a wrong clock elsewhere) must not
        # move the ledger's horizon, which would hide the current readings from the selection.
        newest = max(r.epoch_s for r in [*graph.history, *([graph.current] if graph.current else [])])
        found = [t for t in existing.instants if t <= min(newest + GAP_S, latest_plausible_s(self.clock()))]
        if covered_before is not None:  # not seen, treated as covered: remember so no run reads for them again
            found += [r.epoch_s for r in history if r.epoch_s < covered_before]
        skipped = len(history) - sum(1 for r in chosen if r.source == "graph")
        if skipped:
            log.info(
                "Nightscout already holds readings near %d of the history points; they are not added again",
                skipped,
            )
        return Selection(chosen, found, int(self.clock()))

    def _sensor_start(
        self, graph: Graph, stored: TargetState, sink: NightscoutSink, report: TargetReport
    ) -> str | None:
        """Post "Sensor Start" once per sensor, so Nightscout's sensor-age pill works."""
        sensor = graph.sensor
        if not self.sensor_start or sensor is None or not 1_000_000_000 < sensor.activated_at < 10_000_000_000:
            return stored.sensor
        marker = f"{sensor.serial}@{sensor.activated_at}"
        if marker == stored.sensor:
            return stored.sensor
        if self.clock() - sensor.activated_at < SENSOR_START_MIN_AGE_S:
            # A treatment younger than 10 minutes would snooze Nightscout's urgent alarms: a later run posts it.
            return stored.sensor
        try:
            sink.post_sensor_start(serial=sensor.serial, activated_at=sensor.activated_at)
        except (NightscoutUnauthorized, NightscoutRejected) as exc:
            # The token may upload readings but not treatments: say so once and do not ask again for
            # this sensor (every refused request slows Nightscout's answers to us: AUTH_FAIL_DELAY).
            log.warning(
                "Nightscout refused the Sensor Start treatment; give the token's role the treatments "
                "permissions named here, or set NIGHTSCOUT_SENSOR_START=false: %s",
                exc.message,
            )
            return marker
        except NightscoutError as exc:  # unreachable for now: the readings matter more; try again next run
            log.warning("Could not post the Sensor Start treatment: %s", exc.message)
            return stored.sensor
        report.sensor_start_posted = True
        return marker

    def _record(self, key: str, stored: TargetState, accepted: list[int], sink: NightscoutSink) -> None:
        jwt, jwt_exp = jwt_of(sink)
        if jwt is None:
            jwt, jwt_exp = stored.jwt, stored.jwt_exp
        self.store.record_upload(key, replace(stored, jwt=jwt, jwt_exp=jwt_exp), accepted)
