"""The state-store contract (linkup_sync.state.model.StateStore), one suite run against every store.

Each test below runs against the in-memory fake the unit tests use (tests/fakes.py), the local JSON file
store and the DynamoDB store (moto, in process, with the table built from template.yaml): the fake is held
to what the real stores do. What only one store has — file permissions, a damaged file, two
processes at once; the DynamoDB item size — is tested beside this file, in test_file_state.py and
test_state_dynamodb.py.

At the end: the contract catches deliberately broken stores, so its rules can fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from linkup_sync.model import Ticket
from linkup_sync.ports import StateStore
from linkup_sync.state.dynamodb import DynamoDBStateStore
from linkup_sync.state.file import FileStateStore
from linkup_sync.state.model import AccountState, TargetState, account_key
from tests.fakes import MemoryStateStore
from tests.support.contracts import assert_the_contract_catches
from tests.support.template import create_state_table

NOW = 1_800_000_000
KEY = account_key("Fiona.Follower@example.invalid")


@pytest.fixture(params=["memory", "file", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StateStore]:
    if request.param == "memory":
        yield MemoryStateStore()
        return
    if request.param == "file":
        yield FileStateStore(tmp_path / "state" / "state.json", clock=lambda: NOW)
        return
    yield from moto_dynamodb_store(monkeypatch)


def moto_dynamodb_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoDBStateStore]:
    """A DynamoDB store on moto's in-process DynamoDB, its table built from the template."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("dynamodb")
        yield DynamoDBStateStore(create_state_table(client), client=client, clock=lambda: NOW)


def ticket(region: str = "eu2") -> Ticket:
    return Ticket(token="tok", expires=NOW + 15552000, user_id="u1", account_id="a" * 64, region=region)


def test_nothing_stored_loads_empty_state(store: StateStore) -> None:
    state = store.load(KEY)
    assert state.account == AccountState() and state.targets == {}


def test_account_round_trip_and_region_survives_dropping_the_ticket(store: StateStore) -> None:
    saved = store.save_account(KEY, AccountState(ticket=ticket(), region="eu2", patient_id="p1"))
    loaded = store.load(KEY).account
    assert loaded == saved and loaded.ticket == ticket() and loaded.rev == 1
    store.save_account(KEY, AccountState(ticket=None, region="eu2", patient_id="p1", rev=1))
    loaded = store.load(KEY).account
    assert loaded.ticket is None and loaded.region == "eu2" and loaded.patient_id == "p1"


def test_region_follows_the_ticket(store: StateStore) -> None:
    saved = store.save_account(KEY, AccountState(ticket=ticket("eu2"), region="eu"))
    assert saved.region == "eu2" and store.load(KEY).account.region == "eu2"


def test_every_account_field_is_kept_including_the_breakers(store: StateStore) -> None:
    account = AccountState(
        ticket=ticket(),
        patient_id="p1",
        bad_credentials_version="v7",
        login_not_before=NOW + 60,
        login_block_reason="locked",
        backoff_until=NOW + 120,
        backoff_failures=2,
        backoff_reason="rate_limited",
        version="4.17.0",
        rejected_version="4.16.0",
        version_retry_at=NOW + 3600,
    )
    saved = store.save_account(KEY, account)
    assert store.load(KEY).account == saved == replace(account, region="eu2", rev=1)


def test_stale_account_write_yields_the_stored_one(store: StateStore) -> None:
    store.save_account(KEY, AccountState(ticket=ticket("eu"), region="eu"))
    result = store.save_account(KEY, AccountState(ticket=ticket("de"), region="de"))  # rev 0: stale
    assert result.region == "eu" and store.load(KEY).account.region == "eu"
    result = store.save_account(KEY, AccountState(region="fr", rev=5))  # a rev that was never stored
    assert result.region == "eu" and result.rev == 1


def test_login_lock_is_exclusive_until_it_expires_or_the_account_is_saved(store: StateStore) -> None:
    assert store.acquire_login_lock(KEY, NOW, 60)
    assert not store.acquire_login_lock(KEY, NOW + 30, 60)  # another run is logging in
    assert store.acquire_login_lock(KEY, NOW + 61, 60)  # the first run died: the lock expired
    # the lock alone does not count as a stored account: the first save (rev 0) still succeeds
    saved = store.save_account(KEY, AccountState(ticket=ticket()))
    assert saved.rev == 1
    assert store.acquire_login_lock(KEY, NOW + 62, 60)  # saving released the lock


