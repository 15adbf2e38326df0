"""The hosted dispatcher (linkup_sync.hosted.dispatch): each minute it reads one partition per interval
of the registry (moto DynamoDB), and queues the accounts due in batches of ten, spread over the minute."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from linkup_sync.hosted.dispatch import SQS_BATCH, Dispatcher, DispatchFailed, SqsQueue, scheduled_minute
from linkup_sync.hosted.registry import Registry
from linkup_sync.hosted.schedule import INTERVALS, account_partition, partitions_due
from tests.support.moto_hosted import NOW, REGION, CallCounter, FakeClock, moto_table, sample_account

MINUTE = int(NOW // 60)


class FakeQueue:
    """Records what would be sent; refuses the last `refuse` entries of each batch."""

    def __init__(self, refuse: int = 0) -> None:
        self.batches: list[list[tuple[str, int]]] = []
        self.refuse = refuse
        self._lock = threading.Lock()  # the dispatcher sends from several threads

    def send_batch(self, entries: Sequence[tuple[str, int]]) -> int:
        with self._lock:
            self.batches.append(list(entries))
        return min(self.refuse, len(entries))

    def messages(self) -> list[tuple[dict[str, Any], int]]:
        return [(json.loads(body), delay) for batch in self.batches for body, delay in batch]


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    with moto_table(monkeypatch) as (client, table):
        yield Registry(table, client=client, clock=FakeClock())


def add_accounts(registry: Registry, count: int) -> dict[str, int]:
    """`count` accounts over every interval; id -> interval."""
    added = {}
    for number in range(count):
        account = registry.put(sample_account(number, interval=INTERVALS[number % len(INTERVALS)]))
        added[account.id] = account.interval
    return added


class PartitionRegistry(Registry):
    """The registry's due partitions in memory (an hour of moto queries over many accounts is slow)."""

    def __init__(self, accounts: dict[str, int]) -> None:
        super().__init__("unused", client=None)
        self.partitions: dict[str, list[str]] = {}
        for account_id, interval in accounts.items():
            self.partitions.setdefault(account_partition(account_id, interval), []).append(account_id)
        self.read: list[str] = []

    def due_ids(self, partition: str) -> list[str]:
        self.read.append(partition)
        return list(self.partitions.get(partition, []))


def test_one_query_per_interval_each_minute(registry: Registry) -> None:
    accounts = add_accounts(registry, 3 * len(INTERVALS))
    queries = CallCounter().attach(registry.client)
    queue = FakeQueue()
    dispatcher = Dispatcher(registry, queue)
    for minute in range(MINUTE, MINUTE + 6):
        before = queries.count("Query")
        queue.batches.clear()
        report = dispatcher.dispatch(minute)
        assert queries.count("Query") - before == len(INTERVALS)
        assert set(queries.calls) == {"Query"}  # never a Scan, never the registry itself
        messages = queue.messages()
        assert report.due == report.sent == len(messages) > 0 and report.unsent == 0
        assert sum(report.by_interval.values()) == report.due and set(report.by_interval) == set(INTERVALS)
        due_now = {a for a, interval in accounts.items() if account_partition(a, interval) in partitions_due(minute)}
        assert {body["account"] for body, _ in messages} == due_now
        for body, _ in messages:
            assert body == {"account": body["account"], "due": minute, "interval": accounts[body["account"]]}


