"""Lambda entry point: the schedule -> handler -> sync service -> (LibreLink Up, state, Nightscout).

Thin on purpose. Dependencies are built once per container (lazily, so a bad setting is reported on
every invocation, and tests can replace them), then every scheduled run calls the sync service.
"""

from __future__ import annotations

from typing import Any

from linkup_sync.errors import LinkupSyncError
from linkup_sync.observability import logger, metrics
from linkup_sync.runtime import Dependencies, run_once

log = logger()
metric = metrics()

DEPENDENCIES: Dependencies | None = None


def dependencies() -> Dependencies:
    global DEPENDENCIES
    if DEPENDENCIES is None:
        DEPENDENCIES = Dependencies.from_env()
    return DEPENDENCIES


@log.inject_lambda_context(correlation_id_path="execution_id", clear_state=True)
@metric.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from aws_lambda_powertools.metrics import MetricUnit

    try:
        deps = dependencies()
        report = run_once(deps)
    except LinkupSyncError as exc:
        # The message is written for people and never contains a secret; the run counts as failed.
        log.error(exc.message, extra={"reason": exc.reason, "needs_person": exc.needs_person})
        metric.add_metric(name="RunFailed", unit=MetricUnit.Count, value=1)
        raise
    summary = report.as_dict()
    metric.add_metric(name="ReadingsUploaded", unit=MetricUnit.Count, value=report.uploaded)
    metric.add_metric(name="GapFilled", unit=MetricUnit.Count, value=report.gap_filled)
    metric.add_metric(name="LoginAttempts", unit=MetricUnit.Count, value=report.logins)
    if report.newest_reading_age_s is not None:
        metric.add_metric(
            name="NewestReadingAgeMinutes", unit=MetricUnit.Count, value=round(report.newest_reading_age_s / 60, 1)
        )
    log.info("sync run finished", extra={"summary": summary, "scheduled_time": event.get("scheduled_time")})
    return summary