def test_login_lock_counts_whole_seconds_and_holds_through_its_last_one(store: StateStore) -> None:
    assert store.acquire_login_lock(KEY, NOW + 0.5, 60)  # held until NOW + 60
    assert not store.acquire_login_lock(KEY, NOW + 60.9, 60)  # its last second: still held
    assert store.acquire_login_lock(KEY, NOW + 61, 60)


def test_record_upload_merges_with_a_concurrent_writer(store: StateStore) -> None:
    base = TargetState(target_id="p1#site")
    first = store.record_upload(KEY, base, [NOW - 600, NOW - 300])
    assert first.rev == 1
    # a second run that read the state before the first wrote: its write must not lose the first's
    second = store.record_upload(KEY, base, [NOW])
    assert second.uploaded == (NOW - 600, NOW - 300, NOW) and second.rev == 2
    assert store.load(KEY).targets["p1#site"].uploaded == (NOW - 600, NOW - 300, NOW)


def test_record_upload_keeps_the_targets_other_fields(store: StateStore) -> None:
    target = TargetState(target_id="p1#site", sensor="0E12@1700000000", jwt="jwt-value", jwt_exp=NOW + 3600)
    store.record_upload(KEY, target, [NOW])
    loaded = store.load(KEY).targets["p1#site"]
    assert loaded == replace(target, uploaded=(NOW,), rev=1)
    # an empty upload still stores the other fields (e.g. a new JWT), also from a stale copy
    store.record_upload(KEY, replace(loaded, jwt="newer"), [])
    store.record_upload(KEY, replace(loaded, jwt="newest", uploaded=()), [NOW + 60])  # rev 1: stale
    assert store.load(KEY).targets["p1#site"] == replace(target, jwt="newest", uploaded=(NOW, NOW + 60), rev=3)


def test_accounts_and_targets_stay_apart(store: StateStore) -> None:
    other = account_key("someone.else@example.invalid")
    store.save_account(KEY, AccountState(patient_id="p1"))
    store.record_upload(other, TargetState(target_id="p2#site"), [NOW])
    assert store.load(KEY).targets == {} and store.load(other).account == AccountState()


def test_version_breaker_and_read_back_horizon_round_trip(store: StateStore) -> None:
    """Issue #10: the hourly version retry and the read-back horizon survive a cold start."""
    saved = store.save_account(
        KEY, AccountState(version="4.17.0", rejected_version="4.16.0", version_retry_at=NOW + 3600)
    )
    assert store.load(KEY).account == saved and saved.version_retry_at == NOW + 3600
    store.save_account(KEY, AccountState(version="4.17.0", rev=saved.rev))  # cleared: the attribute goes
    assert store.load(KEY).account.version_retry_at is None
    target = TargetState(target_id="p1#site", checked_until=NOW)
    store.record_upload(KEY, target, [NOW - 60])
    assert store.load(KEY).targets["p1#site"].checked_until == NOW
    store.record_upload(KEY, TargetState(target_id="p1#site", checked_until=NOW - 900), [])  # stale: never back
    assert store.load(KEY).targets["p1#site"].checked_until == NOW


def test_recent_readings_round_trip_and_merge_with_a_concurrent_writer(store: StateStore) -> None:
    """Issue 24: the current readings behind the next arrow survive a cold start, and two runs that
    wrote at once keep each other's."""
    base = TargetState(target_id="p1#site")
    store.record_upload(KEY, base.with_recent([(NOW - 120, 110), (NOW - 60, 114)]), [NOW - 60])
    assert store.load(KEY).targets["p1#site"].recent == ((NOW - 120, 110), (NOW - 60, 114))
    store.record_upload(KEY, base.with_recent([(NOW, 119)]), [NOW])  # read before the first wrote: stale
    assert store.load(KEY).targets["p1#site"].recent == ((NOW - 120, 110), (NOW - 60, 114), (NOW, 119))
    later = store.load(KEY).targets["p1#site"].with_recent([(NOW + 3600, 150)])  # an hour later
    store.record_upload(KEY, later, [NOW + 3600])
    assert store.load(KEY).targets["p1#site"].recent == ((NOW + 3600, 150),)  # older than 15 minutes: gone


