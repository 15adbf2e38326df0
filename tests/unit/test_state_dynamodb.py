"""The DynamoDB store against moto, with the table built from template.yaml."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from linkup_sync.ports import Ticket
from linkup_sync.state.dynamodb import DynamoDBStateStore
from linkup_sync.state.model import AccountState, TargetState, account_key, pack_ledger, unpack_ledger
from tests.support.template import create_state_table

NOW = 1_800_000_000
KEY = account_key("Fiona.Follower@example.invalid")


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoDBStateStore]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("dynamodb")
        name = create_state_table(client)
        yield DynamoDBStateStore(name, client=client, clock=lambda: NOW)


def ticket(region: str = "eu2") -> Ticket:
    return Ticket(token="tok", expires=NOW + 15552000, user_id="u1", account_id="a" * 64, region=region)


def test_account_key_does_not_contain_the_address() -> None:
    assert "fiona" not in KEY.lower() and account_key(" fiona.follower@EXAMPLE.invalid ") == KEY


def test_empty_table_loads_empty_state(store: DynamoDBStateStore) -> None:
    state = store.load(KEY)
    assert state.account == AccountState() and state.targets == {}


def test_account_round_trip_and_region_survives_dropping_the_ticket(store: DynamoDBStateStore) -> None:
    saved = store.save_account(KEY, AccountState(ticket=ticket(), region="eu2", patient_id="p1"))
    loaded = store.load(KEY).account
    assert loaded == saved and loaded.ticket == ticket() and loaded.rev == 1
    store.save_account(KEY, AccountState(ticket=None, region="eu2", patient_id="p1", rev=1))
    loaded = store.load(KEY).account
    assert loaded.ticket is None and loaded.region == "eu2" and loaded.patient_id == "p1"


def test_stale_account_write_yields_the_stored_one(store: DynamoDBStateStore) -> None:
    store.save_account(KEY, AccountState(ticket=ticket("eu"), region="eu"))
    result = store.save_account(KEY, AccountState(ticket=ticket("de"), region="de"))  # rev 0: stale
    assert result.region == "eu" and store.load(KEY).account.region == "eu"


def test_record_upload_merges_with_a_concurrent_writer(store: DynamoDBStateStore) -> None:
    base = TargetState(target_id="p1#site")
    first = store.record_upload(KEY, base, [NOW - 600, NOW - 300])
    assert first.rev == 1
    # a second run that read the state before the first wrote: its write must not lose the first's
    second = store.record_upload(KEY, base, [NOW])
    assert second.uploaded == (NOW - 600, NOW - 300, NOW)
    assert store.load(KEY).targets["p1#site"].uploaded == (NOW - 600, NOW - 300, NOW)


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


def test_version_breaker_and_read_back_horizon_round_trip(store: DynamoDBStateStore) -> None:
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
