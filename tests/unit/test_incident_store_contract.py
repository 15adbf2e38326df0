"""The incident-store contract (linkup_sync.incidents.IncidentStore), one suite run against every store.

Each test below runs against the in-memory store the unit tests use and against the DynamoDB store (moto,
in process, with the table built from template.yaml), in the personal stack's partition ("incidents") and
in the hosted stack's per-account one ("incidents#<account id>"). What every message relies on: of two
runs, exactly one opens an incident, claims a slot of an opening, reminds once per cutoff and closes it.
Item expiry, which only DynamoDB has, is tested in test_expiry.py.

At the end: the contract catches deliberately broken stores, so each of its rules can fail.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import boto3
import pytest
from moto import mock_aws

from linkup_sync.hosted.registry import incidents_partition
from linkup_sync.incidents.model import (
    ANN_CLEAR,
    ANN_OPEN,
    EMAIL_CLEAR,
    EMAIL_OPEN,
    Incident,
    IncidentRecord,
)
from linkup_sync.ports import IncidentStore
from linkup_sync.state.incidents import DynamoDBIncidentStore
from tests.fakes import MemoryIncidentStore
from tests.support.contracts import assert_the_contract_catches
from tests.support.template import create_state_table

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

NOW = 1_800_000_000
DAY = 24 * 3600
ACCOUNT_ID = "0123456789abcdef"
SITE_SLOT = f"{ANN_OPEN}:5f3a9c01"  # an announcement slot is per Nightscout site

LOCKED = Incident(
    kind="action_required",
    scope="",
    title="LibreLink Up wants new terms accepted",
    what="LibreLink Up refuses the login until the new Terms of Use are accepted.",
    todo="Open the LibreLink Up app and accept the new Terms of Use.",
)
STALE = Incident(
    kind="stale",
    scope="ab12cd",
    title="No new readings for 30 minutes",
    what="LibreLink Up has sent no reading for 30 minutes.",
    todo="Check the phone next to the sensor.",
    person="F.F.",
    email=False,
    announce=True,
)
REJECTED = Incident(
    kind="nightscout_rejected",
    scope="ef34ab",
    title="Nightscout refuses the readings",
    what="Nightscout answered 422.",
    todo="Update Nightscout.",
    person="G.H.",
    email=True,
    announce=False,
)


@pytest.fixture(params=["memory", "dynamodb", "dynamodb-hosted"])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[IncidentStore]:
    if request.param == "memory":
        yield MemoryIncidentStore()
        return
    with moto_table(monkeypatch) as (client, table):
        if request.param == "dynamodb-hosted":
            yield DynamoDBIncidentStore(table, client, clock=lambda: NOW, pk=incidents_partition(ACCOUNT_ID))
        else:
            yield DynamoDBIncidentStore(table, client, clock=lambda: NOW)


@contextlib.contextmanager
def moto_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[DynamoDBClient, str]]:
    """moto's in-process DynamoDB with the stack's table built from the template: (client, table name)."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("dynamodb")
        yield client, create_state_table(client)


def opened(store: IncidentStore, incident: Incident = LOCKED, now: int = NOW) -> IncidentRecord:
    record = store.open_incident(incident, now)
    assert record is not None, "a first opening must return its record"
    return record


def test_nothing_stored_loads_no_incidents(store: IncidentStore) -> None:
    assert store.load_incidents() == {}
    assert store.people == {}


def test_an_incident_opens_once_with_its_texts_and_nothing_claimed(store: IncidentStore) -> None:
    record = opened(store, STALE)
    assert record == IncidentRecord(
        kind="stale",
        scope="ab12cd",
        gen=1,
        opened_at=NOW,
        title=STALE.title,
        what=STALE.what,
        todo=STALE.todo,
        person="F.F.",
        email=False,
        announce=True,
    )
    assert record.is_open and record.slots == {} and record.email_last is None and record.reminders == 0
    # a second run that saw the same trouble a moment later: it is already open, that run sends nothing
    assert store.open_incident(replace(STALE, title="other words"), NOW + 5) is None
    assert store.load_incidents() == {STALE.key: record}


