"""What only the DynamoDB store has (moto, the table built from template.yaml).

The behaviour it shares with the file store is tested on both in test_state_contract.py.
"""

from __future__ import annotations

import random
import struct
import zlib
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
    assert unpack_ledger(pack_ledger([])) == ()
    with pytest.raises(ValueError):
        unpack_ledger(b"\x00\x01")  # the marker of a packed ledger without its data
    with pytest.raises(ValueError):
        unpack_ledger(b"\x00\x01" + zlib.compress(b"\x80"))  # ends inside a number
    with pytest.raises(ValueError):
        unpack_ledger(b"\x69\x00")  # neither format


def test_ledger_of_the_first_format_is_still_read() -> None:
    """Tables written before the packed format hold 4 bytes per instant; they must keep working."""
    instants = [NOW - 60 * i for i in range(13 * 60)]
    legacy = struct.pack(f">{len(instants)}I", *instants)
    assert unpack_ledger(legacy) == tuple(sorted(instants))


def test_packed_ledger_keeps_the_target_item_in_one_write_unit() -> None:
    """13 hours of one-minute readings with jitter: far below the 1 KB a write unit covers."""
    rng = random.Random(7)
    instants = sorted({NOW - 60 * i - rng.randrange(0, 5) for i in range(13 * 60)})
    packed = pack_ledger(instants)
    assert unpack_ledger(packed) == tuple(instants)
    assert len(packed) < 700 < 4 * len(instants)
