"""What the command line prints: the program's name, ages and times, and the package's log lines.

Shared by `sync --once` and `doctor` (both import it; it imports neither), so no module of the command
line imports one that imports it back.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

PROG = "linkup-sync"


def shorten_home(path: Path) -> str:
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home) :] if home not in ("", "/") and text.startswith(home + os.sep) else text


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes = int(max(seconds, 0) // 60)
    if minutes < 1:
        return "less than 1 min"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


def utc_text(epoch_s: float, *, seconds: bool = False) -> str:
    fmt = "%Y-%m-%d %H:%M:%SZ" if seconds else "%Y-%m-%d %H:%MZ"
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime(fmt)


class _Buffer(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def package_logs(verbose: bool, err: TextIO) -> Iterator[_Buffer]:
    """The package's log lines: live on stderr with --verbose, otherwise kept for the caller to show."""
    logger = logging.getLogger("linkup_sync")
    buffer = _Buffer()
    handler: logging.Handler = buffer
    if verbose:
        handler = logging.StreamHandler(err)
        handler.setFormatter(logging.Formatter("  %(levelname)s %(message)s"))
    # The command line owns the output: a JSON handler left by the Lambda set-up in the same process
    # (observability.logger()) must not print log lines between the command's own lines.
    saved = (logger.level, logger.propagate, list(logger.handlers))
    for other in saved[2]:
        logger.removeHandler(other)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False
    try:
        yield buffer
    finally:
        logger.removeHandler(handler)
        for other in saved[2]:
            logger.addHandler(other)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
