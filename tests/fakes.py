"""In-memory fakes of the ports (fakes over mocks: they behave, they do not just record)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from linkup_sync.errors import LinkUpPatientNotFound, LinkUpUnauthorized, NightscoutUnreachable, StateConflict
from linkup_sync.incidents.model import EMAIL_OPEN, Incident, IncidentRecord
from linkup_sync.model import Connection, Existing, Graph, Ticket
from linkup_sync.readings import Reading
from linkup_sync.state.model import AccountState, StoredState, TargetState


@dataclass
class FakeLinkUp:
    graphs: dict[str, Graph] = field(default_factory=dict)
    connection_ids: list[str] = field(default_factory=list)
    home_region: str = "eu"
    expires: int = 2_000_000_000
    logins: int = 0
    requests: list[str] = field(default_factory=list)
    unauthorized_next: int = 0
    revoked: set[str] = field(default_factory=set)
    version: str = "4.16.0"

    def login(self, username: str, password: str, region: str) -> Ticket:
        self.logins += 1
        self.requests.append("login")
        user_id = "user-" + username
        return Ticket(
            token=f"tok-{self.logins}",
            expires=self.expires,
            user_id=user_id,
            account_id=hashlib.sha256(user_id.encode()).hexdigest(),
            region=self.home_region,
        )

    def connections(self, ticket: Ticket) -> list[Connection]:
        self.requests.append("connections")
        return [Connection(patient_id=p) for p in self.connection_ids]

    def graph(self, ticket: Ticket, patient_id: str) -> Graph:
        self.requests.append("graph")
        if ticket.token in self.revoked or self.unauthorized_next > 0:
            self.unauthorized_next = max(0, self.unauthorized_next - 1)
            raise LinkUpUnauthorized()
        if patient_id not in self.graphs:
            raise LinkUpPatientNotFound(patient_id, [])
        return self.graphs[patient_id]


@dataclass
class FakeNightscout:
    entries: dict[int, Reading] = field(default_factory=dict)
    posts: list[list[Reading]] = field(default_factory=list)
    sensor_starts: list[tuple[str, int]] = field(default_factory=list)
    down: bool = False
    requests_made: int = 0
    foreign: set[int] = field(default_factory=set)  # epoch ms of sgv entries another uploader made
    reads: list[int] = field(default_factory=list)  # the `since_ms` of every read-back
    read_fails: bool = False  # the read-back fails, uploads still work

    def existing_sgv(self, since_ms: int) -> Existing:
        self.requests_made += 1
        self.reads.append(since_ms)
        if self.down or self.read_fails:
            raise NightscoutUnreachable("connection refused")
        held = {ms for ms in (*self.entries, *self.foreign) if ms >= since_ms}
        return Existing(instants=tuple(sorted(ms // 1000 for ms in held)), complete_since_ms=since_ms)

    def post_sensor_start(self, *, serial: str, activated_at: int) -> None:
        self.requests_made += 1
        if self.down:
            raise NightscoutUnreachable("connection refused")
        self.sensor_starts.append((serial, activated_at))

    def upload(self, readings: Sequence[Reading]) -> int:
        assert readings, "never post an empty array"
        self.posts.append(list(readings))
        self.requests_made += 1
        if self.down:
            raise NightscoutUnreachable("connection refused")
        for r in readings:
            self.entries[r.epoch_ms] = r  # upsert on the instant, like Nightscout
        return len(readings)


@dataclass
class MemoryStateStore:
    """The StateStore in memory, held to the contract the file and DynamoDB stores meet
    (tests/unit/test_state_contract.py). `reads` and `writes` count the calls; `conflict_next` makes that
    many record_upload writes meet a concurrent writer."""

    accounts: dict[str, AccountState] = field(default_factory=dict)
    targets: dict[tuple[str, str], TargetState] = field(default_factory=dict)
    reads: int = 0
    writes: int = 0
    conflict_next: int = 0
    locks: dict[str, int] = field(default_factory=dict)
    incidents: dict[str, frozenset[tuple[str, str]]] = field(default_factory=dict)

    def acquire_login_lock(self, key: str, now: float, seconds: int) -> bool:
        # Whole seconds, held through its last one, like the file and DynamoDB stores.
        if key in self.locks and self.locks[key] >= int(now):
            return False
        self.locks[key] = int(now) + seconds
        return True

    def load(self, key: str) -> StoredState:
        self.reads += 1
        targets = {pid: t for (k, pid), t in self.targets.items() if k == key}
        account, marked = self.accounts.get(key, AccountState()), self.incidents.get(key, frozenset())
        return StoredState(key=key, account=account, targets=targets, incidents_open=marked)

    def mark_incidents(self, key: str, opened: Iterable[tuple[str, str]], closed: Iterable[tuple[str, str]]) -> None:
        self.writes += 1
        opened = set(opened)
        self.incidents[key] = frozenset((self.incidents.get(key, frozenset()) - set(closed)) | opened)

    def save_account(self, key: str, account: AccountState) -> AccountState:
        self.writes += 1
        stored = self.accounts.get(key, AccountState())
        if stored.rev != account.rev:
            return stored
        if account.ticket is not None:  # the next login starts where the last ticket came from
            account = replace(account, region=account.ticket.region)
        saved = replace(account, rev=account.rev + 1)
        self.accounts[key] = saved
        self.locks.pop(key, None)
        return saved

    def record_upload(self, key: str, target: TargetState, added: Iterable[int]) -> TargetState:
        added = tuple(added)
        current = target
        for _ in range(3):
            self.writes += 1
            stored = self.targets.get((key, target.target_id), TargetState(target_id=target.target_id))
            if self.conflict_next:
                self.conflict_next -= 1
                current = stored
                continue
            if stored.rev != current.rev:
                current = stored
                continue
            ours = replace(current, sensor=target.sensor, jwt=target.jwt, jwt_exp=target.jwt_exp)
            ours = ours.with_uploaded(added).checked_at_least(target.checked_until).with_recent(target.recent)
            saved = replace(ours, rev=current.rev + 1)
            self.targets[(key, target.target_id)] = saved
            return saved
        raise StateConflict()


class MemoryIncidentStore:
    """The IncidentStore in memory (moved out of the Lambda layer: nothing in-memory ships there). Same
    semantics as DynamoDBIncidentStore."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], IncidentRecord] = {}
        self.people: dict[str, str] = {}

    def remember_people(self, people: dict[str, str]) -> None:
        self.people = dict(people)

    def load_incidents(self) -> dict[tuple[str, str], IncidentRecord]:
        return dict(self.records)

    def open_incident(self, incident: Incident, now: int) -> IncidentRecord | None:
        old = self.records.get(incident.key)
        if old is not None and old.is_open:
            return None
        record = IncidentRecord(
            kind=incident.kind,
            scope=incident.scope,
            gen=(old.gen if old else 0) + 1,
            opened_at=now,
            title=incident.title,
            what=incident.what,
            todo=incident.todo,
            person=incident.person,
            email=incident.email,
            announce=incident.announce,
        )
        self.records[incident.key] = record
        return record

    def _current(self, record: IncidentRecord) -> IncidentRecord | None:
        stored = self.records.get(record.key)
        return stored if stored is not None and stored.gen == record.gen else None

    def claim(self, record: IncidentRecord, slot: str, now: int) -> bool:
        stored = self._current(record)
        if stored is None or slot in stored.slots:
            return False
        updated = replace(stored, slots={**stored.slots, slot: now})
        self.records[record.key] = replace(updated, email_last=now) if slot == EMAIL_OPEN else updated
        return True

    def release(self, record: IncidentRecord, slot: str) -> None:
        stored = self._current(record)
        if stored is not None:
            self.records[record.key] = replace(stored, slots={k: v for k, v in stored.slots.items() if k != slot})

    def remind(self, record: IncidentRecord, now: int, cutoff: int) -> bool:
        stored = self._current(record)
        if stored is None or not stored.is_open or stored.email_last is None or stored.email_last > cutoff:
            return False
        self.records[record.key] = replace(stored, email_last=now, reminders=stored.reminders + 1)
        return True

    def close(self, record: IncidentRecord, now: int) -> bool:
        stored = self._current(record)
        if stored is None or not stored.is_open:
            return False
        self.records[record.key] = replace(stored, closed_at=now)
        return True


class FakeDns:
    """A resolver (linkup_sync.addresses.Resolve) answering from a table: a name it does not know does not
    resolve. `asked` records every name looked up."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError("Name or service not known")
        return self.answers[host]


_Handler = TypeVar("_Handler", bound=logging.Handler)


@contextlib.contextmanager
def package_log(handler: _Handler, level: int = logging.INFO) -> Iterator[_Handler]:
    """`handler` on the package's logger ("linkup_sync") at `level`, for the block; restored afterwards."""
    logger = logging.getLogger("linkup_sync")
    saved = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)
