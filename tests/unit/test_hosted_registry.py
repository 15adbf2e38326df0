"""The hosted account registry (linkup_sync.hosted.registry) on moto's DynamoDB, in the state table
built from template.yaml: adding, replacing, claiming a minute's run, releasing it, removing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from linkup_sync.hosted.registry import (
    REGISTRY_PK,
    AccountExists,
    Registry,
    account_id_for,
    incidents_partition,
    mask_email,
)
from linkup_sync.hosted.schedule import account_partition
from tests.support.moto_hosted import NOW, CallCounter, FakeClock, moto_table, sample_account

MINUTE = int(NOW // 60)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> Iterator[Registry]:
    with moto_table(monkeypatch) as (client, table):
        yield Registry(table, client=client, clock=clock)


def keys(registry: Registry, pk: str) -> list[str]:
    return [item["sk"]["S"] for item in registry.items(pk)]


def put_raw(registry: Registry, pk: str, sk: str, **extra: Any) -> None:
    registry.client.put_item(TableName=registry.table_name, Item={"pk": {"S": pk}, "sk": {"S": sk}, **extra})


def last_due(registry: Registry, account_id: str) -> int | None:
    found = registry.get(account_id)
    assert found is not None
    return found.last_due


# --- adding and reading ------------------------------------------------------------------------------


def test_put_then_get_and_list(registry: Registry, clock: FakeClock) -> None:
    first = sample_account(1, settings={"LINK_UP_REGION": "EU2"}, people=2)
    stored = registry.put(first)
    assert stored == replace(first, created_at=int(NOW), updated_at=int(NOW), last_due=None)
    assert registry.get(first.id) == stored
    clock.tick(60)
    second = registry.put(sample_account(2, interval=10))
    assert {a.id: a for a in registry.accounts()} == {first.id: stored, second.id: second}
    assert registry.get("000000000000") is None


def test_put_lists_the_account_in_its_due_partition(registry: Registry) -> None:
    account = registry.put(sample_account(1, interval=15))
    assert account.due_partition == account_partition(account.id, 15)
    assert keys(registry, account.due_partition) == [account.id]
    assert registry.due_ids(account.due_partition) == [account.id]


def test_putting_the_same_account_twice_is_refused(registry: Registry) -> None:
    account = sample_account(1)
    registry.put(account)
    with pytest.raises(AccountExists) as caught:
        registry.put(replace(account, cred_version="v2"))
    assert account.id in caught.value.message and "--replace" in caught.value.message
    assert "follower1" not in caught.value.message
    assert caught.value.needs_person
    stored = registry.get(account.id)
    assert stored is not None and stored.cred_version == "v1"


def test_a_concurrent_add_is_refused_too(registry: Registry) -> None:
    """Another operator adds the same account between our read and our write: the condition refuses ours."""
    account = sample_account(1)

    def someone_else_adds(**_: Any) -> None:
        put_raw(registry, REGISTRY_PK, account.id, interval={"N": "5"})

    registry.client.meta.events.register_first("before-call.dynamodb.TransactWriteItems", someone_else_adds)
    with pytest.raises(AccountExists):
        registry.put(account)


def test_replace_keeps_created_at_and_last_due(registry: Registry, clock: FakeClock) -> None:
    account = registry.put(sample_account(1))
    assert registry.claim(account.id, MINUTE) is not None
    clock.tick(3600)
    replaced = registry.put(replace(account, cred_version="v2", ciphertext=b"new"), replace_existing=True)
    assert replaced.created_at == int(NOW) and replaced.updated_at == int(NOW) + 3600
    assert replaced.last_due == MINUTE
    assert registry.get(account.id) == replaced
    assert keys(registry, account.due_partition) == [account.id]


def test_replace_with_another_interval_moves_the_due_item(registry: Registry) -> None:
    account = sample_account(1, interval=5)
    registry.put(account)
    moved = registry.put(replace(account, interval=12), replace_existing=True)
    assert moved.due_partition == account_partition(account.id, 12) != account.due_partition
    assert keys(registry, moved.due_partition) == [account.id]
    assert keys(registry, account.due_partition) == []
    stored = registry.get(account.id)
    assert stored is not None and stored.interval == 12


# --- claiming a minute's run ------------------------------------------------------------------------


def test_claim_first_wins_then_same_or_older_minute_none_newer_wins(registry: Registry) -> None:
    account = registry.put(sample_account(1, settings={"LINK_UP_VERSION": "4.17.0"}))
    claimed = registry.claim(account.id, MINUTE)
    # the whole item as it was before the claim (ALL_OLD): what the worker runs with, and the minute
    # claimed before, which a release puts back
    assert claimed == account and claimed.last_due is None
    assert last_due(registry, account.id) == MINUTE
    assert registry.claim(account.id, MINUTE) is None  # a second delivery
    assert registry.claim(account.id, MINUTE - 5) is None  # a message from before
    newer = registry.claim(account.id, MINUTE + 5)
    assert newer is not None and newer.last_due == MINUTE
    assert last_due(registry, account.id) == MINUTE + 5


def test_claim_of_an_unknown_account_is_none_and_creates_nothing(registry: Registry) -> None:
    assert registry.claim("000000000000", MINUTE) is None
    assert registry.get("000000000000") is None


def test_release_restores_the_previous_minute(registry: Registry) -> None:
    account = registry.put(sample_account(1))
    assert registry.claim(account.id, MINUTE - 5) is not None
    claimed = registry.claim(account.id, MINUTE)
    assert claimed is not None
    registry.release(claimed, MINUTE, MINUTE - 5)
    assert last_due(registry, account.id) == MINUTE - 5
    assert registry.claim(account.id, MINUTE) is not None  # the retry of the message can run


def test_release_without_a_previous_minute_removes_it(registry: Registry) -> None:
    account = registry.put(sample_account(1))
    claimed = registry.claim(account.id, MINUTE)
    assert claimed is not None
    registry.release(claimed, MINUTE, None)
    assert last_due(registry, account.id) is None


def test_release_leaves_a_later_claim_alone(registry: Registry) -> None:
    account = registry.put(sample_account(1))
    claimed = registry.claim(account.id, MINUTE)
    assert claimed is not None and registry.claim(account.id, MINUTE + 5) is not None
    registry.release(claimed, MINUTE, None)  # too late: the next run has it now
    assert last_due(registry, account.id) == MINUTE + 5


# --- removing -------------------------------------------------------------------------------------


def test_remove_deletes_everything_of_the_account_and_nothing_else(registry: Registry) -> None:
    gone = registry.put(sample_account(1))
    kept = registry.put(sample_account(2))
    for account in (gone, kept):
        registry.claim(account.id, MINUTE)
        # more than one BatchWriteItem (25 keys) of state, and a few incidents
        for n in range(30):
            put_raw(registry, account.state_key, f"target#p{n}#site")
        for n in range(3):
            put_raw(registry, incidents_partition(account.id), f"incident#{n}")
    deleted = registry.remove(gone)
    assert deleted == 2 + 30 + 3
    assert registry.get(gone.id) is None
    assert keys(registry, gone.state_key) == [] and keys(registry, incidents_partition(gone.id)) == []
    assert gone.id not in keys(registry, gone.due_partition)
    assert registry.get(kept.id) is not None
    assert len(keys(registry, kept.state_key)) == 30 and len(keys(registry, incidents_partition(kept.id))) == 3
    assert kept.id in keys(registry, kept.due_partition)
    assert [a.id for a in registry.accounts()] == [kept.id]


def test_remove_of_an_account_without_state(registry: Registry) -> None:
    account = registry.put(sample_account(1))
    assert registry.remove(account) == 2
    assert list(registry.accounts()) == []


# --- the dispatcher's read -----------------------------------------------------------------------------


def test_due_ids_reads_only_its_partition_with_one_query(registry: Registry) -> None:
    for pk, sk in [("due#5#3", "aaa"), ("due#5#3", "bbb"), ("due#5#4", "ccc"), ("due#10#3", "ddd"), ("due#5#30", "e")]:
        put_raw(registry, pk, sk)
    put_raw(registry, REGISTRY_PK, "fff")
    calls = CallCounter().attach(registry.client)
    assert sorted(registry.due_ids("due#5#3")) == ["aaa", "bbb"]
    assert calls.calls == ["Query"]
    assert registry.due_ids("due#60#59") == []


def test_account_ids_and_masks() -> None:
    assert account_id_for("Fiona.Follower@example.invalid") == account_id_for("  fiona.follower@EXAMPLE.invalid ")
    assert len(account_id_for("a@b.cd")) == 12 and account_id_for("a@b.cd") != account_id_for("b@b.cd")
    assert mask_email("fiona.follower@example.invalid") == "f***@e***.invalid"
    assert mask_email(" jo@mail.co.uk ") == "j***@m***.uk"
    assert mask_email("nobody@localhost") == "n***@***"