def test_reopening_after_close_is_a_new_generation_with_empty_slots(store: IncidentStore) -> None:
    first = opened(store)
    assert store.claim(first, EMAIL_OPEN, NOW)
    assert store.claim(first, SITE_SLOT, NOW)
    assert store.remind(first, NOW + DAY, NOW)
    assert store.close(first, NOW + DAY + 60)
    again = store.open_incident(replace(LOCKED, what="Still the terms."), NOW + 2 * DAY)
    assert again == IncidentRecord(
        kind=LOCKED.kind,
        scope="",
        gen=2,
        opened_at=NOW + 2 * DAY,
        title=LOCKED.title,
        what="Still the terms.",
        todo=LOCKED.todo,
    )
    assert again.slots == {} and again.closed_at is None and again.email_last is None and again.reminders == 0
    assert store.load_incidents() == {LOCKED.key: again}
    assert store.open_incident(LOCKED, NOW + 2 * DAY + 1) is None  # open again: once only


def test_a_slot_is_claimed_once_per_opening(store: IncidentStore) -> None:
    record = opened(store)
    assert store.claim(record, SITE_SLOT, NOW + 1)
    assert not store.claim(record, SITE_SLOT, NOW + 2)  # another run, same opening: it does not post
    assert store.claim(record, EMAIL_OPEN, NOW + 3)  # another slot is another message
    stored = store.load_incidents()[LOCKED.key]
    assert stored.slots == {SITE_SLOT: NOW + 1, EMAIL_OPEN: NOW + 3}
    assert stored.email_last == NOW + 3  # the first e-mail starts the reminder clock; an announcement does not
    assert store.close(record, NOW + 60)
    # the all-clear messages are claimed after the close, by the run that closed it or a later one
    assert store.claim(record, EMAIL_CLEAR, NOW + 61)
    assert not store.claim(record, EMAIL_CLEAR, NOW + 62)
    assert store.load_incidents()[LOCKED.key].slots == {SITE_SLOT: NOW + 1, EMAIL_OPEN: NOW + 3, EMAIL_CLEAR: NOW + 61}


def test_a_record_of_an_older_opening_changes_nothing(store: IncidentStore) -> None:
    old = opened(store)
    assert store.close(old, NOW + 60)
    current = opened(store, now=NOW + 120)
    assert store.claim(current, EMAIL_OPEN, NOW + 120)
    # a run that loaded the first opening and acts late: every write it tries is refused
    assert not store.claim(old, SITE_SLOT, NOW + 130)
    assert not store.claim(old, ANN_CLEAR, NOW + 130)
    store.release(old, EMAIL_OPEN)
    assert not store.remind(old, NOW + 2 * DAY, NOW + DAY)
    assert not store.close(old, NOW + 140)
    stored = store.load_incidents()[LOCKED.key]
    assert stored.gen == 2 and stored.is_open and stored.slots == {EMAIL_OPEN: NOW + 120}
    assert stored.email_last == NOW + 120 and stored.reminders == 0
    # the slots of the old opening are not those of the new: the new can claim what the old had
    assert store.claim(current, SITE_SLOT, NOW + 150)


def test_a_released_slot_can_be_claimed_again(store: IncidentStore) -> None:
    record = opened(store)
    assert store.claim(record, SITE_SLOT, NOW + 1)
    assert store.claim(record, EMAIL_OPEN, NOW + 1)
    store.release(record, SITE_SLOT)  # Nightscout was unreachable: the next run tries again
    assert store.load_incidents()[LOCKED.key].slots == {EMAIL_OPEN: NOW + 1}  # only that slot
    assert store.claim(record, SITE_SLOT, NOW + 300)
    assert not store.claim(record, SITE_SLOT, NOW + 301)
    store.release(record, ANN_CLEAR)  # a slot nobody claimed: nothing happens
    assert store.load_incidents()[LOCKED.key].slots == {EMAIL_OPEN: NOW + 1, SITE_SLOT: NOW + 300}


