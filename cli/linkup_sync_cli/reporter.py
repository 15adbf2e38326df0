"""doctor's output: one ✔/✘/– line per check with its details, wrapped for a terminal."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from typing import TextIO

from .output import write_control

WIDTH = 100


class Reporter:
    """One line per check, flushed at once. On a terminal a "… check" line shows while a check runs."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        try:
            self.tty = out.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        try:
            "✔✘–…".encode(getattr(out, "encoding", None) or "utf-8")
            self.marks = {True: "✔", False: "✘", None: "–"}
            self.busy = "…"
        except (UnicodeEncodeError, LookupError):
            self.marks = {True: "OK  ", False: "FAIL", None: "--  "}
            self.busy = "..."
        self.passed = 0
        self.failed = 0
        self._pending = False

    def _write(self, text: str) -> None:
        if self._pending:  # erase the progress line: our own codes, past the filter of control characters
            write_control(self.out, "\r\x1b[K")
            self._pending = False
        self.out.write(text)
        self.out.flush()

    def start(self, title: str) -> None:
        if self.tty:
            self._write(f"{self.busy} {title} ...")
            self._pending = True

    def line(self, ok: bool | None, title: str, summary: str = "", details: Iterable[str] = ()) -> None:
        head = f"{self.marks[ok]} {title}" + (f": {summary}" if summary else "")
        lines = [_wrap(head, "", "    ")]
        lines += [_wrap(d, "    ", "      ") for d in details]
        self._write("\n".join(lines) + "\n")
        if ok is True:
            self.passed += 1
        elif ok is False:
            self.failed += 1

    def ok(self, title: str, summary: str = "", details: Iterable[str] = ()) -> None:
        self.line(True, title, summary, details)

    def fail(self, title: str, summary: str, details: Iterable[str] = ()) -> None:
        self.line(False, title, summary, details)

    def skip(self, title: str, why: str) -> None:
        self.line(None, title, f"not checked ({why})")

    def note(self, text: str) -> None:
        self._write(_wrap(text, "  ", "  ") + "\n")


def _wrap(text: str, first: str, rest: str) -> str:
    return textwrap.fill(
        text, WIDTH, initial_indent=first, subsequent_indent=rest, break_long_words=False, break_on_hyphens=False
    )
