"""The domain's view of a glucose reading, independent of LibreLink Up's JSON."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

NOT_COMPUTABLE = "NOT COMPUTABLE"

# LibreLink Up TrendArrow -> Nightscout direction. There is no DoubleUp/DoubleDown in LibreLink Up.
TREND_DIRECTIONS: dict[int, str] = {
    1: "SingleDown",
    2: "FortyFiveDown",
    3: "Flat",
    4: "FortyFiveUp",
    5: "SingleUp",
}

Source = Literal["current", "graph"]


def direction_for(trend_arrow: object) -> str:
    if isinstance(trend_arrow, int) and not isinstance(trend_arrow, bool):
        return TREND_DIRECTIONS.get(trend_arrow, NOT_COMPUTABLE)
    return NOT_COMPUTABLE


@dataclass(frozen=True, slots=True)
class Reading:
    """One sensor glucose value.

    `epoch_ms` comes from LibreLink Up's FactoryTimestamp (UTC) and is the reading's identity: the same
    reading always has the same instant, whichever run or API uploads it.
    """

    epoch_ms: int
    sgv: int  # mg/dL, always
    direction: str
    source: Source
    # Patient phone's offset from UTC in minutes (Timestamp - FactoryTimestamp), when known.
    utc_offset_min: int | None = None

    @property
    def epoch_s(self) -> int:
        return self.epoch_ms // 1000

    @property
    def iso_utc(self) -> str:
        """ISO-8601 UTC with milliseconds and Z, the form Nightscout stores as sysTime."""
        dt = datetime.fromtimestamp(self.epoch_ms / 1000, tz=UTC)
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.epoch_ms % 1000:03d}Z"