def test_the_incident_marker_is_read_with_the_state_and_keeps_concurrent_changes(store: StateStore) -> None:
    """Issue 25: the incidents a run left open come with the state's one read. Changes are per incident:
    of two runs that read the same marker, one opening an incident and one closing another, both stay."""
    bad, stale = ("bad_credentials", ""), ("stale", "ab12cd34")
    assert store.load(KEY).incidents_open == frozenset()
    store.mark_incidents(KEY, opened=[bad, stale], closed=[])
    assert store.load(KEY).incidents_open == {bad, stale}
    token = ("nightscout_token", "")
    store.mark_incidents(KEY, opened=[token], closed=[])  # one run opened another incident
    store.mark_incidents(KEY, opened=[], closed=[bad])  # one that read the same marker closed one
    assert store.load(KEY).incidents_open == {stale, token}
    store.mark_incidents(KEY, opened=[], closed=[stale, token, bad])
    assert store.load(KEY).incidents_open == frozenset()


def test_the_incident_marker_leaves_the_account_and_its_targets_alone(store: StateStore) -> None:
    saved = store.save_account(KEY, AccountState(ticket=ticket(), patient_id="p1"))
    store.record_upload(KEY, TargetState(target_id="p1#site"), [NOW])
    store.mark_incidents(KEY, opened=[("patient_gone", "")], closed=[])
    state = store.load(KEY)
    assert state.account == saved and list(state.targets) == ["p1#site"]
    assert store.save_account(KEY, replace(saved, patient_id="p2")).rev == saved.rev + 1  # no conflict
    other = account_key("someone.else@example.invalid")
    assert store.load(other).incidents_open == frozenset()
    store.mark_incidents(other, opened=[("stale", "")], closed=[])
    assert store.load(KEY).incidents_open == {("patient_gone", "")}


# --- the contract can fail: deliberately broken stores ------------------------------------------------------


class LedgerOfTheLastWriter(MemoryStateStore):
    def record_upload(self, key: str, target: TargetState, added: Iterable[int]) -> TargetState:
        stored = self.targets.get((key, target.target_id), TargetState(target_id=target.target_id))
        saved = replace(target, uploaded=tuple(sorted(added)), rev=stored.rev + 1)
        self.targets[(key, target.target_id)] = saved
        return saved


class LockEndsASecondEarly(MemoryStateStore):
    def acquire_login_lock(self, key: str, now: float, seconds: int) -> bool:
        if self.locks.get(key, 0) > now:  # free again in its last second, as the fake once was
            return False
        self.locks[key] = int(now) + seconds
        return True


class RegionAsGiven(MemoryStateStore):
    def save_account(self, key: str, account: AccountState) -> AccountState:
        saved = super().save_account(key, account)
        if saved.rev == account.rev + 1:
            self.accounts[key] = saved = replace(saved, region=account.region)
        return saved


class LoginLockNotReleasedBySaving(MemoryStateStore):
    def save_account(self, key: str, account: AccountState) -> AccountState:
        held = dict(self.locks)
        saved = super().save_account(key, account)
        self.locks.update(held)
        return saved


class MarkerOfTheLastWriter(MemoryStateStore):
    def mark_incidents(self, key: str, opened: Iterable[tuple[str, str]], closed: Iterable[tuple[str, str]]) -> None:
        self.incidents[key] = frozenset(opened)  # the whole set as this run saw it: another run's change is lost


BROKEN: list[tuple[type[MemoryStateStore], Callable[[StateStore], None]]] = [
    (LedgerOfTheLastWriter, test_record_upload_merges_with_a_concurrent_writer),
    (LockEndsASecondEarly, test_login_lock_counts_whole_seconds_and_holds_through_its_last_one),
    (RegionAsGiven, test_region_follows_the_ticket),
    (LoginLockNotReleasedBySaving, test_login_lock_is_exclusive_until_it_expires_or_the_account_is_saved),
    (MarkerOfTheLastWriter, test_the_incident_marker_is_read_with_the_state_and_keeps_concurrent_changes),
]


@pytest.mark.parametrize(("broken", "contract_test"), BROKEN, ids=lambda v: getattr(v, "__name__", ""))
def test_the_contract_catches_a_broken_store(
    broken: type[MemoryStateStore], contract_test: Callable[[StateStore], None]
) -> None:
    assert_the_contract_catches(MemoryStateStore(), broken(), contract_test)
