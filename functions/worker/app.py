"""Lambda entry point of the hosted stack's worker: one SQS message = one account's run.

hosted.yaml: SyncQueue -> this handler -> Worker -> run_once (the personal stack's code path) for each
account of the batch. Returns the partial batch response; only our own failures are retried.
"""

from __future__ import annotations

import os
from typing import Any

from linkup_sync.hosted.worker import Worker
from linkup_sync.observability import logger, metrics

log = logger()
metric = metrics()

WORKER: Worker | None = None


def worker() -> Worker:
    global WORKER
    if WORKER is None:
        WORKER = Worker.from_env(os.environ)
    return WORKER


@log.inject_lambda_context(clear_state=True)
@metric.log_metrics()
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from aws_lambda_powertools.metrics import MetricUnit

    remaining = getattr(context, "get_remaining_time_in_millis", None)
    time_left_s = remaining() / 1000 if callable(remaining) else None
    result = worker().handle(list(event.get("Records", [])), time_left_s=time_left_s)
    # Two custom metrics for the stack (not per account): the FailingShareAlarm divides them.
    counted = [o for o in result.outcomes if o.counted]
    metric.add_metric(name="AccountRuns", unit=MetricUnit.Count, value=len(counted))
    metric.add_metric(name="AccountRunsFailed", unit=MetricUnit.Count, value=sum(o.failing for o in counted))
    statuses: dict[str, int] = {}
    for outcome in result.outcomes:
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
    log.info("batch finished", extra={"summary": {"messages": len(result.outcomes), **statuses}})
    return result.response()
