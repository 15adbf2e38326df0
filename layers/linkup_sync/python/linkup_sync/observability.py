"""Logger and metrics in one place (Powertools singletons, created on first use)."""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger, Metrics

    from .report import RunReport

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


def record_report(report: RunReport) -> None:
    """The one custom metric of a run that ended normally (uploaded, or skipped by a circuit breaker).

    Custom metrics cost 0.30 USD a month each, so there is exactly one: what the stale-data alarm needs.
    Everything else (uploads, gap fill, reading age, logins, skips, per-person numbers) is a field of the
    `sync run finished` log line, and the template's saved Logs Insights queries chart it.
    """
    from aws_lambda_powertools.metrics import MetricUnit

    # The stale-data alarm watches the person who got the fewest: one person's stopped sensor must
    # alarm even while another's readings keep flowing.
    least = min((t.uploaded for t in report.targets), default=0)
    metrics().add_metric(name="LeastReadingsUploaded", unit=MetricUnit.Count, value=least)


def record_failure(reason: str, needs_person: bool, report: RunReport | None = None) -> None:
    """The metric of a failed run (the handler raises afterwards: Lambda's own Errors metric counts it)."""
    from aws_lambda_powertools.metrics import MetricUnit

    del reason, needs_person, report  # in the `sync run finished` log line instead
    metrics().add_metric(name="LeastReadingsUploaded", unit=MetricUnit.Count, value=0)
