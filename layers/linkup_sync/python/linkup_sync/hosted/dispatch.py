"""The hosted dispatcher: every minute, the accounts due in it go to the queue, spread over the minute.

It reads one small partition per interval (schedule.partitions_due), never the whole registry, and
sends ten messages per SendMessageBatch. Each message carries the minute it is for, so the worker can
recognise a second delivery or a late one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..errors import LinkupSyncError
from ..ports import Clock, Queue
from .registry import Registry
from .schedule import INTERVALS, partitions_due, spread

log = logging.getLogger("linkup_sync")
SQS_BATCH = 10  # SendMessageBatch's limit
SEND_THREADS = 8


class DispatchFailed(LinkupSyncError):
    reason = "dispatch"

    def __init__(self, unsent: int, due: int) -> None:
        super().__init__(
            f"{unsent} of {due} due accounts could not be queued this minute (SQS refused them). They run at "
            "their next interval; if this repeats, check the SyncQueue and the dispatcher's permissions."
        )


class SqsQueue:
    def __init__(self, url: str, client: Any = None) -> None:
        self.url = url
        self._client = client
        self.requests = 0

    @property
    def client(self) -> Any:
        if self._client is None:
            from ..aws import client

            self._client = client("sqs")
        return self._client

    def send_batch(self, entries: Sequence[tuple[str, int]]) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        pending = [
            {"Id": str(i), "MessageBody": body, "DelaySeconds": delay} for i, (body, delay) in enumerate(entries)
        ]
        for _attempt in range(2):  # one retry of what SQS refused; then the account waits an interval
            try:
                self.requests += 1
                reply = self.client.send_message_batch(QueueUrl=self.url, Entries=pending)
            except (BotoCoreError, ClientError) as exc:
                log.warning("SendMessageBatch failed (%s)", type(exc).__name__)
                continue
            failed = {entry["Id"] for entry in reply.get("Failed", [])}
            pending = [entry for entry in pending if entry["Id"] in failed]
            if not pending:
                return 0
        return len(pending)


@dataclass
class DispatchReport:
    minute: int
    due: int = 0
    sent: int = 0
    unsent: int = 0
    by_interval: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"minute": self.minute, "due": self.due, "sent": self.sent, "unsent": self.unsent}


def scheduled_minute(event: object, clock: Clock) -> int:
    """The epoch minute the schedule meant (its scheduled time), so a late start does not skip a minute."""
    text = event.get("scheduled_time") if isinstance(event, dict) else None
    if isinstance(text, str) and text:
        try:
            return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() // 60)
        except ValueError:
            pass
    return int(clock() // 60)


class Dispatcher:
    def __init__(self, registry: Registry, queue: Queue, clock: Clock = time.time) -> None:
        self.registry = registry
        self.queue = queue
        self.clock = clock

    def dispatch(self, minute: int) -> DispatchReport:
        report = DispatchReport(minute=minute)
        messages: list[tuple[str, str]] = []  # (account id, body)
        for interval, partition in zip(INTERVALS, partitions_due(minute), strict=True):
            ids = self.registry.due_ids(partition)
            report.by_interval[interval] = len(ids)
            body = {"due": minute, "interval": interval}
            messages += [(account_id, json.dumps({"account": account_id, **body})) for account_id in ids]
        bodies = dict(messages)
        # The delays are capped below a minute, so a message is always visible before the next dispatch.
        entries = [(bodies[account_id], delay) for account_id, delay in spread(bodies)]
        report.due = len(entries)
        batches = [entries[i : i + SQS_BATCH] for i in range(0, len(entries), SQS_BATCH)]
        with ThreadPoolExecutor(max_workers=SEND_THREADS) as threads:
            unsent = sum(threads.map(self.queue.send_batch, batches))
        report.unsent = unsent
        report.sent = report.due - unsent
        if unsent:
            raise DispatchFailed(unsent, report.due)
        return report
