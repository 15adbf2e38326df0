"""Lambda entry point: the schedule -> handler -> sync service -> (LibreLink Up, state, Nightscout).

Thin on purpose. Dependencies are built once per container (lazily, so a bad setting is reported on
every invocation, and tests can replace them), then every scheduled run calls the sync service.

When a run raises (a Lambda error, counted by the FailingRunsAlarm) and when it only reports:
- it raises when this run failed: LibreLink Up or Nightscout answered with an error, or the settings or
  the secret are wrong. One failed run is a blip; the alarm waits for several.
- it returns normally, with `skipped` set, when a stored circuit breaker kept it from contacting
  LibreLink Up (rate limit back-off, lockout, bad password waiting for a new secret). Those runs are
  expected and must not flap the failure alarm; the ones only a person can fix count as ActionRequired.
"""

from __future__ import annotations

import os
from typing import Any

from linkup_sync.errors import LinkupSyncError
from linkup_sync.observability import logger, metrics, record_failure, record_report
from linkup_sync.runtime import Dependencies, run_once

log = logger()
metric = metrics()

DEPENDENCIES: Dependencies | None = None


def dependencies() -> Dependencies:
    global DEPENDENCIES
    if DEPENDENCIES is None:
        DEPENDENCIES = Dependencies.from_env(os.environ)
    return DEPENDENCIES


@log.inject_lambda_context(correlation_id_path="execution_id", clear_state=True)
# No ColdStart metric: every custom metric costs money; `cold_start` is a field of every log line.
@metric.log_metrics()
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    log.append_keys(scheduled_time=event.get("scheduled_time"))
    try:
        run = run_once(dependencies())
    except LinkupSyncError as exc:
        # The message is written for people and never contains a secret.
        log.error(exc.message, extra={"reason": exc.reason, "needs_person": exc.needs_person})
        record_failure(exc.reason, exc.needs_person, exc.report)
        _finished(exc.report, failed=exc.reason, needs_person=exc.needs_person)
        raise
    except Exception:
        log.exception("unexpected failure: please report it with this log line")
        record_failure("internal", needs_person=False)
        _finished(None, failed="internal", needs_person=False)
        raise
    record_report(run)
    summary = run.as_dict()
    log.info("sync run finished", extra={"summary": summary})
    return summary


def _finished(report: Any, *, failed: str, needs_person: bool) -> None:
    """The summary line of a failed run too: the saved Logs Insights queries count failures by reason."""
    summary: dict[str, Any] = report.as_dict() if report is not None else {}
    summary.update(failed=failed, needs_person=needs_person)
    log.info("sync run finished", extra={"summary": summary})