def test_each_account_is_queued_once_per_interval_over_an_hour() -> None:
    accounts = {sample_account(n).id: INTERVALS[n % len(INTERVALS)] for n in range(1200)}
    registry = PartitionRegistry(accounts)
    queue = FakeQueue()
    dispatcher = Dispatcher(registry, queue)
    for minute in range(MINUTE, MINUTE + 60):
        registry.read.clear()
        dispatcher.dispatch(minute)
        assert sorted(registry.read) == sorted(partitions_due(minute))
    runs = Counter(body["account"] for body, _ in queue.messages())
    assert runs == {account_id: 60 // interval for account_id, interval in accounts.items()}
    dues = {(body["account"], body["due"]) for body, _ in queue.messages()}
    assert len(dues) == sum(runs.values())  # never twice in one minute


def test_batches_of_at_most_ten_with_the_delays_spread(registry: Registry) -> None:
    add_accounts(registry, 35)
    for number in range(100, 200):  # and a crowded minute: 100 more of the 1-minute interval
        registry.put(sample_account(number, interval=1))
    queue = FakeQueue()
    report = Dispatcher(registry, queue).dispatch(MINUTE)
    assert report.due > 100
    assert all(1 <= len(batch) <= SQS_BATCH for batch in queue.batches)
    assert len(queue.batches) == -(-report.due // SQS_BATCH)
    delays = Counter(delay for _, delay in queue.messages())
    assert min(delays) == 0 and max(delays) <= 59
    assert max(delays.values()) - min(delays.get(s, 0) for s in range(60)) <= 1
    ids = [body["account"] for body, _ in queue.messages()]
    assert len(ids) == len(set(ids))


def test_a_quiet_minute_sends_nothing(registry: Registry) -> None:
    queue = FakeQueue()
    report = Dispatcher(registry, queue).dispatch(MINUTE)
    assert (report.due, report.sent, report.unsent, queue.batches) == (0, 0, 0, [])
    assert report.as_dict() == {"minute": MINUTE, "due": 0, "sent": 0, "unsent": 0}


def test_entries_sqs_refused_fail_the_dispatch(registry: Registry) -> None:
    for number in range(25):
        registry.put(sample_account(number, interval=1))
    queue = FakeQueue(refuse=2)
    with pytest.raises(DispatchFailed) as caught:
        Dispatcher(registry, queue).dispatch(MINUTE)
    assert caught.value.message.startswith("6 of 25 due accounts could not be queued")
    assert "SyncQueue" in caught.value.message
    assert sum(len(b) for b in queue.batches) == 25  # every batch was still sent


class FakeSqs:
    """send_message_batch answers from a script: a list of Ids to fail, or an exception, per call."""

    def __init__(self, *script: set[str] | Exception) -> None:
        self.script = list(script)
        self.calls: list[list[dict[str, Any]]] = []

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        answer = self.script.pop(0) if self.script else set()
        if isinstance(answer, Exception):
            raise answer
        failed = [{"Id": e["Id"], "SenderFault": False, "Code": "InternalError"} for e in Entries if e["Id"] in answer]
        return {"Successful": [{"Id": e["Id"]} for e in Entries if e["Id"] not in answer], "Failed": failed}


ENTRIES = [(f'{{"account": "a{i}"}}', i) for i in range(4)]


def test_sqs_queue_retries_only_what_was_refused_once() -> None:
    sqs = FakeSqs({"1", "3"}, set())
    queue = SqsQueue("https://sqs.example/q", client=sqs)
    assert queue.send_batch(ENTRIES) == 0
    assert [e["Id"] for e in sqs.calls[1]] == ["1", "3"]
    assert sqs.calls[1][1] == {"Id": "3", "MessageBody": ENTRIES[3][0], "DelaySeconds": 3}
    assert queue.requests == 2


def test_sqs_queue_gives_up_after_one_retry() -> None:
    sqs = FakeSqs({"1", "3"}, {"3"}, set())
    queue = SqsQueue("https://sqs.example/q", client=sqs)
    assert queue.send_batch(ENTRIES) == 1
    assert len(sqs.calls) == 2


def test_sqs_queue_survives_an_error_then_counts_all_as_unsent() -> None:
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "SendMessageBatch")
    assert SqsQueue("q", client=FakeSqs(throttled, set())).send_batch(ENTRIES) == 0
    assert SqsQueue("q", client=FakeSqs(throttled, throttled)).send_batch(ENTRIES) == len(ENTRIES)


def test_sqs_queue_on_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real request shape: SQS takes the bodies with their delays."""
    with moto_table(monkeypatch):
        sqs = boto3.client("sqs", region_name=REGION)
        url = sqs.create_queue(QueueName="SyncQueue")["QueueUrl"]
        queue = SqsQueue(url, client=sqs)
        assert queue.send_batch([(f'{{"n": {i}}}', 0) for i in range(SQS_BATCH)]) == 0
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        assert sorted(json.loads(m["Body"])["n"] for m in received) == list(range(SQS_BATCH))


def test_the_scheduled_minute_comes_from_the_event() -> None:
    never = FakeClock(0.0)
    expected = (1796379300) // 60  # 2026-12-04T10:15:00Z
    assert scheduled_minute({"scheduled_time": "2026-12-04T10:15:00Z"}, never) == expected
    assert scheduled_minute({"scheduled_time": "2026-12-04T10:15:59Z"}, never) == expected
    assert scheduled_minute({"scheduled_time": "2026-12-04T11:15:00+01:00"}, never) == expected


@pytest.mark.parametrize(
    "event", [{}, {"scheduled_time": ""}, {"scheduled_time": "soon"}, {"scheduled_time": 5}, None, "x", []]
)
def test_without_a_usable_scheduled_time_the_clock_decides(event: object) -> None:
    assert scheduled_minute(event, FakeClock(NOW + 59)) == MINUTE