def test_a_reminder_is_claimed_once_per_cutoff(store: IncidentStore) -> None:
    record = opened(store)
    assert not store.remind(record, NOW + DAY, NOW)  # no first e-mail yet: nothing to remind of
    assert store.claim(record, EMAIL_OPEN, NOW)
    assert not store.remind(record, NOW + DAY - 1, NOW - 1)  # the first e-mail is younger than the cutoff
    assert store.remind(record, NOW + DAY, NOW)  # exactly a day later
    assert not store.remind(record, NOW + DAY + 1, NOW + 1)  # another run, the same day: once only
    stored = store.load_incidents()[LOCKED.key]
    assert stored.email_last == NOW + DAY and stored.reminders == 1
    assert store.remind(record, NOW + 2 * DAY, NOW + DAY)  # the next day
    assert store.close(record, NOW + 2 * DAY + 60)
    assert not store.remind(record, NOW + 5 * DAY, NOW + 4 * DAY)  # closed: no reminders
    stored = store.load_incidents()[LOCKED.key]
    assert stored.email_last == NOW + 2 * DAY and stored.reminders == 2


def test_an_incident_closes_once(store: IncidentStore) -> None:
    record = opened(store)
    assert store.close(record, NOW + 600)
    assert not store.close(record, NOW + 601)  # another run saw it solved too: it sends nothing
    stored = store.load_incidents()[LOCKED.key]
    assert stored.closed_at == NOW + 600 and not stored.is_open
    assert stored == replace(record, closed_at=NOW + 600)


def test_people_round_trip_and_the_last_writer_wins(store: IncidentStore) -> None:
    store.remember_people({"ab12cd": "F.F.", "ef34ab": "G.H."})
    assert store.people == {"ab12cd": "F.F.", "ef34ab": "G.H."}
    assert store.load_incidents() == {}  # the people are no incident
    assert store.people == {"ab12cd": "F.F.", "ef34ab": "G.H."}
    store.remember_people({"ef34ab": "G.H."})  # replaced, not merged: who is gone is forgotten
    store.load_incidents()
    assert store.people == {"ef34ab": "G.H."}


def test_load_returns_every_record_with_every_field(store: IncidentStore) -> None:
    locked = opened(store, LOCKED, NOW)
    stale = opened(store, STALE, NOW + 10)
    rejected = opened(store, REJECTED, NOW + 20)
    other_scope = opened(store, replace(STALE, scope="99ffee", person="J.K."), NOW + 30)
    assert store.claim(locked, EMAIL_OPEN, NOW + 1)
    assert store.claim(locked, SITE_SLOT, NOW + 2)
    assert store.remind(locked, NOW + DAY + 1, NOW + 1)
    assert store.claim(stale, SITE_SLOT, NOW + 11)
    assert store.close(stale, NOW + 900)
    assert store.claim(stale, f"{ANN_CLEAR}:5f3a9c01", NOW + 901)
    store.remember_people({"ab12cd": "F.F."})
    assert store.load_incidents() == {
        LOCKED.key: IncidentRecord(
            kind=LOCKED.kind,
            scope="",
            gen=1,
            opened_at=NOW,
            title=LOCKED.title,
            what=LOCKED.what,
            todo=LOCKED.todo,
            slots={EMAIL_OPEN: NOW + 1, SITE_SLOT: NOW + 2},
            email_last=NOW + DAY + 1,
            reminders=1,
        ),
        STALE.key: IncidentRecord(
            kind="stale",
            scope="ab12cd",
            gen=1,
            opened_at=NOW + 10,
            title=STALE.title,
            what=STALE.what,
            todo=STALE.todo,
            person="F.F.",
            email=False,
            announce=True,
            closed_at=NOW + 900,
            slots={SITE_SLOT: NOW + 11, f"{ANN_CLEAR}:5f3a9c01": NOW + 901},
        ),
        REJECTED.key: rejected,
        ("stale", "99ffee"): other_scope,
    }
    assert rejected.person == "G.H." and rejected.email and not rejected.announce
    assert other_scope.person == "J.K." and other_scope.opened_at == NOW + 30


def test_incidents_of_one_kind_in_two_scopes_are_apart(store: IncidentStore) -> None:
    mine = opened(store, STALE)
    theirs = opened(store, replace(STALE, scope="99ffee"))
    assert store.claim(mine, SITE_SLOT, NOW)
    assert store.claim(theirs, SITE_SLOT, NOW)  # the same slot of another person's incident
    assert store.close(mine, NOW + 60)
    loaded = store.load_incidents()
    assert not loaded[STALE.key].is_open and loaded[("stale", "99ffee")].is_open


# --- what only the DynamoDB store has: partitions in one table ---------------------------------------------


