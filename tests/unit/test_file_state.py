"""What only the local JSON file store has: its file, its folder, damage, and two processes at once.

The behaviour it shares with the DynamoDB store is tested on both in test_state_contract.py.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from linkup_sync.errors import ConfigError
from linkup_sync.model import Ticket
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


def test_missing_file_creates_nothing(store: FileStateStore, path: Path) -> None:
    # loading from nothing gives empty state (test_state_contract.py); here: not even the folder is made
    store.load(KEY)
    assert not path.exists() and not path.parent.exists()


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
    ctx: Any = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    workers = [ctx.Process(target=_add, args=(str(path), base)) for base in (NOW, NOW + 1000)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
        assert w.exitcode == 0
    uploaded = FileStateStore(path).load(KEY).targets["p1#site"].uploaded
    assert uploaded == tuple(sorted([NOW + i for i in range(25)] + [NOW + 1000 + i for i in range(25)]))
