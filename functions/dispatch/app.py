"""Lambda entry point of the hosted stack's dispatcher: every minute, queue the accounts due in it.

hosted.yaml: EventBridge Scheduler (every minute) -> this handler -> Dispatcher -> SyncQueue.
"""

from __future__ import annotations

import os
from typing import Any

from linkup_sync.errors import ConfigError
from linkup_sync.hosted.dispatch import Dispatcher, SqsQueue, scheduled_minute
from linkup_sync.hosted.registry import Registry
from linkup_sync.observability import logger

log = logger()

DISPATCHER: Dispatcher | None = None


def dispatcher() -> Dispatcher:
    global DISPATCHER
    if DISPATCHER is None:
        missing = [name for name in ("STATE_TABLE_NAME", "SYNC_QUEUE_URL") if not os.environ.get(name, "").strip()]
        if missing:
            raise ConfigError([f"{name} is not set: hosted.yaml sets it; redeploy the stack." for name in missing])
        DISPATCHER = Dispatcher(Registry(os.environ["STATE_TABLE_NAME"]), SqsQueue(os.environ["SYNC_QUEUE_URL"]))
    return DISPATCHER


@log.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    chosen = dispatcher()
    report = chosen.dispatch(scheduled_minute(event, chosen.clock))  # raises when SQS refused some
    log.info("dispatch finished", extra={"summary": report.as_dict()})
    return report.as_dict()
