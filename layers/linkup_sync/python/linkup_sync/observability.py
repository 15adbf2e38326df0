"""Logger and metrics in one place (Powertools singletons, created on first use)."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger, Metrics

SERVICE = "linkup-sync"
NAMESPACE = "LinkupSync"


@lru_cache(maxsize=1)
def logger() -> Logger:
    import logging

    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    powertools_logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE))
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
