"""The local JSON file store: the same behaviour as the DynamoDB store (tests/unit/test_state_dynamodb.py)."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from linkup_sync.errors import ConfigError
from linkup_sync.ports import Ticket
from linkup_sync.state.file import FileStateStore
from linkup_sync.state.model import AccountState, TargetState, account_key

NOW = 1_800_000_000
KEY = account_key("Fiona.Follower@example.invalid")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.json"


@pytest.fixture
def store(path: Path) -> FileStateStore:
    return FileStateStore(path, clock=lambda: NOW)


def ticket(region: str = "eu2") -> Ticket:
    return Ticket(token="tok", expires=NOW + 15552000, user_id="u1", account_id="a" * 64, region=region)


def test_missing_file_loads_empty_state_and_creates_nothing(store: FileStateStore, path: Path) -> None:
    state = store.load(KEY)
    assert state.account == AccountState() and state.targets == {}
    assert not path.exists() and not path.parent.exists()


def test_account_round_trip_and_region_survives_dropping_the_ticket(store: FileStateStore) -> None:
    saved = store.save_account(KEY, AccountState(ticket=ticket(), region="eu2", patient_id="p1"))
    loaded = store.load(KEY).account
    assert loaded == saved and loaded.ticket == ticket() and loaded.rev == 1
    store.save_account(KEY, AccountState(ticket=None, region="eu2", patient_id="p1", rev=1))
    loaded = store.load(KEY).account
    assert loaded.ticket is None and loaded.region == "eu2" and loaded.patient_id == "p1"


def test_region_follows_the_ticket(store: FileStateStore) -> None:
    saved = store.save_account(KEY, AccountState(ticket=ticket("eu2"), region="eu"))
    assert saved.region == "eu2" and store.load(KEY).account.region == "eu2"


def test_every_account_field_is_kept_including_the_breakers(store: FileStateStore) -> None:
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


def test_stale_account_write_yields_the_stored_one(store: FileStateStore) -> None:
    store.save_account(KEY, AccountState(ticket=ticket("eu"), region="eu"))
    result = store.save_account(KEY, AccountState(ticket=ticket("de"), region="de"))  # rev 0: stale
    assert result.region == "eu" and store.load(KEY).account.region == "eu"
    result = store.save_account(KEY, AccountState(region="fr", rev=5))  # a rev that was never stored
    assert result.region == "eu" and result.rev == 1


def test_login_lock_is_exclusive_until_it_expires_or_the_account_is_saved(store: FileStateStore) -> None:
    assert store.acquire_login_lock(KEY, NOW, 60)
    assert not store.acquire_login_lock(KEY, NOW + 30, 60)  # another run is logging in
    assert store.acquire_login_lock(KEY, NOW + 61, 60)  # the first run died: the lock expired
    # the lock alone does not count as a stored account: the first save (rev 0) still succeeds
    saved = store.save_account(KEY, AccountState(ticket=ticket()))
    assert saved.rev == 1
    assert store.acquire_login_lock(KEY, NOW + 62, 60)  # saving released the lock


def test_record_upload_merges_with_a_concurrent_writer(store: FileStateStore) -> None:
    base = TargetState(target_id="p1#site")
    first = store.record_upload(KEY, base, [NOW - 600, NOW - 300])
    assert first.rev == 1
    # a second run that read the state before the first wrote: its write must not lose the first's
    second = store.record_upload(KEY, base, [NOW])
    assert second.uploaded == (NOW - 600, NOW - 300, NOW) and second.rev == 2
    assert store.load(KEY).targets["p1#site"].uploaded == (NOW - 600, NOW - 300, NOW)


def test_record_upload_keeps_the_targets_other_fields(store: FileStateStore) -> None:
    target = TargetState(target_id="p1#site", sensor="0E12@1700000000", jwt="jwt-value", jwt_exp=NOW + 3600)
    store.record_upload(KEY, target, [NOW])
    loaded = store.load(KEY).targets["p1#site"]
    assert loaded == replace(target, uploaded=(NOW,), rev=1)
    # an empty upload still stores the other fields (e.g. a new JWT), also from a stale copy
    store.record_upload(KEY, replace(loaded, jwt="newer"), [])
    store.record_upload(KEY, replace(loaded, jwt="newest", uploaded=()), [NOW + 60])  # rev 1: stale
    assert store.load(KEY).targets["p1#site"] == replace(target, jwt="newest", uploaded=(NOW, NOW + 60), rev=3)


def test_accounts_and_targets_stay_apart(store: FileStateStore) -> None:
    other = account_key("someone.else@example.invalid")
    store.save_account(KEY, AccountState(patient_id="p1"))
    store.record_upload(other, TargetState(target_id="p2#site"), [NOW])
    assert store.load(KEY).targets == {} and store.load(other).account == AccountState()


def test_file_is_private_json_without_the_address(store: FileStateStore, path: Path) -> None:
    store.save_account(KEY, AccountState(ticket=ticket()))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    data = json.loads(path.read_text())
    assert data["format"] == 1 and KEY in data["accounts"]
    assert "fiona" not in path.read_text().lower()
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []  # no leftovers


def test_unknown_fields_from_a_newer_version_are_ignored(store: FileStateStore, path: Path) -> None:
    store.save_account(KEY, AccountState(patient_id="p1"))
    data = json.loads(path.read_text())
    data["accounts"][KEY]["account"]["a_field_from_the_future"] = 1
    path.write_text(json.dumps(data))
    assert store.load(KEY).account.patient_id == "p1"


def test_damaged_file_gives_a_message_that_says_what_to_do(store: FileStateStore, path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text('{"accounts": {')
    with pytest.raises(ConfigError) as err:
        store.load(KEY)
    assert str(path) in err.value.message and "Delete it" in err.value.message


def _add(path: str, start: int) -> None:
    store = FileStateStore(path, clock=lambda: NOW)
    for i in range(25):
        # every writer starts from the state it read before anyone wrote (rev 0): a worst case
        store.record_upload(KEY, TargetState(target_id="p1#site"), [start + i])


def test_two_processes_writing_at_once_lose_nothing(path: Path) -> None:
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    workers = [ctx.Process(target=_add, args=(str(path), base)) for base in (NOW, NOW + 1000)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
        assert w.exitcode == 0
    uploaded = FileStateStore(path).load(KEY).targets["p1#site"].uploaded
    assert uploaded == tuple(sorted([NOW + i for i in range(25)] + [NOW + 1000 + i for i in range(25)]))


def test_read_back_horizon_is_kept_and_never_moves_back(store: FileStateStore) -> None:
    store.record_upload(KEY, TargetState(target_id="p1#site", checked_until=NOW), [NOW - 60])
    assert store.load(KEY).targets["p1#site"].checked_until == NOW
    store.record_upload(KEY, TargetState(target_id="p1#site", checked_until=NOW - 900), [])  # stale copy
    assert store.load(KEY).targets["p1#site"].checked_until == NOW
