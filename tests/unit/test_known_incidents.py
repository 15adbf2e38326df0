"""Issue 25: when a run reads the incidents, and which ones the desk leaves open (what the marker holds)."""

from __future__ import annotations

import pytest

from linkup_sync import errors
from linkup_sync.incidents.desk import IncidentDesk, Observation
from linkup_sync.incidents.known import KnownIncidents, OpenTally, must_read
from linkup_sync.incidents.model import Incident, IncidentRecord, incident_for, stale_incident
from tests.fakes import MemoryIncidentStore

BAD = incident_for(errors.LinkUpBadCredentials())
STALE = stale_incident(30, scope="ab12")
NOW = 1_800_000_000


OPEN = frozenset({("stale", "ab12")})


@pytest.mark.parametrize(
    ("known", "observation", "marker", "reads"),
    [
        (None, Observation(), frozenset(), True),  # the container's first run (a cold start), or a failed read
        (KnownIncidents(), Observation(), frozenset(), False),  # the steady state: no request for them
        (KnownIncidents(), Observation(seen=[STALE]), frozenset(), True),  # the run saw a problem
        (KnownIncidents(open=OPEN), Observation(), frozenset(), True),  # this container left one open
        (KnownIncidents(), Observation(), OPEN, True),  # another container did: the state's marker says so
        # several people: the initials stored are the ones this run saw; a new person's are not yet
        (KnownIncidents(people={"ab12": "AB"}), Observation(people={"ab12": "AB"}), frozenset(), False),
        (KnownIncidents(people={"ab12": "AB"}), Observation(people={"ab12": "AB", "cd34": "CD"}), frozenset(), True),
    ],
)
def test_a_run_reads_the_incidents_only_when_one_may_be_open_begin_or_concern_someone_new(
    known: KnownIncidents | None, observation: Observation, marker: frozenset[tuple[str, str]], reads: bool
) -> None:
    assert must_read(known, observation, marker) is reads


def process(store: MemoryIncidentStore, observation: Observation, now: int = NOW) -> set[tuple[str, str]]:
    tally = OpenTally(store)
    IncidentDesk(store=tally, clock=lambda: now, publisher=None).process(observation)
    assert tally.known().open == tally.open
    return tally.open


def test_what_a_container_knows_after_the_desk_includes_the_people_it_stored() -> None:
    store = MemoryIncidentStore()
    tally = OpenTally(store)
    IncidentDesk(store=tally, clock=lambda: NOW, publisher=None).process(Observation(people={"cd34": "CD"}))
    assert tally.known() == KnownIncidents(open=frozenset(), people={"cd34": "CD"})
    assert store.people == {"cd34": "CD"}


def test_the_tally_holds_what_the_desk_leaves_open() -> None:
    assert BAD is not None
    store = MemoryIncidentStore()
    assert process(store, Observation()) == set()
    assert process(store, Observation(seen=[BAD, STALE])) == {BAD.key, STALE.key}
    assert process(store, Observation()) == {BAD.key, STALE.key}  # nothing solved: both stay open
    assert process(store, Observation(solved={STALE.key})) == {BAD.key}
    assert process(store, Observation(solved_scopes={""})) == set()  # LibreLink Up answered: the password works
    assert not any(record.is_open for record in store.records.values())


def test_an_incident_another_run_opened_or_closed_at_the_same_moment_counts_as_theirs_did() -> None:
    """The desk gives way to the run whose write won; the marker must still say what is now true."""
    assert BAD is not None
    store = MemoryIncidentStore()

    class OtherRunFirst(MemoryIncidentStore):
        """Between this run's read and its write, another run opened (or closed) the incident."""

        def open_incident(self, incident: Incident, now: int) -> IncidentRecord | None:
            store.open_incident(incident, now)
            return None

        def close(self, record: IncidentRecord, now: int) -> bool:
            store.close(record, now)
            return False

    racing = OtherRunFirst()
    assert process(racing, Observation(seen=[BAD])) == {BAD.key}
    assert store.load_incidents()[BAD.key].is_open
    racing.records = dict(store.records)
    assert process(racing, Observation(solved={BAD.key}, solved_scopes={""})) == set()
    assert not store.load_incidents()[BAD.key].is_open


def test_an_incident_whose_all_clear_could_not_be_sent_is_read_again_until_it_is() -> None:
    """A closed incident with its all-clear e-mail unsent (SNS unreachable) counts as open for the reading:
    the desk gave the slot back for the next run, which must read the incidents to send it."""
    assert BAD is not None
    store = MemoryIncidentStore()
    sent: list[str] = []
    down = [False]

    class Alerts:
        def publish(self, subject: str, body: str) -> None:
            if down[0]:
                raise ConnectionError("SNS unreachable")
            sent.append(subject)

    def tell(observation: Observation) -> set[tuple[str, str]]:
        tally = OpenTally(store)
        IncidentDesk(store=tally, clock=lambda: NOW, publisher=Alerts()).process(observation)
        return tally.open

    assert tell(Observation(seen=[BAD])) == {BAD.key} and len(sent) == 1
    down[0] = True
    assert tell(Observation(solved_scopes={""})) == {BAD.key}  # closed, its all-clear not sent
    assert not store.records[BAD.key].is_open
    assert must_read(KnownIncidents(open=frozenset({BAD.key})), Observation(), frozenset())
    down[0] = False
    assert tell(Observation()) == set() and len(sent) == 2  # sent by the next reading, then nothing left
