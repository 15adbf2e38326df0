"""What a run did: the report that becomes the handler's return value, the summary log line, the
failure metrics and the incident desk's observation, and the short label that names a patient in it.
It imports nothing of the package but the data model, so every module can name it without an import
cycle (errors included)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from .model import Target


def short_hash(value: str) -> str:
    """A stable, non-reversible label for a patient in logs and metrics (never the name or the id)."""
    return hashlib.sha256(value.encode()).hexdigest()[:8]


class Skipped(Exception):
    """The run did not contact LibreLink Up because a stored circuit breaker says so."""

    def __init__(self, reason: str, message: str, *, needs_person: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.needs_person = needs_person


@dataclass
class TargetReport:
    """What one run did for one patient and Nightscout site."""

    patient: str = ""  # short hash, never the id or the name
    readings_seen: int = 0
    uploaded: int = 0
    gap_filled: int = 0
    skipped_items: int = 0
    implausible: int = 0  # readings dropped: a value no sensor gives or a date outside the run's window
    newest_reading_age_s: float | None = None
    sensor_start_posted: bool = False
    error: str | None = None  # the failure's reason, when this target failed
    # For the incident desk only (never in the log line): whom this is about and what went wrong.
    target: Target | None = field(default=None, repr=False, compare=False)
    initials: str = field(default="", repr=False)
    graph_ok: bool = False  # LibreLink Up answered this person's graph request
    failure: Exception | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "patient": self.patient,
            "readings_seen": self.readings_seen,
            "uploaded": self.uploaded,
            "gap_filled": self.gap_filled,
            "skipped_items": self.skipped_items,
            "implausible": self.implausible,
            "newest_reading_age_s": self.newest_reading_age_s,
        }
        if self.sensor_start_posted:
            result["sensor_start_posted"] = True
        if self.error:
            result["error"] = self.error
        return result


@dataclass
class RunReport:
    """What one run did; becomes the handler's return value and the summary log line."""

    targets: list[TargetReport] = field(default_factory=list)
    logins: int = 0
    linkup_requests: int = 0
    nightscout_requests: int = 0
    skipped: str | None = None  # the breaker's reason when the run did not contact LibreLink Up
    skipped_message: str | None = None
    needs_person: bool = False

    @property
    def uploaded(self) -> int:
        return sum(t.uploaded for t in self.targets)

    @property
    def gap_filled(self) -> int:
        return sum(t.gap_filled for t in self.targets)

    @property
    def implausible(self) -> int:
        return sum(t.implausible for t in self.targets)

    @property
    def newest_reading_age_s(self) -> float | None:
        ages = [t.newest_reading_age_s for t in self.targets if t.newest_reading_age_s is not None]
        return max(ages) if ages else None  # the stalest patient decides whether data is fresh

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "patient": ",".join(t.patient for t in self.targets),
            "readings_seen": sum(t.readings_seen for t in self.targets),
            "uploaded": self.uploaded,
            "gap_filled": self.gap_filled,
            "skipped_items": sum(t.skipped_items for t in self.targets),
            "implausible": self.implausible,
            "newest_reading_age_s": self.newest_reading_age_s,
            "logins": self.logins,
            "linkup_requests": self.linkup_requests,
            "nightscout_requests": self.nightscout_requests,
        }
        if len(self.targets) > 1:
            result["targets"] = [t.as_dict() for t in self.targets]
        if self.skipped:
            result["skipped"] = self.skipped
            result["skipped_message"] = self.skipped_message
            result["needs_person"] = self.needs_person
        return result
