"""Lambda entry point of the hosted stack's dispatcher: every minute, queue the accounts due in it.

hosted.yaml: EventBridge Scheduler (every minute) -> this handler -> Dispatcher -> SyncQueue.
"""

from __future__ import annotations

import os
from typing import Any

from linkup_sync.hosted.dispatch import Dispatcher, SqsQueue, scheduled_minute
from linkup_sync.hosted.registry import Registry
from linkup_sync.hosted.settings import DispatcherSettings
from linkup_sync.observability import logger

log = logger()

DISPATCHER: Dispatcher | None = None


def dispatcher() -> Dispatcher:
    global DISPATCHER
    if DISPATCHER is None:
        settings = DispatcherSettings.from_env(os.environ)
        DISPATCHER = Dispatcher(Registry(settings.table_name), SqsQueue(settings.queue_url))
    return DISPATCHER


@log.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    chosen = dispatcher()
    report = chosen.dispatch(scheduled_minute(event, chosen.clock))  # raises when SQS refused some
    log.info("dispatch finished", extra={"summary": report.as_dict()})
    return report.as_dict()
