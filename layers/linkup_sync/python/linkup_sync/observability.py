"""Logger and metrics in one place (Powertools singletons, created on first use)."""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger, Metrics

    from .sync import RunReport

SERVICE = "linkup-sync"
NAMESPACE = "LinkupSync"


class _CurrentStdout:
    """sys.stdout as it is at each write, not as it was when the logger was made.

    The logger lives as long as the process; whoever replaces sys.stdout later (the local runner's quiet
    mode, a test's output capture) then still receives the log lines.
    """

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@lru_cache(maxsize=1)
def logger() -> Logger:
    import logging

    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    powertools_logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE), stream=_CurrentStdout())  # type: ignore[arg-type]
    # The package's modules log through the stdlib logger "linkup_sync"; give it the same JSON output.
    logging.getLogger("linkup_sync")
    copy_config_to_registered_loggers(source_logger=powertools_logger, include={"linkup_sync"})
    return powertools_logger


@lru_cache(maxsize=1)
def metrics() -> Metrics:
    from aws_lambda_powertools import Metrics

    return Metrics(
        service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE),
        namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE),
    )


def _service() -> str:
    return os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE)


def _with_reason(name: str, reason: str) -> None:
    """The same count once more with a `reason` dimension, for diagnosis (alarms use the total)."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(
        name=name,
        unit=MetricUnit.Count,
        value=1,
        namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE),
        default_dimensions={"service": _service()},
    ) as metric:
        metric.add_dimension(name="reason", value=reason)


def count(name: str, reason: str) -> None:
    """One event, as a total ([service]) and by reason ([service, reason])."""
    from aws_lambda_powertools.metrics import MetricUnit

    metrics().add_metric(name=name, unit=MetricUnit.Count, value=1)
    _with_reason(name, reason)


def _per_patient(report: RunReport | None) -> None:
    """With several people, each one's uploads and data age again by patient (a short hash, never a name)."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    if report is None or len(report.targets) < 2:
        return
    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE)
    for target in report.targets:
        with single_metric(
            name="ReadingsUploaded",
            unit=MetricUnit.Count,
            value=target.uploaded,
            namespace=namespace,
            default_dimensions={"service": _service()},
        ) as metric:
            metric.add_dimension(name="patient", value=target.patient)
        if target.newest_reading_age_s is not None:
            with single_metric(
                name="NewestReadingAgeMinutes",
                unit=MetricUnit.NoUnit,
                value=round(target.newest_reading_age_s / 60, 1),
                namespace=namespace,
                default_dimensions={"service": _service()},
            ) as metric:
                metric.add_dimension(name="patient", value=target.patient)


def record_report(report: RunReport) -> None:
    """Metrics of a run that ended normally (uploaded, or skipped by a circuit breaker)."""
    from aws_lambda_powertools.metrics import MetricUnit

    m = metrics()
    m.add_metric(name="ReadingsUploaded", unit=MetricUnit.Count, value=report.uploaded)
    # The stale-data alarm watches the person who got the fewest: one person's stopped sensor must
    # alarm even while another's readings keep flowing.
    least = min((t.uploaded for t in report.targets), default=0)
    m.add_metric(name="LeastReadingsUploaded", unit=MetricUnit.Count, value=least)
    m.add_metric(name="GapFilled", unit=MetricUnit.Count, value=report.gap_filled)
    m.add_metric(name="LoginAttempts", unit=MetricUnit.Count, value=report.logins)
    if report.newest_reading_age_s is not None:
        m.add_metric(
            name="NewestReadingAgeMinutes", unit=MetricUnit.NoUnit, value=round(report.newest_reading_age_s / 60, 1)
        )
    _per_patient(report)
    if report.skipped:
        count("ActionRequired" if report.needs_person else "RunSkipped", report.skipped)


def record_failure(reason: str, needs_person: bool, report: RunReport | None = None) -> None:
    """Metrics of a run that failed (the handler raises afterwards, so Lambda counts an error too)."""
    from aws_lambda_powertools.metrics import MetricUnit

    m = metrics()
    # Readings other people got in this run still count; the one who failed got none.
    m.add_metric(name="ReadingsUploaded", unit=MetricUnit.Count, value=report.uploaded if report else 0)
    m.add_metric(name="LeastReadingsUploaded", unit=MetricUnit.Count, value=0)
    m.add_metric(name="LoginAttempts", unit=MetricUnit.Count, value=report.logins if report else 0)
    _per_patient(report)
    count("RunFailed", reason)
    if needs_person:
        count("ActionRequired", reason)
