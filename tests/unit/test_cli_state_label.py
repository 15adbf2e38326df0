"""What the command line calls the state store it opened, and when a failure is a missing table: read from
the store's own type (issue 25: no getattr probing), so a file, a table and any other store each get
their words."""

from __future__ import annotations

from pathlib import Path

import pytest

from linkup_sync.errors import StateUnavailable
from linkup_sync.state.dynamodb import DynamoDBStateStore
from linkup_sync.state.file import FileStateStore
from linkup_sync_cli.adapters import NoRecordStore, missing_table, state_label
from tests.fakes import MemoryStateStore


class _Meta:
    region_name = "eu-west-1"


class _Client:
    """Only what missing_table reads of a DynamoDB client: its region."""

    meta = _Meta()


def test_each_store_is_named_by_its_type(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert state_label(FileStateStore(tmp_path / "linkup" / "state.json")) == "~/linkup/state.json"
    assert state_label(FileStateStore("/srv/state.json")) == "/srv/state.json"
    assert state_label(DynamoDBStateStore("linkup-state", client=None)) == "DynamoDB table linkup-state"
    assert state_label(MemoryStateStore()) == "the state store"
    assert state_label(NoRecordStore(MemoryStateStore())) == "the state store"


def test_a_missing_table_names_the_table_and_the_region_of_the_store() -> None:
    table = DynamoDBStateStore("no-such-table", client=_Client())  # type: ignore[arg-type]
    gone = StateUnavailable("ResourceNotFoundException: table not found")
    problem = missing_table(gone, table)
    assert problem is not None
    assert problem.problems[0] == "There is no DynamoDB table no-such-table in the AWS region eu-west-1."
    # any other failure, or a store that is no table, is not a missing table
    assert missing_table(StateUnavailable("ThrottlingException"), table) is None
    assert missing_table(gone, FileStateStore("/srv/state.json")) is None
    assert missing_table(gone, None) is None
    assert missing_table(RuntimeError("ResourceNotFound"), table) is None


def test_the_dry_runs_store_records_no_upload_and_marks_no_incident() -> None:
    inner = MemoryStateStore()
    store = NoRecordStore(inner)
    store.mark_incidents("acct#k", opened=[("stale", "")], closed=[])
    assert inner.load("acct#k").incidents_open == frozenset()
    inner.mark_incidents("acct#k", opened=[("stale", "")], closed=[])  # the inner store itself would keep it
    assert inner.load("acct#k").incidents_open == frozenset({("stale", "")})
