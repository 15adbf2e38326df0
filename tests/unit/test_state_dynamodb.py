"""What only the DynamoDB store has (moto, the table built from template.yaml).

The behaviour it shares with the file store is tested on both in test_state_contract.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from linkup_sync.state.dynamodb import DynamoDBStateStore
from linkup_sync.state.model import TargetState, account_key, pack_ledger, unpack_ledger
from tests.unit.test_state_contract import moto_dynamodb_store

NOW = 1_800_000_000
KEY = account_key("Fiona.Follower@example.invalid")


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoDBStateStore]:
    yield from moto_dynamodb_store(monkeypatch)


def test_account_key_does_not_contain_the_address() -> None:
    assert "fiona" not in KEY.lower() and account_key(" fiona.follower@EXAMPLE.invalid ") == KEY


def test_ledger_item_stays_small(store: DynamoDBStateStore) -> None:
    instants = [NOW - 60 * i for i in range(13 * 60)]
    store.record_upload(KEY, TargetState(target_id="p1#site"), instants)
    item = store.client.query(
        TableName=store.table_name, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": KEY}}
    )["Items"][0]
    assert len(item["uploaded"]["B"]) <= 4 * 13 * 60
    assert int(item["expires_at"]["N"]) > NOW


def test_pack_round_trip() -> None:
    assert unpack_ledger(pack_ledger([3, 1, 2])) == (1, 2, 3)
    with pytest.raises(ValueError):
        unpack_ledger(b"\x00\x01")
