"""What the command line prints: the program's name, ages and times, the package's log lines, and the
stream everything goes through, which drops control characters.

Shared by `sync --once` and `doctor` (both import it; it imports neither), so no module of the command
line imports one that imports it back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, cast

PROG = "linkup-sync"
# What a terminal acts on instead of showing: C0 controls but tab and newline (escape, carriage return,
# backspace, bell ...), DEL, C1 controls (0x9b starts a command on some terminals) and the bidirectional
# overrides and isolates, which reorder what follows them. A name from outside (a LibreLink Up user name,
# an incident's title from a table) must not move the cursor, recolour, retitle or hide the lines around it.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` without the characters a terminal would act on (tab and newline stay)."""
    return _CONTROLS.sub("", text)


class PrintableText:
    """A text stream that passes on only printable text: everything the command line prints goes through
    one (main wraps standard output and standard error). `control` writes the command's own terminal codes
    (doctor's progress line), which are the only ones that reach the terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(printable(text))

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def control(self, codes: str) -> None:
        self.stream.write(codes)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    @property
    def encoding(self) -> str:
        return str(getattr(self.stream, "encoding", None) or "utf-8")

    def __getattr__(self, name: str) -> Any:  # fileno, buffer, errors ...: the stream's own
        return getattr(self.stream, name)


def write_control(out: TextIO | PrintableText, codes: str) -> None:
    """The command's own terminal codes (a carriage return, erase-line): past the filter when `out` is a
    PrintableText, as they are on any other stream (a test's)."""
    if isinstance(out, PrintableText):
        out.control(codes)
    else:
        out.write(codes)


def printable_stream(stream: TextIO) -> TextIO:
    """`stream` wrapped in a PrintableText (once)."""
    return stream if isinstance(stream, PrintableText) else cast(TextIO, PrintableText(stream))


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