def test_the_partitions_of_one_table_stay_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """The personal stack's partition and each hosted account's: nothing of one shows in another."""
    with moto_table(monkeypatch) as (client, table):
        personal = DynamoDBIncidentStore(table, client)
        first = DynamoDBIncidentStore(table, client, pk=incidents_partition("aaaa"))
        second = DynamoDBIncidentStore(table, client, pk=incidents_partition("bbbb"))
        record = opened(first, STALE)
        first.remember_people({"ab12cd": "F.F."})
        assert opened(second, STALE) == record  # the same incident, another account: opened there too
        assert first.claim(record, SITE_SLOT, NOW) and second.claim(record, SITE_SLOT, NOW)
        assert personal.load_incidents() == {} and personal.people == {}
        assert second.load_incidents()[STALE.key].slots == {SITE_SLOT: NOW}
        assert second.people == {}
        # a fresh store on the account's partition (a cold start) reads what the first one stored
        cold = DynamoDBIncidentStore(table, client, pk=incidents_partition("aaaa"))
        assert cold.load_incidents() == first.load_incidents() and cold.people == {"ab12cd": "F.F."}


# --- the contract can fail: deliberately broken stores ------------------------------------------------------


class ClaimAlwaysSucceeds(MemoryIncidentStore):
    def claim(self, record: IncidentRecord, slot: str, now: int) -> bool:
        super().claim(record, slot, now)
        return True


class OpensWhatIsOpen(MemoryIncidentStore):
    def open_incident(self, incident: Incident, now: int) -> IncidentRecord | None:
        old = self.records.get(incident.key)
        if old is not None:
            self.records[incident.key] = replace(old, closed_at=now)
        return super().open_incident(incident, now)


class ReleaseForgets(MemoryIncidentStore):
    def release(self, record: IncidentRecord, slot: str) -> None:
        pass


class RemindsWithoutCutoff(MemoryIncidentStore):
    def remind(self, record: IncidentRecord, now: int, cutoff: int) -> bool:
        return super().remind(record, now, now)


class ClosesTwice(MemoryIncidentStore):
    def close(self, record: IncidentRecord, now: int) -> bool:
        super().close(record, now)
        return True


class IgnoresTheGeneration(MemoryIncidentStore):
    def _current(self, record: IncidentRecord) -> IncidentRecord | None:
        return self.records.get(record.key)


class ReopensWithOldSlots(MemoryIncidentStore):
    def open_incident(self, incident: Incident, now: int) -> IncidentRecord | None:
        old = self.records.get(incident.key)
        record = super().open_incident(incident, now)
        if record is not None and old is not None:
            record = replace(record, slots=old.slots)
            self.records[incident.key] = record
        return record


class ForgetsThePerson(MemoryIncidentStore):
    def load_incidents(self) -> dict[tuple[str, str], IncidentRecord]:
        return {key: replace(record, person="") for key, record in super().load_incidents().items()}


class MergesPeople(MemoryIncidentStore):
    def remember_people(self, people: dict[str, str]) -> None:
        self.people = {**self.people, **people}


BROKEN: list[tuple[type[MemoryIncidentStore], Callable[[IncidentStore], None]]] = [
    (ClaimAlwaysSucceeds, test_a_slot_is_claimed_once_per_opening),
    (ClaimAlwaysSucceeds, test_a_released_slot_can_be_claimed_again),
    (OpensWhatIsOpen, test_an_incident_opens_once_with_its_texts_and_nothing_claimed),
    (ReleaseForgets, test_a_released_slot_can_be_claimed_again),
    (RemindsWithoutCutoff, test_a_reminder_is_claimed_once_per_cutoff),
    (ClosesTwice, test_an_incident_closes_once),
    (IgnoresTheGeneration, test_a_record_of_an_older_opening_changes_nothing),
    (ReopensWithOldSlots, test_reopening_after_close_is_a_new_generation_with_empty_slots),
    (ForgetsThePerson, test_load_returns_every_record_with_every_field),
    (MergesPeople, test_people_round_trip_and_the_last_writer_wins),
]


@pytest.mark.parametrize(("broken", "contract_test"), BROKEN, ids=lambda v: getattr(v, "__name__", ""))
def test_the_contract_catches_a_broken_store(
    broken: type[MemoryIncidentStore], contract_test: Callable[[IncidentStore], None]
) -> None:
    assert_the_contract_catches(MemoryIncidentStore(), broken(), contract_test)
