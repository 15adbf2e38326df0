"""When a run reads the incidents, and which ones it leaves open: a steady run makes no request for them.

Reading the incidents is one more request. A run makes it only when something may have to be told or
closed: its container has never read them (a cold start), the run saw a problem, this container left
some open, or the marker read with the state (StoredState.incidents_open) says another container did.
Whoever reads them brings the marker up to date, so a quiet warm container learns of an incident another
one opened from the state it reads anyway, and closes it (with its all-clear) once the problem is gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..ports import IncidentStore
from ..state.model import IncidentKey
from .desk import Observation, new_people
from .model import Incident, IncidentRecord


@dataclass(frozen=True)
class KnownIncidents:
    """What a container learned when it last read an account's incidents."""

    open: frozenset[IncidentKey] = frozenset()  # the incidents it left open, or with a message still unsent
    # The initials stored for the people (scope -> initials): a person added later is remembered at once,
    # so an incident about them names them even after LibreLink Up stops showing them.
    people: Mapping[str, str] = field(default_factory=dict)


def must_read(known: KnownIncidents | None, observation: Observation, marker: frozenset[IncidentKey]) -> bool:
    """`known`: None when this container never read them, or its last reading failed; `marker`: what the
    state's marker says is open."""
    if known is None or known.open or observation.seen or marker:
        return True
    return new_people(known.people, observation.people)


class OpenTally:
    """The incident store as the desk uses it, noting which incidents the desk leaves open, or with a
    message it could not send (its slot given back for a later run)."""

    def __init__(self, inner: IncidentStore) -> None:
        self.inner = inner
        self.open: set[IncidentKey] = set()

    def known(self) -> KnownIncidents:
        """What the desk left, once it is through."""
        return KnownIncidents(open=frozenset(self.open), people=dict(self.inner.people))

    def load_incidents(self) -> dict[tuple[str, str], IncidentRecord]:
        records = self.inner.load_incidents()
        self.open = {key for key, record in records.items() if record.is_open}
        return records

    @property
    def people(self) -> dict[str, str]:
        return self.inner.people

    def remember_people(self, people: dict[str, str]) -> None:
        self.inner.remember_people(people)

    def open_incident(self, incident: Incident, now: int) -> IncidentRecord | None:
        record = self.inner.open_incident(incident, now)
        self.open.add(incident.key)  # None: another run opened it at the same moment; open all the same
        return record

    def claim(self, record: IncidentRecord, slot: str, now: int) -> bool:
        return self.inner.claim(record, slot, now)

    def release(self, record: IncidentRecord, slot: str) -> None:
        self.inner.release(record, slot)
        # A message could not be sent (an all-clear too, of an incident closed just now): noted like an open
        # incident, so the next run, in this container or another, reads the incidents and tries it again.
        self.open.add(record.key)

    def remind(self, record: IncidentRecord, now: int, cutoff: int) -> bool:
        return self.inner.remind(record, now, cutoff)

    def close(self, record: IncidentRecord, now: int) -> bool:
        closed = self.inner.close(record, now)
        self.open.discard(record.key)  # False: another run closed it first; closed all the same
        return closed
