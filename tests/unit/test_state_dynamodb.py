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


def test_recent_readings_keep_the_target_item_in_one_write_unit(store: DynamoDBStateStore) -> None:
    """Issue 24: a full ledger of one-minute readings plus 15 minutes of remembered current readings,
    with the sensor and a v3 JWT: the item a steady-state run writes stays below 1 KB."""
    from tools.bench import dynamodb_item_size

    rng = random.Random(11)
    instants = sorted({NOW - 60 * i - rng.randrange(0, 5) for i in range(13 * 60)})
    recent = [(t, rng.randrange(40, 500)) for t in instants[-16:]]
    target = TargetState(
        target_id="p1#site", sensor="0E1A2B3C4D@1799990000", jwt="x" * 200, jwt_exp=NOW + 8 * 3600, checked_until=NOW
    ).with_recent(recent)
    store.record_upload(KEY, target, instants)
    (item,) = store.client.query(
        TableName=store.table_name, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": KEY}}
    )["Items"]
    assert len(item["recent"]["B"]) <= 3 * 16 + 8
    assert dynamodb_item_size(item) < 1024
    assert store.load(KEY).targets["p1#site"].recent == tuple(sorted(recent))[-16:]


def test_damaged_recent_readings_are_forgotten_not_fatal(store: DynamoDBStateStore) -> None:
    store.record_upload(KEY, TargetState(target_id="p1#site").with_recent([(NOW, 120)]), [NOW])
    store.client.update_item(
        TableName=store.table_name,
        Key={"pk": {"S": KEY}, "sk": {"S": "target#p1#site"}},
        UpdateExpression="SET recent = :r",
        ExpressionAttributeValues={":r": {"B": b"\x01\x85"}},
    )
    loaded = store.load(KEY).targets["p1#site"]
    assert loaded.recent == () and loaded.uploaded == (NOW,)
